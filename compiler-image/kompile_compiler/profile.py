"""Where an artifact's time goes: seconds per kernel in one inference, from the Relax VM's own
instrument hook (called before and after every kernel it runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kompile.api.common import TensorSpec


@dataclass(frozen=True)
class KernelTime:
    seconds: float  # all of this kernel's calls in one inference (the median over the runs)
    calls: int  # how many times one inference calls it
    shapes: tuple[tuple[int, ...], ...] = ()  # its tensor arguments' shapes at its first call, outputs last


def kernel_profile(
    library: Path, feed: dict[str, np.ndarray], inputs: list[TensorSpec], runs: int = 1
) -> dict[str, KernelTime]:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    args = [tvm.runtime.tensor(feed[spec.name]) for spec in inputs]
    vm["main"](*args)  # the first call allocates; time the later ones
    per_run: list[dict[str, float]] = []  # seconds by kernel, one dict per inference
    calls: dict[str, int] = {}
    started: dict[str, float] = {}
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def instrument(_func, name, before, _ret, *args):
        if before:
            started[name] = time.perf_counter()
        else:
            if name not in shapes:
                shapes[name] = tuple(tuple(int(d) for d in a.shape) for a in args if hasattr(a, "shape"))
            spent = per_run[-1]
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started[name]
            calls[name] = calls.get(name, 0) + 1
        return relax.VMInstrumentReturnKind.NO_OP  # carry on with the call

    vm.set_instrument(instrument)
    for _ in range(runs):
        per_run.append({})
        vm["main"](*args)
    return {
        name: KernelTime(float(np.median([spent[name] for spent in per_run])), n // runs, shapes.get(name, ()))
        for name, n in calls.items()
        if not name.startswith("vm.")  # kernels, not VM builtins
    }


def kernel_times(library: Path, feed: dict[str, np.ndarray], inputs: list[TensorSpec]) -> dict[str, float]:
    return {name: k.seconds for name, k in kernel_profile(library, feed, inputs).items()}
