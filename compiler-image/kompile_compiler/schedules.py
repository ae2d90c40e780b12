"""Rule-based schedules for the CPU kernels no tuning record covers: TVM's dlight rules, and
rules for what dlight's CPU rules leave slow; and `Concatenation`, `Elementwise` and
`RowReductions`, which go before any record (`before_records`).

dlight's Reduction rule parallelises a softmax-like kernel (max, exp, sum, divide) over its
last block's leading spatial loop and computes every earlier block inside it. With one row only (a
classifier's softmax over 1,000 classes at batch 1) that loop is the row itself, so the row's
max, exponentials and sum are recomputed for each of its 1,000 elements: 1.7-3.2 ms for what
takes microseconds (SqueezeNet on 2 cores: a fifth of the model). A single row is scheduled
here block by block instead, each vectorised, without a parallel loop a row that short cannot use.
"""

from __future__ import annotations

import math

import tvm
from tvm import s_tir
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target.codegen import llvm_get_vector_width


def cpu_rules():
    """The rules, in the order they are tried, for a CPU kernel without a record."""
    return dl.ApplyDefaultSchedule(dl.cpu.GEMV(), SingleRowReduction(), dl.cpu.Reduction(), Injective(), Pooling())


def concatenations(mod):
    """`mod` with its concatenation kernels scheduled by `Concatenation` and marked scheduled, so
    that neither tuning nor a record touches them: MetaSchedule's best for a concatenation is
    a loop of selects, several times slower (SqueezeNet's took a fifth of its BF16 time)."""
    return dl.ApplyDefaultSchedule(Concatenation())(mod)


def elementwise(mod):
    """`mod` with its elementwise kernels (`Elementwise`) scheduled and marked scheduled, so that
    no record or trial touches them: they only stream memory, and a record measured on another
    machine or another layout can be far from that (DenseNet-121's standalone batch norms ran
    at 0.8 ms a call with their records, 0.06-0.08 ms with this rule)."""
    return dl.ApplyDefaultSchedule(Elementwise())(mod)


def row_reductions(mod):
    """`mod` with its kernels of reductions along rows (`RowReductions`: a softmax over many rows)
    scheduled and marked scheduled: MiniLM's attention softmax ran at 0.112 ms a call with its
    tuned record, 0.15-0.18 with dlight's Reduction rule, 0.057 with this one (12 x 128 rows of
    128, 2 cores)."""
    return dl.ApplyDefaultSchedule(RowReductions())(mod)


def before_records(mod):
    """`mod` with the kernels no record is for scheduled by their rules: concatenations,
    elementwise kernels and reductions along rows."""
    return row_reductions(elementwise(concatenations(mod)))


def scheduled(mod) -> set[str]:
    """The kernels of `mod` marked scheduled (`before_records`), by name: no record or trial is for them."""
    from tvm import tirx

    return {
        gv.name_hint
        for gv, f in mod.functions.items()
        if isinstance(f, tirx.PrimFunc) and f.attrs and f.attrs.get("tirx.is_scheduled")
    }


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

    def admits(self, _sch, _blocks) -> bool:
        """Whether the kernel is this rule's, beyond its blocks being injective."""
        return True

    def apply(self, func, target, _tunable):
        if not (inlined := _inlined(self, func, target, admits=self.admits)):
            return None
        sch, last = inlined
        loops = sch.get_loops(last.block_rv)
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


class Elementwise(Injective):
    """`Injective`, for kernels each of whose blocks writes its own loop position and reads each
    input there or broadcast along some axes (a batch norm's per-channel constants): a stream
    of loads and stores whose only schedule choice is the one `Injective` makes. Transposes,
    reshapes and padding read elsewhere and are left to records and the rules."""

    def admits(self, sch, blocks) -> bool:
        return all(_in_place(sch.get(b.block_rv)) for b in blocks)


def _in_place(block) -> bool:
    """Whether a block (with no reduction) writes the element of its own position and reads
    each buffer there, or at a constant index on a broadcast axis. Unit axes are constants."""
    from tvm import tirx

    if any(v.iter_type != tirx.IterVar.DataPar for v in block.iter_vars) or len(block.writes) != 1:
        return False
    written = block.writes[0].region
    if not all(isinstance(d.extent, tirx.IntImm) and d.extent.value == 1 for d in written):
        return False
    axes = [d.min for d in written if not isinstance(d.min, tirx.IntImm)]
    variables = [v.var for v in block.iter_vars]
    if len(axes) != len(variables) or not all(a.same_as(v) for a, v in zip(axes, variables, strict=True)):
        return False

    def there(read) -> bool:
        if len(read.region) != len(written):
            return False
        return all(
            isinstance(r.extent, tirx.IntImm)
            and r.extent.value == 1
            and (isinstance(r.min, tirx.IntImm) or r.min.same_as(w.min))
            for r, w in zip(read.region, written, strict=True)
        )

    return all(there(read) for read in block.reads)


