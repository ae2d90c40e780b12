"""Tree ensembles (XGBoost): treelite reads the booster, tl2cgen turns it into C and a shared
library, and the serving pod runs that library with tl2cgen's predictor. TVM has no tree
frontend; this is the backend Neo's XGBoost support corresponds to.

The model takes one FP32 input, `input`, of [batch, features] (seed 003: XGBoost needs no
dataInputConfig; one may set the batch, e.g. {"input": [8, 30]}), and answers one FP32
output, `output`, of [batch, classes] (probabilities, or the prediction for regression).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kompile.api import DataInputConfig
from kompile.api.common import DataType, TensorSpec
from kompile_compiler import targets
from kompile_compiler.frontends import Imported, show
from kompile_compiler.report import CompileError

INPUT, OUTPUT = "input", "output"


def load(path: Path):
    import treelite

    try:
        return treelite.frontend.load_xgboost_model(str(path))
    except Exception as err:  # noqa: BLE001 - treelite reports format problems as its own error
        try:
            return treelite.frontend.load_xgboost_model_legacy_binary(str(path))
        except Exception:  # noqa: BLE001
            detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise CompileError(
                "InvalidModel", f"{path.name} is not an XGBoost model treelite reads: {detail}"
            ) from None


def inputs(model, declared: DataInputConfig) -> list[TensorSpec]:
    features = model.num_feature
    if not declared.inputs:
        return [TensorSpec(name=INPUT, shape=[1, features], datatype=DataType.FP32)]
    if len(declared.inputs) != 1 or INPUT not in declared.inputs:
        raise CompileError(
            "UnknownInput",
            f"an XGBoost model has one input, {INPUT!r} ([batch, {features}]); dataInputConfig names "
            f"{sorted(declared.inputs)}",
        )
    shape = list(declared.inputs[INPUT])
    if len(shape) != 2 or shape[1] != features:
        raise CompileError(
            "InputShapeMismatch",
            f"input {INPUT!r} is [batch,{features}] in the model, dataInputConfig gives {show(shape)}",
        )
    return [TensorSpec(name=INPUT, shape=shape, datatype=DataType.FP32)]


def reference(model) -> tuple[Callable[[dict[str, np.ndarray]], list[np.ndarray]], str]:
    """treelite's own interpreter (GTIL): the tree semantics without generated code."""
    import treelite

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = feed[INPUT]
        return [np.asarray(treelite.gtil.predict(model, x), dtype=np.float32).reshape(x.shape[0], -1)]

    return run, f"treelite GTIL {treelite.__version__}"


def build(model, library: Path, target: targets.CompileTarget, threads: int) -> None:
    if target.backend is not targets.Backend.TVM or (target.tvm or {}).get("kind") != "llvm":
        raise CompileError("UnsupportedTarget", f"{target.name}: tree models compile for CPU targets only")
    toolchain = "gcc" if target.arch is targets.host_arch() else f"{targets.TRIPLES[target.arch]}-gcc"
    if shutil.which(toolchain) is None:
        raise CompileError("BackendUnavailable", f"compiling tree models for {target.arch.value} needs {toolchain}")
    import tl2cgen

    try:
        tl2cgen.export_lib(model, toolchain=toolchain, libpath=str(library), nthread=threads)
    except Exception as err:  # noqa: BLE001
        raise CompileError("CompilationFailed", f"tl2cgen: {str(err).strip()[-500:]}") from None


def imported(path: Path, declared: DataInputConfig) -> Imported:
    model = load(path)
    run, name = reference(model)
    return Imported(
        mod=model, inputs=inputs(model, declared), reference=run, reference_name=name, output_names=[OUTPUT]
    )
