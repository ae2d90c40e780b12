"""CPU tensor intrinsics TVM 0.27 does not ship: AVX512-BF16's dot product (`vdpbf16ps`).

TVM has VNNI's int8 dot product for MetaSchedule's MultiLevelTilingWithIntrin, but nothing for
bfloat16, so a BF16 kernel computed each product in float32 registers: half the memory traffic
of FP32 and no faster arithmetic. `vdpbf16ps` does 32 bf16 multiply-adds into 16 float32
accumulators in one instruction, twice FP32's FMA, where the CPU has AVX512-BF16 (Cooper Lake,
Sapphire Rapids and later Xeons; AMD Zen 4 and 5).

The instruction is reached through a few lines of LLVM IR linked into each kernel
(`pragma_import_llvm`), not through `call_llvm_pure_intrin`: LLVM declares it on `<32 x bfloat>`
vectors, and TVM's BF16ComputeLegalize turns every bfloat16 value of TIR into float32, so no
bfloat16 vector reaches LLVM. The kernel passes pointers to its operands, typed uint16 (the
storage BF16StorageLegalize gives bfloat16 buffers; a bfloat16 one would be legalized to
float32), and the IR loads them as bfloat16, A's pair broadcast to every lane as one 32-bit word.
"""

from __future__ import annotations

from functools import cache

BF16_DOT_16x2 = "kompile_dot_16x2_bf16f32_avx512bf16"
LANES, PAIR = 16, 2  # 16 float32 accumulators, each adding a pair of bf16 products per call
FEATURE = "avx512bf16"
PREPROC = "meta_schedule.layout_rewrite_preproc"  # marks a weight-repacking block
AUTO_TENSORIZE = "meta_schedule.auto_tensorize"  # marks a block RewriteTensorize will tensorize
NO_INLINE = ("meta_schedule.inline_rule", "disable")  # keeps AutoInline off a block
_PADDED_OPS = ("relax.nn.conv2d", "relax.matmul")

_LLVM_IR = """
define linkonce_odr <16 x float> @kompile_dpbf16ps(<16 x float> %acc, ptr %a, ptr %b) alwaysinline {
  %pair = load i32, ptr %a, align 2
  %one = insertelement <16 x i32> poison, i32 %pair, i64 0
  %pairs = shufflevector <16 x i32> %one, <16 x i32> poison, <16 x i32> zeroinitializer
  %x = bitcast <16 x i32> %pairs to <32 x bfloat>
  %y = load <32 x bfloat>, ptr %b, align 2
  %r = call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> %acc, <32 x bfloat> %x, <32 x bfloat> %y)
  ret <16 x float> %r
}
declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)
"""


