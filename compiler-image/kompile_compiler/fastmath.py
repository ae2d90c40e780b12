"""Exponentials and error functions as polynomials on CPU, so that their kernels vectorise.

TVM's LLVM backend turns `exp` and `erf` into calls of libm's scalar `expf` and `erff`: a
vectorised loop of them makes sixteen calls per 512-bit vector. In MiniLM on 2 cores that left
GELU at 1.5 ms a layer and softmax at 0.6 ms (a third of the model) while its matrix
multiplications reached 100-140 GFLOPS. TVM's own `FastMathTransform` swaps `exp`, `erf`,
`tanh` and `softmax` for TOPI's polynomial forms, which are plain arithmetic and vectorise
(within a few float32 ulps; the parity gate measures the result as always). GELU is one op in
Relax, which that pass does not know, so it is first spelled out with `erf` or `tanh`.
"""

from __future__ import annotations

from kompile_compiler import rewrites


def apply(mod):
    """`mod` (Relax, before legalization) with its transcendental functions in polynomial form."""
    from tvm import relax

    return relax.transform.FastMathTransform()(gelu_spelled_out(mod))


def gelu_spelled_out(mod):
    """GELU as its definition: x/2 (1 + erf(x/sqrt 2)), or with tanh for the approximate form."""
    import math

    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    def const(value, like):
        return relax.const(value, like.ty.dtype)

    def exact(call, _matches):
        x = call.args[0]
        if getattr(x.ty, "dtype", None) not in ("float32", "float16"):
            return call
        erf = relax.op.erf(relax.op.multiply(x, const(1 / math.sqrt(2), x)))
        return relax.op.multiply(relax.op.multiply(x, const(0.5, x)), relax.op.add(const(1.0, x), erf))

    def approximate(call, _matches):
        x = call.args[0]
        if getattr(x.ty, "dtype", None) not in ("float32", "float16"):
            return call
        cube = relax.op.multiply(relax.op.multiply(x, x), x)
        inner = relax.op.add(x, relax.op.multiply(const(0.044715, x), cube))
        tanh = relax.op.tanh(relax.op.multiply(const(math.sqrt(2 / math.pi), x), inner))
        return relax.op.multiply(relax.op.multiply(x, const(0.5, x)), relax.op.add(const(1.0, x), tanh))

    rules = [(is_op("relax.nn.gelu")(wildcard()), exact), (is_op("relax.nn.gelu_tanh")(wildcard()), approximate)]
    return rewrites.by_patterns("GeluSpelledOut", rules, mod)