def _inlined(rule, func, target, last_injective: bool = True, admits=None):
    """A schedule of `func` with every block inlined into the last, and the last's BlockInfo;
    None unless the target is the rule's, the blocks are injective (the last one too, unless
    `last_injective` is False), `admits(sch, blocks)` holds where given (checked before any
    inlining, on the normalized blocks) and each can be inlined (a second output cannot)."""
    if not rule.is_target_available(target):
        return None
    sch = s_tir.Schedule(func)
    blocks = normalize_prim_func(sch)
    if not blocks or not all(b.is_injective() for b in (blocks if last_injective else blocks[:-1])):
        return None
    if admits is not None and not admits(sch, blocks):
        return None
    try:
        for block in blocks[:-1]:
            sch.compute_inline(block.block_rv)
    except s_tir.ScheduleError:
        return None
    return sch, blocks[-1]


class Concatenation(CPUScheduleRule):
    """Injective blocks computing a concatenation along the innermost axis (NHWC channels),
    with what follows it elementwise (a cast, a batch norm): TOPI writes each element as a chain
    of `if_then_else(offset <= c, next input, ...)`, a select no loop over c can vectorise. The
    channel loop is partitioned at the inputs' offsets (`loop_partition`), so each part reads one
    input, its condition known and simplified away, and each part is vectorised: a copy per input.
    The loops outside it are spread over the cores."""

    LONGEST = 1024  # channels a part is vectorised up to, as one vector LLVM splits

    def apply(self, func, target, _tunable):
        if not (inlined := _inlined(self, func, target)):
            return None
        sch, last = inlined
        block = sch.get(last.block_rv)
        offsets = _offsets(block.body, block.iter_vars[-1].var) if block.iter_vars else []
        loops = sch.get_loops(last.block_rv)
        extents = [_extent(sch, loop) for loop in loops]
        if not offsets or len(loops) != len(block.iter_vars) or not all(isinstance(e, int) for e in extents):
            return None
        bounds = [0, *offsets, extents[-1]]
        sizes = [end - start for start, end in zip(bounds, bounds[1:], strict=False)]
        parts = sch.loop_partition(loops[-1], [*sizes[:-1], None])  # the last part: what is left
        for part, size in zip(parts, sizes, strict=True):
            if 1 < size <= self.LONGEST:
                sch.vectorize(part)
        if len(loops) > 1:
            outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
            if math.prod(extents) >= Injective.PARALLEL_FROM:
                sch.parallel(outer)
        return sch


def _offsets(store, var) -> list[int]:
    """Where a concatenation along `var` switches input: the `offset` of every condition
    `offset <= var` of an if_then_else in the value `store` writes, sorted; [] when there is
    none, or an if_then_else tests anything else (padding: its condition is a range)."""
    from tvm import tirx

    if_then_else = tvm.ir.Op.get("prim.if_then_else")
    found, other = set(), 0
    pending = [getattr(store, "value", None)]
    while pending:  # TVM 0.27 gives Python no TIR visitor; the value is a small tree (a Call is tvm.ir.Call)
        node = pending.pop()
        if isinstance(node, tvm.ir.Call):
            if node.op.same_as(if_then_else):
                cond = node.args[0]
                if isinstance(cond, tirx.LE) and isinstance(cond.a, tirx.IntImm) and cond.b.same_as(var):
                    found.add(int(cond.a.value))
                else:
                    other += 1
            pending += list(node.args)
        elif isinstance(node, tirx.Cast):
            pending.append(node.value)
        elif hasattr(node, "a") and hasattr(node, "b"):  # arithmetic, comparisons, min/max
            pending += [node.a, node.b]
        elif isinstance(node, tirx.Select):
            pending += [node.condition, node.true_value, node.false_value]
    return [] if other else sorted(o for o in found if o > 0)


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


