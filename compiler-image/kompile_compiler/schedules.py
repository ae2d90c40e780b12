"""Rule-based schedules for the CPU kernels no tuning record covers: TVM's dlight rules, and one
rule for the case where dlight's CPU Reduction rule recomputes its work.

That rule parallelises a softmax-like kernel (max, exp, sum, divide) over its last block's
leading spatial loop and computes every earlier block inside it. With one row only (a
classifier's softmax over 1,000 classes at batch 1) that loop is the row itself, so the row's
max, exponentials and sum are recomputed for each of its 1,000 elements: 1.7-3.2 ms for what
takes microseconds (SqueezeNet on 2 cores: a fifth of the model). A single row is scheduled
here block by block instead, each vectorised, without a parallel loop a row that short cannot use.
"""

from __future__ import annotations

import math

from tvm import s_tir
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target.codegen import llvm_get_vector_width


def cpu_rules():
    """The rules, in the order they are tried, for a CPU kernel without a record."""
    return dl.ApplyDefaultSchedule(dl.cpu.GEMV(), SingleRowReduction(), dl.cpu.Reduction(), Injective(), Pooling())


def _lanes(target) -> int:
    width = llvm_get_vector_width(target)
    return max((width if width > 0 else 128) // 32, 2)


class Injective(CPUScheduleRule):
    """Kernels of elementwise and layout blocks only (a decomposed batch norm with its ReLU,
    concatenations, transposes), which dlight has no CPU rule for and which otherwise run as one
    scalar loop on one core (DenseNet-121: 122 such kernels, a quarter of its time). Every block
    is inlined into the last, whose loops become one, vectorised when the vector width divides
    it and spread over the cores when large enough to pay for it."""

    PARALLEL_FROM = 4096  # elements; below that a parallel launch costs more than it saves

    def apply(self, func, target, _tunable):
        if not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if not blocks or not all(b.is_injective() for b in blocks):
            return None
        try:
            for block in blocks[:-1]:
                sch.compute_inline(block.block_rv)
        except s_tir.ScheduleError:
            return None  # a block that cannot be inlined (a second output): leave the kernel as it is
        loops = sch.get_loops(blocks[-1].block_rv)
        if not loops:
            return None
        extents = [_extent(sch, loop) for loop in loops]
        if not all(isinstance(e, int) for e in extents):
            return None  # a dynamic shape: left to TVM's default
        extent = math.prod(extents)
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        lanes = _lanes(target)
        if extent % lanes == 0 and extent > lanes:
            fused, inner = sch.split(fused, factors=[None, lanes])
            sch.vectorize(inner)
        if extent >= self.PARALLEL_FROM:
            sch.parallel(fused)
        return sch


class SingleRowReduction(CPUScheduleRule):
    """A chain of reductions and elementwise blocks over one row (every reduction's spatial
    extent is 1), ending in an elementwise block: each block vectorised on its inner loop, a
    reduction split into vector-wide steps for LLVM to unroll, as dlight's Reduction does."""

    def apply(self, func, target, _tunable):
        if not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if not blocks or len(blocks) < 2 or not blocks[-1].is_injective():
            return None
        reductions = [b for b in blocks if not b.is_injective()]
        if not reductions or any(not _one_row(b) for b in reductions):
            return None
        lanes = _lanes(target)
        for block in blocks:
            if block.is_injective():
                _vectorize_inner(sch, block.block_rv, lanes)
            else:
                dl.cpu.Reduction._unroll_reduction_inner(sch, block.block_rv, lanes)
        return sch


def _vectorize_inner(sch, block, lanes: int) -> None:
    """The block's innermost loop vectorised, in steps of `lanes` when longer (a row's blocks
    may have a single loop, which dlight's own helper leaves scalar)."""
    inner = sch.get_loops(block)[-1]
    extent = _extent(sch, inner)
    if not isinstance(extent, int) or extent > lanes:
        _, inner = sch.split(inner, factors=[None, lanes])
    elif extent < 2:
        return
    sch.vectorize(inner)


def _extent(sch, loop):
    extent = sch.get(loop).extent
    return int(extent) if hasattr(extent, "value") else extent


def _one_row(block) -> bool:
    spatial = [i.dom for i in block.iters if i.kind == "S"]
    return all(isinstance(d, int) for d in spatial) and math.prod(spatial) == 1


class Pooling(CPUScheduleRule):
    """One reduction over a window, its spatial loops first (max or average pooling in NHWC,
    after its padding is inlined): the window's loops move outside the innermost spatial loop,
    the channels, which is contiguous and vectorised; the other spatial loops are spread over
    the cores. Unscheduled, ResNet-50's and DenseNet-121's first max pool ran as one scalar loop."""

    def apply(self, func, target, _tunable):
        if not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if not blocks or not all(b.is_injective() for b in blocks[:-1]):
            return None
        kinds = blocks[-1].dom_kind()
        spatial = len(kinds) - len(kinds.lstrip("S"))
        if spatial < 2 or set(kinds[spatial:]) != {"R"}:
            return None
        try:
            for block in blocks[:-1]:
                sch.compute_inline(block.block_rv)
        except s_tir.ScheduleError:
            return None
        loops = sch.get_loops(blocks[-1].block_rv)
        extents = [_extent(sch, loop) for loop in loops]
        if len(loops) != len(kinds) or not all(isinstance(e, int) for e in extents):
            return None
        *outer, channels = loops[:spatial]
        sch.reorder(*outer, *loops[spatial:], channels)
        lanes = _lanes(target)
        if extents[spatial - 1] % lanes == 0:
            _, inner = sch.split(channels, factors=[None, lanes])
            sch.vectorize(inner)
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if math.prod(extents[:spatial]) >= Injective.PARALLEL_FROM:
            sch.parallel(fused)
        return sch
