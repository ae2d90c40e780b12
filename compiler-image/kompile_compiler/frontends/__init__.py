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
    mod: object  # tvm.IRModule
    inputs: list[TensorSpec]  # in the order the compiled main() takes them
    reference: Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # the framework's own runtime
    reference_name: str
    output_names: list[str]


def show(dims) -> str:
    """A shape as error messages print it: [1,3,224,224]."""
    return "[" + ",".join(str(d) for d in dims) + "]"


def load(framework: Framework, path: Path, inputs: DataInputConfig, threads: int) -> Imported:
    if framework is Framework.ONNX:
        from kompile_compiler.frontends import onnx

        return onnx.load(path, inputs, threads)
    if framework is Framework.PYTORCH:
        from kompile_compiler.frontends import pytorch

        return pytorch.load(path, inputs, threads)
    raise CompileError(
        "UnsupportedFramework", f"{framework.value} models are not supported by this compiler yet; ONNX and PYTORCH are"
    )
