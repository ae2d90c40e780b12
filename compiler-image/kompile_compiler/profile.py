"""Where an artifact's time goes: seconds per kernel in one inference, from the Relax VM's own
instrument hook (called before and after every kernel it runs)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kompile.api.common import TensorSpec


def kernel_times(library: Path, feed: dict[str, np.ndarray], inputs: list[TensorSpec]) -> dict[str, float]:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    args = [tvm.runtime.tensor(feed[spec.name]) for spec in inputs]
    vm["main"](*args)  # the first call allocates; time the second
    spent: dict[str, float] = {}
    started: dict[str, float] = {}

    def instrument(_func, name, before, _ret, *_args):
        if before:
            started[name] = time.perf_counter()
        else:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started[name]
        return relax.VMInstrumentReturnKind.NO_OP  # carry on with the call

    vm.set_instrument(instrument)
    vm["main"](*args)
    return {name: secs for name, secs in spent.items() if not name.startswith("vm.")}  # kernels, not VM builtins
