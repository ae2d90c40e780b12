"""Lower precision by auto-casting, in the spirit of Neuron's `--auto-cast matmult`.

FP16 is TVM's own `ToMixedPrecision`. That pass only knows float16, so BF16 is a small rewrite
here: the inputs of every matrix multiplication and convolution become bfloat16 and their
result stays float32 (an FP32 accumulator), so the model's edges, normalisations and
activations stay FP32. Weights are cast once, at compile time, by constant folding, which
halves the memory they take. On a CPU with AVX512-BF16 a tuned kernel multiplies with
`vdpbf16ps` (`intrinsics`); elsewhere TVM's TIR pipeline (BF16ComputeLegalize) computes each
bf16 product in FP32 registers, and the gain is in memory traffic only.
"""

from __future__ import annotations

from kompile.api import Precision
from kompile_compiler import rewrites

# The operators Neuron's "matmult" auto-cast covers: every op that multiplies and accumulates.
MATMULT = ("relax.matmul", "relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d")


def apply(mod, precision: Precision):
    """`mod` with its precision lowered as `precision` asks (unchanged for FP32 and INT8)."""
    from tvm import relax

    if precision is Precision.FP16:
        return relax.transform.ToMixedPrecision(out_dtype="float32")(mod)
    if precision is Precision.BF16:
        return relax.transform.FoldConstant()(_bf16_matmult(mod))
    return mod


def _bf16_matmult(mod):
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    # Only float32 operands match, so a rewritten call (bfloat16 operands) is never matched again.
    patterns = [is_op(name)(wildcard().has_dtype("float32"), wildcard().has_dtype("float32")) for name in MATMULT]

    def cast(call, _matches):
        operands = [relax.op.astype(arg, "bfloat16") for arg in call.args]
        return rewrites.remake(call, *operands, out_dtype="float32")  # every other attribute kept

    return rewrites.by_patterns("BF16MatmultAutoCast", [(pattern, cast) for pattern in patterns], mod)