@cache
def register() -> None:
    """Register the intrinsics with TVM (once a process: a trace that tensorizes names them)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    # C[i] += A[k] * B[i, k] for 16 i and 2 k: the pattern of a matmul or convolution whose
    # bf16 operands multiply into a float32 accumulator (autocast.py writes exactly this).
    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((PAIR,), "bfloat16", offset_factor=1),
        B: T.Buffer((LANES, PAIR), "bfloat16", offset_factor=1),
        C: T.Buffer((LANES,), "float32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:LANES], A[0:PAIR], B[0:LANES, 0:PAIR])
            T.writes(C[0:LANES])
            for i in T.serial(0, LANES):
                for k in T.serial(0, PAIR):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "float32") * T.cast(B[vi, vk], "float32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((PAIR,), "bfloat16", offset_factor=1),
        B: T.Buffer((LANES, PAIR), "bfloat16", offset_factor=1),
        C: T.Buffer((LANES,), "float32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:LANES], A[0:PAIR], B[0:LANES, 0:PAIR])
            T.writes(C[0:LANES])
            with T.attr(0, "pragma_import_llvm", _LLVM_IR):
                C[T.ramp(T.int32(0), 1, LANES)] = T.call_extern(
                    "float32x16",
                    "kompile_dpbf16ps",
                    C.vload([0], "float32x16"),
                    T.tvm_access_ptr(T.type_annotation("uint16"), A.data, A.elem_offset, PAIR, 1),
                    T.tvm_access_ptr(T.type_annotation("uint16"), B.data, B.elem_offset, LANES * PAIR, 1),
                )

    TensorIntrin.register(BF16_DOT_16x2, desc, impl, override=True)


def for_target(target) -> list[str]:
    """The intrinsics here that `target` (a tvm.target.Target) has the instructions for."""
    if target.kind.name != "llvm":
        return []
    from tvm.target import codegen

    features = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    return [BF16_DOT_16x2] if FEATURE in features else []


def float32_lanes(target) -> int | None:
    """How many float32 values one of `target`'s vector registers holds (16 with AVX-512, 8 with
    AVX2), or None for a target that is not an x86 LLVM one."""
    if target.kind.name != "llvm":
        return None
    from tvm.target import codegen

    features = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    return 16 if "avx512f" in features else 8 if "avx2" in features else None


def pad_channels(mod, dtype: str = "bfloat16", lanes: int = LANES, pair: int = PAIR, ops=_PADDED_OPS):
    """`mod` (laid out for the CPU, constants folded) with every `ops` call on `dtype` data and
    constant `dtype` weights (a matmul, or a NHWC convolution) made to fit a vector of `lanes`
    output channels that multiplies `pair` input channels at once: output channels not a multiple
    of `lanes` (a classifier's 1000) get zero weights up to the next multiple and the result is
    sliced back; input channels not a multiple of `pair` (an image's 3) get zero channels in the
    weights and in the data. The slice and the data's pad are injective ops, fused into the
    kernels next to them.

    The defaults fit `vdpbf16ps` (`_bf16_dot_weight`): the zeros cost a few products (a third
    more for an image's first convolution, under 2% for a classifier) and the kernel gets the
    instruction; SqueezeNet's classifier took a quarter of its BF16 time with products in
    float32 registers. In float32 with AVX-512's 16 lanes, 1000 outputs split into vectors of 8
    only (the largest power of two dividing 1000): SqueezeNet's classifier, a 1x1 convolution,
    ran at half width and took a quarter of the model's time."""
    import numpy as np
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, wildcard

    from kompile_compiler import rewrites

    def padded(call, _matches):
        if not isinstance(call, relax.Call):  # the matcher also offers a variable bound to a match
            return call
        data, weight = call.args
        value = weight.value.numpy()
        conv = call.op.name == "relax.nn.conv2d"
        if conv and (call.attrs.kernel_layout != "HWIO" or call.attrs.out_layout != "NHWC" or call.attrs.groups != 1):
            return call
        if value.dtype.name != dtype or (not conv and value.ndim != 2):
            return call
        # The weights' last two axes are (input, output) channels for both; the data's last is input.
        n, k = value.shape[-1], value.shape[-2]
        more_n, more_k = -n % lanes, -k % pair
        if not more_n and not more_k:
            return call
        width = [(0, 0)] * (value.ndim - 2) + [(0, more_k), (0, more_n)]
        if more_k:
            data = relax.op.nn.pad(data, [0, 0] * (len(data.ty.shape) - 1) + [0, more_k])
        out = rewrites.remake(call, data, relax.const(np.pad(value, width), dtype))
        if not more_n:
            return out
        return relax.op.strided_slice(out, axes=[len(call.ty.shape) - 1], begin=[0], end=[n])

    patterns = [is_op(name)(wildcard().has_dtype(dtype), is_const()) for name in ops]
    return rewrites.by_patterns("PadChannels", [(pattern, padded) for pattern in patterns], mod)


def tiling_rule(name: str):
    """MetaSchedule's MultiLevelTilingWithIntrin for intrinsic `name`, for the kernels whose
    weights it can lay out for it (`_bf16_dot_weight`), after laying them out.

    The instruction reads 16 output channels' pairs of weights as 32 adjacent bf16 values, but a
    matmul's weights are [k, n] and a NHWC convolution's [kh, kw, ci, co]: the pairs are a row
    apart. MetaSchedule's RewriteLayout cannot help: it runs after tiling and sees the tensorized
    block's reads through the block's own variables, so it leaves them alone. So a layout-rewrite
    block goes in front first, as RewriteLayout's would: n split by 16 outermost, k by 2, the 16 n
    and 2 k innermost. The compile runs that block once on the constant weights
    (`folding.kernels_on_constants`), like every other repacking. A kernel without such weights
    (attention's two activations) is left to plain multi-level tiling: tiled for the intrinsic,
    its tensorization would fail and leave it slower.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.schedule_rule import PyScheduleRule

    @derived_object
    class TileForIntrinsic(PyScheduleRule):
        def __init__(self):
            self.tiling = ms.schedule_rule.MultiLevelTilingWithIntrin(
                name,
                structure="SSRSRS",  # TVM's CPU structure, as in its VNNI rules
                max_innermost_factor=64,
                reuse_write=ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global"),
            )

        def _initialize_with_tune_context(self, context) -> None:
            self.tiling._initialize_with_tune_context(context)

        def apply(self, sch, block):
            found = _bf16_dot_weight(sch, block)
            if found is None:
                return [sch]
            index, n_dim, k_dim, ndim = found
            packed = sch.copy()
            cache = packed.cache_read(block, index, "global")
            packed.annotate(cache, PREPROC, True)
            packed.transform_layout(block, ("read", index), _pair_layout(n_dim, k_dim, ndim))
            # A padded convolution's padding, inlined into it, would make its reads a select
            # the intrinsic does not match: the padding stays a block of its own (AutoInline
            # reads the mark, `compute_location_rule` too), computed at any of the tiles' loops.
            for producer in packed.get_producers(block):
                if PREPROC not in packed.get(producer).annotations:
                    packed.annotate(producer, NO_INLINE[0], NO_INLINE[1])
            return list(self.tiling.apply(packed, block))

        def clone(self):
            return TileForIntrinsic()

    return TileForIntrinsic()


def compute_location_rule(tries: int = 8):
    """MetaSchedule's RandomComputeLocation, but a block `tiling_rule` marked not to be inlined
    is never inlined: the rule samples "inline" among its locations (about one design space in
    six of a padded convolution lost its intrinsic so), so it samples again, from a copy of the
    schedule (each copy draws from a seed of its own). After `tries` draws of nothing else it
    leaves the block where it is. The evolutionary search's mutator may still draw "inline"; such
    a candidate only measures slower."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.schedule_rule import PyScheduleRule

    @derived_object
    class ComputeLocationKeepingMarked(PyScheduleRule):
        def __init__(self):
            self.inner = ms.schedule_rule.RandomComputeLocation()

        def _initialize_with_tune_context(self, context) -> None:
            self.inner._initialize_with_tune_context(context)

        def apply(self, sch, block):
            stmt = sch.get(block)
            if stmt.annotations.get(NO_INLINE[0]) != NO_INLINE[1]:
                return list(self.inner.apply(sch, block))
            for _ in range(tries):
                drawn = sch.copy()  # the rule schedules in place; an inlined block is gone
                results = list(self.inner.apply(drawn, block))
                if all(_has_block(result, stmt.name_hint) for result in results):
                    return results
            return [sch]

        def clone(self):
            return ComputeLocationKeepingMarked()

    return ComputeLocationKeepingMarked()


def _has_block(sch, name: str) -> bool:
    from tvm.s_tir.schedule import ScheduleError

    try:
        sch.get_sblock(name, func_name="main")
    except ScheduleError:  # no block has the name
        return False
    return True


def layout_rewrite_unless_packed():
    """MetaSchedule's RewriteLayout, but for kernels whose weights `tiling_rule` laid out (it
    would lay the already-rewritten weights out a second time, and fails on them)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.postproc import PyPostproc

    @derived_object
    class RewriteLayoutUnlessPacked(PyPostproc):
        def __init__(self):
            self.inner = ms.postproc.RewriteLayout()

        def _initialize_with_tune_context(self, context) -> None:
            self.inner._initialize_with_tune_context(context)

        def apply(self, sch) -> bool:
            return _packed(sch) or self.inner.apply(sch)

        def clone(self):
            return RewriteLayoutUnlessPacked()

    return RewriteLayoutUnlessPacked()


def unroll_around_intrinsics():
    """A postproc, between RewriteParallelVectorizeUnroll and RewriteTensorize: the loops around a
    block to be tensorized that the first made vectorized are unrolled instead. A loop of
    intrinsic calls cannot be vectorized (TVM's VectorizeLoop fails on the call's 16 lanes), and
    those candidates would fail to build: half of a tuning round's, without this."""
    from tvm import tirx
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.postproc import PyPostproc

    @derived_object
    class UnrollAroundIntrinsics(PyPostproc):
        def _initialize_with_tune_context(self, context) -> None:
            pass

        def apply(self, sch) -> bool:
            root = sch.get_sblock("root", func_name="main")
            for block in sch.get_child_blocks(root):
                if AUTO_TENSORIZE not in sch.get(block).annotations:
                    continue
                for loop in sch.get_loops(block):
                    if sch.get(loop).kind == tirx.ForKind.VECTORIZED:
                        sch.unroll(loop)
            return True

        def clone(self):
            return UnrollAroundIntrinsics()

    return UnrollAroundIntrinsics()


def _packed(sch) -> bool:
    # cache_read puts the repacking block at the top of the kernel, a child of its root block.
    root = sch.get_sblock("root", func_name="main")
    return any(PREPROC in sch.get(block).annotations for block in sch.get_child_blocks(root))


def _pair_layout(n_dim: int, k_dim: int, ndim: int):
    from tvm.tirx import IndexMap

    def mapping(*index):
        rest = [index[d] for d in range(ndim) if d not in (n_dim, k_dim)]
        n, k = index[n_dim], index[k_dim]
        return [n // LANES, *rest, k // PAIR, n % LANES, k % PAIR]

    # int32 indices: an int64 map failed TVM's iterator analysis on int32-shaped weights, and
    # an int32 one serves Relax's int64 shapes too.
    return IndexMap.from_func(mapping, ndim=ndim, index_dtype="int32")


def _bf16_dot_weight(sch, block):
    """(read index, n dim, k dim, rank) of the layout-free weight of a block computing
    C[..n] += float(A[.., k]) * float(W[.., k, .., n, ..]) in bf16, or None."""
    from tvm import tirx
    from tvm.ir import TensorLoad  # TVM 0.27's name for a BufferLoad; its buffer is .source

    stmt = sch.get(block)
    store = stmt.body
    if not isinstance(store, tirx.BufferStore) or store.buffer.dtype != "float32":
        return None
    value = store.value
    if not (isinstance(value, tirx.Add) and isinstance(value.b, tirx.Mul)):
        return None
    loads = [operand.value for operand in (value.b.a, value.b.b) if isinstance(operand, tirx.Cast)]
    if len(loads) != 2 or not all(isinstance(x, TensorLoad) and x.source.dtype == "bfloat16" for x in loads):
        return None
    func = sch.mod["main"]  # a tuning task is one kernel
    free = [func.params[int(i)] for i in (func.attrs or {}).get("layout_free_buffers", [])]
    weights = [x for x in loads if any(x.source.same_as(p) for p in free)]  # TVM 0.27: a param is its buffer
    data = [x for x in loads if not any(x.same_as(w) for w in weights)]
    if len(weights) != 1 or len(data) != 1:
        return None
    weight, activation = weights[0], data[0]
    kinds = {iv.var: iv.iter_type for iv in stmt.iter_vars}
    extents = {iv.var: iv.dom.extent for iv in stmt.iter_vars}
    if not all(isinstance(i, tirx.Var) and i in kinds for i in weight.indices):
        return None
    spatial = [d for d, i in enumerate(weight.indices) if kinds[i] == tirx.IterVar.DataPar]
    k_var = activation.indices[-1]  # the pairs are adjacent in the activations too
    k_dims = [d for d, i in enumerate(weight.indices) if i.same_as(k_var) and kinds[i] == tirx.IterVar.CommReduce]
    if len(spatial) != 1 or len(k_dims) != 1:
        return None
    n_dim, k_dim = spatial[0], k_dims[0]
    if int(extents[weight.indices[n_dim]]) % LANES or int(extents[k_var]) % PAIR:
        return None
    index = next(i for i, r in enumerate(stmt.reads) if r.source.same_as(weight.source))
    return index, n_dim, k_dim, len(weight.indices)
