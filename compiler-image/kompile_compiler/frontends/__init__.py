"""Framework frontends: a model file in, a Relax module and a reference runtime out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kompile.api import DataInputConfig, Framework
from kompile.api.common import TensorSpec
from kompile_compiler.report import CompileError


@dataclass
class Imported:
    mod: object  # a tvm.IRModule; for XGBoost, the treelite model kompile_compiler.trees builds
    inputs: list[TensorSpec]  # in the order the compiled main() takes them
    reference: Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # the framework's own runtime
    reference_name: str
    output_names: list[str] | None  # None: the model's outputs are unnamed


def show(dims) -> str:
    """A shape as error messages print it: [1,3,224,224]."""
    return "[" + ",".join(str(d) for d in dims) + "]"


def load(
    framework: Framework, path: Path, inputs: DataInputConfig, threads: int, quantized: bool = False, relax: bool = True
) -> Imported:
    """`relax=False`: check and reference only, no Relax import (ONNX served uncompiled)."""
    if framework is Framework.ONNX:
        from kompile_compiler.frontends import onnx

        return onnx.load(path, inputs, threads, quantized=quantized, relax=relax)
    if framework is Framework.PYTORCH:
        from kompile_compiler.frontends import pytorch

        return pytorch.load(path, inputs, threads)
    if framework is Framework.XGBOOST:
        from kompile_compiler import trees

        return trees.imported(path, inputs)
    raise CompileError("UnsupportedFramework", f"{framework.value}: {NOT_YET[framework]}")


# Why each remaining framework is refused, in the words the user will read in failureReason.
NOT_YET = {
    Framework.TENSORFLOW: "not supported yet: it needs a TensorFlow-to-ONNX converter (tf2onnx) and TensorFlow "
    "itself in the compiler image; convert the model to ONNX (python -m tf2onnx.convert) and compile that",
    Framework.KERAS: "not supported yet: it needs TensorFlow in the compiler image; convert the model to ONNX "
    "(tf2onnx) and compile that",
    Framework.TFLITE: "not supported yet: convert the model to ONNX (python -m tf2onnx.convert --tflite) and "
    "compile that",
    Framework.MXNET: "not supported: MXNet is retired (Apache Attic, 2023) and no maintained converter installs; "
    "export the model to ONNX (mxnet.onnx.export_model) and compile that",
}
