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
