"""Relax rewrites by pattern: TVM's dataflow pattern language (DPL), applied function by function."""

from __future__ import annotations


def by_patterns(name: str, rules, mod):
    """`mod` with each (pattern, callback) rule of `rules` applied in turn to every function, the
    way `relax.dpl.rewrite_call` does: a callback returns the replacement, or the call it got."""
    from tvm import relax
    from tvm.relax.dpl import rewrite_call

    @relax.transform.function_pass(opt_level=0, name=name)
    def rewrite(func, _mod, _ctx):
        for pattern, callback in rules:
            func = rewrite_call(pattern, callback, func)
        return func

    return rewrite(mod)


def calls(mod, op_name: str) -> list:
    """Every Relax call of the operator `op_name` in `mod`'s functions, found by walking them."""
    import tvm
    from tvm import relax

    op = tvm.ir.Op.get(op_name)
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.same_as(op):
            found.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return found


def every_function(mutator, mod):
    """`mod` with each of its Relax functions rewritten by `mutator` (a `relax.PyExprMutator` made on `mod`)."""
    from tvm import relax

    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()


def remake(call, *operands, **overrides):
    """The call `call` again, on `operands`, with every attribute it had (strides, padding, layouts,
    ...) but those in `overrides`: built by the operator's own Python maker (`relax.op.matmul`,
    `relax.op.nn.conv2d`), so its checks and struct info are the ones a frontend's call gets."""
    import inspect

    from tvm import relax

    namespace = call.op.name.split(".")[1:]  # relax.nn.conv2d -> ["nn", "conv2d"]
    make = relax.op
    for part in namespace:
        make = getattr(make, part)
    names = list(inspect.signature(make).parameters)[len(operands) :]
    attrs = {name: getattr(call.attrs, name) for name in names if name not in overrides}
    return make(*operands, **attrs, **overrides)
