"""The weights' own arithmetic, done in numpy before TVM folds what is left.

Relax's `FoldConstant` evaluates a call on constants by legalizing it, building the kernel with
LLVM and running it: about a tenth of a second a call on 2 cores, however small the tensor. An
imported CNN has hundreds of such calls, its filters laid out for the CPU (`permute_dims`) and
its batch norms decomposed into scale and shift (`expand_dims`, `add`, `sqrt`, `divide`,
`multiply`): DenseNet-121 spent 42 of its 53 compile seconds there, SqueezeNet 3 of 5. The
calls below are plain numpy; any other call on constants is left to `FoldConstant`, which runs
after this pass as before. A result whose shape or dtype differs from the one Relax inferred is
not used (that call is left to TVM too), and the parity gate checks the compiled model as always.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from kompile_compiler import building, rewrites


def _axes(value) -> list[int] | None:
    return None if value is None else [int(a) for a in value]


def _permute_dims(call, x):
    return np.transpose(x, _axes(call.attrs.axes))


def _expand_dims(call, x):
    return np.expand_dims(x, tuple(_axes(call.attrs.axis)))


def _squeeze(call, x):
    axis = _axes(call.attrs.axis)
    return np.squeeze(x, None if axis is None else tuple(axis))


def _astype(call, x):
    return x.astype(str(call.attrs.dtype))


def _rsqrt(_call, x):
    return (1 / np.sqrt(x)).astype(x.dtype)


_UNARY = {
    "relax.permute_dims": _permute_dims,
    "relax.expand_dims": _expand_dims,
    "relax.squeeze": _squeeze,
    "relax.astype": _astype,
    "relax.sqrt": lambda _c, x: np.sqrt(x),
    "relax.rsqrt": _rsqrt,
    "relax.negative": lambda _c, x: np.negative(x),
}
_BINARY = {
    "relax.add": np.add,
    "relax.subtract": np.subtract,
    "relax.multiply": np.multiply,
    "relax.divide": np.divide,
}


def _evaluate(call, values: list[np.ndarray]) -> np.ndarray | None:
    name = call.op.name
    if name in _UNARY and len(values) == 1:
        return _UNARY[name](call, values[0])
    if name in _BINARY and len(values) == 2:
        return _BINARY[name](*values)
    if name == "relax.reshape" and len(values) == 1:
        return values[0].reshape([int(d) for d in call.args[1].values])
    return None


def _fits(result: np.ndarray, ty) -> bool:
    shape = getattr(ty, "shape", None)
    if shape is None or str(getattr(ty, "dtype", "")) != str(result.dtype):
        return False
    try:
        return [int(d) for d in shape] == list(result.shape)
    except TypeError:  # a symbolic dimension
        return False


def apply(mod):
    """`mod` (Relax) with the calls above evaluated wherever all their tensor arguments are constants."""
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class Folder(relax.PyExprMutator):
        def constant(self, expr):
            if isinstance(expr, relax.Var):
                expr = self.lookup_binding(expr)
            return expr if _tensor_literal(expr) else None

        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if not isinstance(call.op, tvm.ir.Op):
                return call
            tensors = call.args[:1] if call.op.name == "relax.reshape" else call.args
            constants = [self.constant(a) for a in tensors]
            if not constants or any(c is None for c in constants):
                return call
            try:
                with np.errstate(all="ignore"):  # a zero variance is the model's; TVM would give inf too
                    result = _evaluate(call, [c.value.numpy() for c in constants])
            except (TypeError, ValueError):  # a dtype numpy has no arithmetic for: TVM's to fold
                return call
            if result is None or not _fits(np.asarray(result), call.ty):
                return call
            return relax.const(np.ascontiguousarray(result), str(result.dtype))

    return rewrites.every_function(Folder(mod), mod)


def kernels_on_constants(mod, cache=None):
    """`mod` with every `call_tir` whose arguments are all constants run once, here, and replaced
    by its result: the weight repacking `SplitLayoutRewritePreproc` splits out of tuned kernels.
    FoldConstant would build each of those kernels on its own (a tenth of a second each); they
    are built here as one LLVM module for this machine, whatever the compile's target (they run
    here), and the now unused kernels dropped. With a `kernel_cache.KernelCache`, that module
    is kept there as a shared library (ResNet-50's took 0.7 s to build and JIT-compile)."""
    import tvm
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
            if (
                len(expr.args) == 2
                and all(map(_tensor_literal, _arguments(expr)))
                and all(map(_static, _outputs(expr)))
            ):
                found.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    if not found:
        return mod
    names = sorted({call.args[0].name_hint for call in found})
    kernels = tvm.IRModule(
        {gv: mod[gv].with_attr("global_symbol", gv.name_hint) for gv in map(mod.get_global_var, names)}
    )
    # Without the kernels' argument checks (called here only with tensors of their own types),
    # LLVM has half the code to compile when the first call JIT-compiles the module.
    with tempfile.TemporaryDirectory() as folder, tvm.transform.PassContext(opt_level=3, config=building.CONFIG):
        library = _built_here(kernels, cache, Path(folder))
    results = {}
    for call in found:
        # Zeroed, not empty: a record may lay weights out padded to its tiles ((6, 168) for 1000
        # biases) and its repacking write only the real ones. The kernel never reads the rest, but
        # left as whatever memory held, those bytes would differ from compile to compile and with
        # them the artifact's digest (TVM's FoldConstant leaves them so).
        outs = [tvm.runtime.tensor(np.zeros([int(d) for d in ty.shape], str(ty.dtype))) for ty in _outputs(call)]
        library[call.args[0].name_hint](*[a.value for a in _arguments(call)], *outs)
        values = [relax.const(out.numpy(), str(out.dtype)) for out in outs]
        results[call] = relax.Tuple(values) if hasattr(call.ty, "fields") else values[0]

    @relax.expr_functor.mutator
    class Replace(relax.PyExprMutator):
        def visit_call_(self, call):
            for old, new in results.items():
                if call.same_as(old):
                    return new
            return super().visit_call_(call)

    return relax.transform.DeadCodeElimination()(rewrites.every_function(Replace(mod), mod))


def _built_here(kernels, cache, folder: Path):
    """`kernels` built for this machine; from and to `cache` (a shared library) where there is one."""
    import tvm

    from kompile_compiler import kernel_cache

    target = tvm.target.Target("llvm")
    if cache is None:
        return tvm.tirx.build(kernels, target=target)
    key = kernel_cache.key("weight-repacking", kernels.script(), target)
    return cache.built(
        key,
        folder / "repacking.so",
        lambda path: tvm.tirx.build(kernels, target=target).export_library(str(path)),
        lambda path: tvm.runtime.load_module(str(path)),
    )


def _arguments(call) -> list:
    """The tensors a `call_tir` passes its kernel."""
    from tvm import relax

    return list(call.args[1].fields) if isinstance(call.args[1], relax.Tuple) else [call.args[1]]


def _outputs(call) -> list:
    """The tensor types a `call_tir` writes: one, or the fields of a tuple (weights and bias repacked together)."""
    return list(call.ty.fields) if hasattr(call.ty, "fields") else [call.ty]


def _tensor_literal(expr) -> bool:
    """A tensor constant: StringImm and the like are constants too, never weights."""
    import tvm

    return isinstance(expr, tvm.ir.GenericConst) and hasattr(expr.value, "numpy")


def _static(ty) -> bool:
    try:
        return getattr(ty, "shape", None) is not None and all(int(d) >= 0 for d in ty.shape)
    except TypeError:
        return False