class RowReductions(CPUScheduleRule):
    """Reductions along the last axis of many rows with the elementwise blocks around them,
    ending in an elementwise block over the rows (a softmax: max, exp, sum, divide; a mask
    applied after it). The rows are spread over the cores, every block is computed inside its
    row, and each reduction is split into one partial result a vector lane (`rfactor`), so the
    row is read a vector at a time and the lanes are summed once at its end; a block that two
    others read (the exponentials) is kept in a row buffer, not recomputed by each. dlight's
    Reduction rule leaves each row's reductions scalar."""

    ROWS_FROM = 16  # fewer rows: `SingleRowReduction` and the records, not a parallel row loop

    def apply(self, func, target, _tunable):
        if not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if not blocks or not blocks[-1].is_injective():
            return None
        lanes = _lanes(target)
        last = sch.get(blocks[-1].block_rv)
        extents = [_int(v.dom.extent) for v in last.iter_vars]
        if len(extents) < 2 or None in extents or extents[-1] % lanes or math.prod(extents[:-1]) < self.ROWS_FROM:
            return None
        reductions = [b for b in blocks if not b.is_injective()]
        if not reductions or not all(_along_rows(sch.get(b.block_rv), extents) for b in reductions):
            return None
        try:
            return self._schedule(sch, blocks, reductions, lanes)
        except (RuntimeError, ValueError):  # ScheduleError, a lost loop: a block that cannot go inside its row
            return None

    @staticmethod
    def _schedule(sch, blocks, reductions, lanes):
        names = {sch.get(b.block_rv).name_hint for b in reductions}
        kept = []  # in their order in the kernel
        for block in blocks[:-1]:
            rv = block.block_rv
            if sch.get(rv).name_hint in names or len(sch.get_consumers(rv)) > 1:
                kept.append(rv)
            else:
                sch.compute_inline(rv)
        partial = {}
        for rv in kept:
            if sch.get(rv).name_hint in names:
                _, lane = sch.split(sch.get_loops(rv)[-1], factors=[None, lanes])
                partial[sch.get(rv).name_hint] = sch.rfactor(lane, 0)
        last = blocks[-1].block_rv
        *rows, inner = sch.get_loops(last)
        row = sch.fuse(*rows) if len(rows) > 1 else rows[0]
        sch.parallel(row)
        _, lane = sch.split(inner, factors=[None, lanes])
        sch.vectorize(lane)
        for rv in reversed(kept):
            sch.compute_at(rv, row)
            if (name := sch.get(rv).name_hint) in partial:
                sch.compute_at(partial[name], row)
                lane, steps = sch.get_loops(partial[name])[-2:]  # rfactor puts the lanes outside the steps
                sch.reorder(steps, lane)
                sch.vectorize(lane)
            elif len(sch.get_loops(rv)) > 1:  # a value a row (a mean) has no loop of its own
                _vectorize_inner(sch, rv, lanes)
        return sch


def _int(extent) -> int | None:
    return int(extent) if hasattr(extent, "value") else None


def _along_rows(block, extents: list[int]) -> bool:
    """Whether a reduction block reduces one axis, the rows' last, to one value a row: its
    spatial axes are the rows (those of `extents` but the last) and it writes one buffer."""
    from tvm import tirx

    spatial = [_int(v.dom.extent) for v in block.iter_vars if v.iter_type == tirx.IterVar.DataPar]
    reduced = [_int(v.dom.extent) for v in block.iter_vars if v.iter_type == tirx.IterVar.CommReduce]
    squeezed = [e for e in extents[:-1] if e != 1]
    return len(block.writes) == 1 and reduced == [extents[-1]] and [e for e in spatial if e != 1] == squeezed


class Pooling(CPUScheduleRule):
    """One reduction over a window, its spatial loops first (max or average pooling in NHWC,
    after its padding is inlined): the window's loops move outside the innermost spatial loop,
    the channels, which is contiguous and vectorised; the other spatial loops are spread over
    the cores. Unscheduled, ResNet-50's and DenseNet-121's first max pool ran as one scalar loop."""

    def apply(self, func, target, _tunable):
        if not (inlined := _inlined(self, func, target, last_injective=False)):
            return None
        sch, last = inlined
        kinds = last.dom_kind()
        spatial = len(kinds) - len(kinds.lstrip("S"))
        if spatial < 2 or set(kinds[spatial:]) != {"R"}:
            return None
        loops = sch.get_loops(last.block_rv)
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
