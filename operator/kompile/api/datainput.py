"""`dataInputConfig`: the names and shapes of a model's inputs, by Neo's rules.

The rules (seed 003, "Prepare Model for Compilation"):
- a dictionary `{name: shape}` for every framework; PyTorch also takes a list of
  shapes, `[[1,3,224,224], ...]`, whose inputs are then named `input0`, `input1`, ...;
- NCHW for Keras, MXNet, ONNX and PyTorch; NHWC for TensorFlow and TFLite;
- XGBoost needs none.
Like Neo's API it may also be given as a JSON string (`'{"data": [1,3,224,224]}'`),
and, since the Neo docs write Python dictionaries, with single quotes.

Ahead-of-time compilation needs every dimension known (seed 002): each must be a
positive integer.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

from kompile.api.common import Framework


class DataInputConfigError(ValueError):
    """A dataInputConfig that cannot be compiled; the message names the input at fault."""

    reason = "InvalidDataInputConfig"


LAYOUT = {
    Framework.KERAS: "NCHW",
    Framework.MXNET: "NCHW",
    Framework.ONNX: "NCHW",
    Framework.PYTORCH: "NCHW",
    Framework.TENSORFLOW: "NHWC",
    Framework.TFLITE: "NHWC",
}
_CHANNEL_COUNTS = (1, 3, 4)


@dataclass(frozen=True)
class DataInputConfig:
    """Parsed inputs, in the order given, with the layout the framework expects."""

    inputs: dict[str, tuple[int, ...]]
    layout: str | None
    warnings: list[str] = field(default_factory=list)

    def wire(self) -> dict[str, list[int]]:
        return {name: list(shape) for name, shape in self.inputs.items()}


def parse_data_input_config(raw: Any, framework: Framework | str) -> DataInputConfig:
    framework = Framework(framework)
    if isinstance(raw, str):
        raw = _parse_text(raw)

    if raw is None or raw == {} or raw == []:
        if framework is Framework.XGBOOST:
            return DataInputConfig(inputs={}, layout=None)
        raise DataInputConfigError(
            f"dataInputConfig is required for {framework.value}: give each input's name and shape, "
            f"e.g. {_example(framework)}"
        )

    if isinstance(raw, list):
        if framework is not Framework.PYTORCH:
            raise DataInputConfigError(
                f"the list form of dataInputConfig is only accepted for PYTORCH; {framework.value} needs "
                f"input names: use a dictionary, e.g. {_example(framework)}"
            )
        # A single flat shape ([1,3,224,224]) is a common slip for [[1,3,224,224]].
        if raw and all(isinstance(d, int) and not isinstance(d, bool) for d in raw):
            raise DataInputConfigError(
                f"dataInputConfig list form is a list of shapes: write [{json.dumps(raw)}], not {json.dumps(raw)}"
            )
        named = {f"input{i}": shape for i, shape in enumerate(raw)}
    elif isinstance(raw, dict):
        named = raw
    else:
        raise DataInputConfigError(
            f"dataInputConfig must be a dictionary of input name to shape, got {type(raw).__name__}: "
            f"e.g. {_example(framework)}"
        )

    inputs: dict[str, tuple[int, ...]] = {}
    for name, shape in named.items():
        if not isinstance(name, str) or not name.strip():
            raise DataInputConfigError(f"dataInputConfig has an input with an empty name: {name!r}")
        inputs[name] = _parse_shape(name, shape)

    layout = LAYOUT.get(framework)
    return DataInputConfig(inputs=inputs, layout=layout, warnings=_layout_warnings(inputs, framework, layout))


def _parse_text(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        # Neo's documentation writes Python dictionaries ({'data': [1,3,224,224]}).
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise DataInputConfigError(f"dataInputConfig is not valid JSON: {text!r} ({err})") from None


def _parse_shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list | tuple):
        raise DataInputConfigError(
            f"input '{name}': shape must be a list of dimensions such as [1,3,224,224], got {shape!r}"
        )
    if not shape:
        raise DataInputConfigError(f"input '{name}': shape is empty; give every dimension, e.g. [1,3,224,224]")
    dims = []
    for axis, dim in enumerate(shape):
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise DataInputConfigError(
                f"input '{name}': dimension {axis} is {dim!r}; ahead-of-time compilation needs every "
                f"dimension as a positive integer"
            )
        if dim <= 0:
            raise DataInputConfigError(
                f"input '{name}': dimension {axis} is {dim}; dynamic or empty dimensions cannot be "
                f"compiled ahead of time, give the size the model will be served with"
            )
        dims.append(dim)
    return tuple(dims)


def _layout_warnings(inputs: dict[str, tuple[int, ...]], framework: Framework, layout: str | None) -> list[str]:
    """Hints for 4-D image inputs whose channel axis looks misplaced.

    Only hints: an ONNX model converted from TensorFlow may really take NHWC, and the
    compiler checks every shape against the model itself.
    """
    warnings = []
    for name, shape in inputs.items():
        if len(shape) != 4:
            continue
        looks_nhwc = shape[3] in _CHANNEL_COUNTS and shape[1] not in _CHANNEL_COUNTS
        looks_nchw = shape[1] in _CHANNEL_COUNTS and shape[3] not in _CHANNEL_COUNTS
        if layout == "NCHW" and looks_nhwc:
            warnings.append(f"input '{name}' {list(shape)} looks channel-last (NHWC); {framework.value} expects NCHW")
        elif layout == "NHWC" and looks_nchw:
            warnings.append(f"input '{name}' {list(shape)} looks channel-first (NCHW); {framework.value} expects NHWC")
    return warnings


def _example(framework: Framework) -> str:
    if framework in (Framework.TENSORFLOW, Framework.TFLITE):
        return '{"input": [1,224,224,3]}'
    if framework is Framework.PYTORCH:
        return '{"input0": [1,3,224,224]} or [[1,3,224,224]]'
    return '{"data": [1,3,224,224]}'
