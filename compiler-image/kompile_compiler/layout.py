"""Data layout for CPU kernels: convolutions in NHWC with HWIO weights.

MetaSchedule vectorises a convolution's innermost output loop. In NCHW that loop runs along an
image row (7 to 112 wide here, rarely a multiple of the vector width, and strided in the
weights); in NHWC it runs along the output channels (64 to 2048), contiguous in both the output
and HWIO weights. Measured on ResNet-50's two heaviest 3x3 convolutions with 64 trials each
(2 cores, AVX2): 39 and 74 GFLOPS in NCHW, 161 and 174 in NHWC. TVM's ConvertLayout moves the
layout change to the model's edges, and constant folding transposes the weights at compile time.
"""

from __future__ import annotations

from kompile_compiler import rewrites

CPU_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"]}


def for_cpu(mod):
    """`mod` (as imported, before batch norms are decomposed: ConvertLayout moves a batch norm's
    axis, not the constants it decomposes into) with its convolutions in NHWC."""
    from tvm import relax

    return relax.transform.ConvertLayout(CPU_LAYOUTS)(full_rank_constants(sums_as_adds(without_dropout(mod))))


def full_rank_constants(mod):
    """A constant that broadcasts against a tensor of higher rank, such as the (C, 1, 1) scale a
    Caffe-born DenseNet multiplies its feature maps by, gets that rank ((1, C, 1, 1)): ConvertLayout
    carries a layout through an elementwise op only when both sides have the same rank, and
    would otherwise transpose the feature map back and forth around it."""
    import numpy as np
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    ops = {
        "relax.add": relax.op.add,
        "relax.subtract": relax.op.subtract,
        "relax.multiply": relax.op.multiply,
        "relax.divide": relax.op.divide,
    }
    patterns = [is_op(name)(wildcard(), wildcard()) for name in ops]

    def widen(call, _matches):
        rank = max(len(arg.ty.shape) if getattr(arg.ty, "shape", None) is not None else 0 for arg in call.args)
        args = []
        for arg in call.args:
            # Only beside feature maps (rank 4), where the layout changes; nothing else is touched.
            if rank == 4 and isinstance(arg, tvm.ir.GenericConst) and 0 < len(arg.value.shape) < rank:
                value = arg.value.numpy()
                arg = relax.const(np.reshape(value, (1,) * (rank - value.ndim) + value.shape), value.dtype)
            args.append(arg)
        return call if all(a.same_as(b) for a, b in zip(args, call.args, strict=True)) else ops[call.op.name](*args)

    return rewrites.by_patterns("FullRankConstants", [(pattern, widen) for pattern in patterns], mod)


def without_dropout(mod):
    """Dropout is the identity at inference; as an op it returns a (data, mask) tuple, which
    ConvertLayout cannot carry a layout through."""
    from tvm.relax.dpl import is_op, is_tuple_get_item, wildcard

    dropout = is_op("relax.nn.dropout")(wildcard())
    pattern = is_tuple_get_item(dropout, 0)

    return rewrites.by_patterns("WithoutDropout", [(pattern, lambda _call, matches: matches[dropout].args[0])], mod)


def sums_as_adds(mod):
    """ONNX's Sum (a residual connection in ResNets) imports as `sum(stack(broadcast_to(x1),
    broadcast_to(x2), ...), axis=0)`: a copy of every input into a new leading axis, which no
    layout can be inferred for. Adding the inputs pairwise is the same sum (add broadcasts them
    the same way), fuses into the producing convolution, and copies nothing. Only the
    broadcasts the Sum made go: a model's other ops keep the kernels their records were tuned on."""
    from tvm import relax
    from tvm.relax.dpl import is_op, is_tuple, wildcard

    sizes = {len(c.args[0].fields) for c in rewrites.calls(mod, "relax.stack") if isinstance(c.args[0], relax.Tuple)}

    def rule(size):
        inputs = [is_op("relax.broadcast_to")(wildcard(), wildcard()) for _ in range(size)]
        stack = is_op("relax.stack")(is_tuple(inputs))

        def pairwise(call, matches):
            if (
                int(matches[stack].attrs.axis) != 0
                or [int(a) for a in call.attrs.axis or []] != [0]
                or call.attrs.keepdims
            ):
                return call
            total, *rest = (matches[i].args[0] for i in inputs)
            for part in rest:
                total = relax.op.add(total, part)
            return total

        return is_op("relax.sum")(stack), pairwise

    return rewrites.by_patterns("SumsAsAdds", [rule(size) for size in sorted(sizes)], mod)


def weights_layout_free(mod):
    """`mod` (fused, its kernels PrimFuncs) with each kernel's constant operands, its weights,
    marked layout-free: MetaSchedule may then store them in whatever layout its schedule reads
    fastest, and the compile repacks them once (`tuning.repack_weights`). Tuned that way with
    64 trials each, SqueezeNet's last 1x1 convolution (512 -> 1,000 channels) ran in 1.75 ms
    instead of 2.59, a 3x3 one in 0.24 instead of 0.27 (x86-avx512, 2 cores).

    TVM's AttachAttrLayoutFreeBuffers marks the same operands but copies every kernel under a
    new name; the names are what the manifest and the kernel timings speak of, so each kernel is
    marked in place. A kernel called from several places keeps only the operands constant in all.
    """
    import tvm
    from tvm import relax, tirx

    call_tir = tvm.ir.Op.get("relax.call_tir")
    constant: dict = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir) and isinstance(expr.args[1], relax.Tuple):
            fixed = {i for i, arg in enumerate(expr.args[1].fields) if isinstance(arg, tvm.ir.GenericConst)}
            constant[expr.args[0]] = constant.get(expr.args[0], fixed) & fixed

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    out = mod.clone()
    for gv, fixed in constant.items():
        if fixed and isinstance(out[gv], tirx.PrimFunc):
            out.update_func(gv, out[gv].with_attr("layout_free_buffers", sorted(fixed)))
    return out
