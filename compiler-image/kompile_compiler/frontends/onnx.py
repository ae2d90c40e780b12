"""ONNX through TVM Relax's ONNX importer; onnxruntime is the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from kompile.api import DataInputConfig
from kompile.api.common import DataType, TensorSpec
from kompile_compiler.frontends import Imported, show
from kompile_compiler.report import CompileError


def datatype(dtype: np.dtype) -> DataType:
    found = DataType.of_array_type(np.dtype(dtype).name)
    if found is None:
        raise CompileError("UnsupportedDataType", f"tensors of type {dtype} are not supported")
    return found


def model_inputs(model: onnx.ModelProto) -> list[tuple[str, list[int | str], np.dtype]]:
    """The graph's real inputs (old exporters list weights as inputs too), dynamic dims as names."""
    weights = {init.name for init in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
            for d in tensor.shape.dim
        ]
        out.append((value.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))))
    return out


def check_inputs(model_side: list[tuple[str, list, np.dtype]], declared: DataInputConfig) -> None:
    """dataInputConfig must name the model's inputs, with shapes the model admits."""
    names = [name for name, _, _ in model_side]
    for name in declared.inputs:
        if name not in names:
            raise CompileError(
                "UnknownInput", f"dataInputConfig names input '{name}', but the model's inputs are {names}"
            )
    for name, dims, _ in model_side:
        if name not in declared.inputs:
            raise CompileError(
                "MissingInput", f"the model's input '{name}' {show(dims)} has no shape in dataInputConfig"
            )
        given = list(declared.inputs[name])
        fits = len(given) == len(dims) and all(isinstance(m, str) or m == g for m, g in zip(dims, given, strict=True))
        if not fits:
            raise CompileError(
                "InputShapeMismatch",
                f"input '{name}' is {show(dims)} in the model, dataInputConfig gives {show(given)}",
            )


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def _list_initializers_as_inputs(model: onnx.ModelProto) -> bool:
    """IR 3 wants every initializer among the graph's inputs; onnxruntime's quantizer adds scales
    and zero points to IR 3 models without listing them. List them, as IR 3 means."""
    if model.ir_version >= 4:
        return False
    listed = {i.name for i in model.graph.input}
    missing = [t for t in model.graph.initializer if t.name not in listed]
    for tensor in missing:
        model.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    return bool(missing)


def load(path: Path, inputs: DataInputConfig, threads: int, quantized: bool = False, relax: bool = True) -> Imported:
    """The model checked against `inputs`, with onnxruntime as its reference; imported into Relax
    unless `relax` is False (an uncompiled model is served by onnxruntime as it is)."""
    try:
        model = onnx.load(str(path))
        # The reference runtime reads the same model TVM imports, fixed where it had to be.
        source = model.SerializeToString() if _list_initializers_as_inputs(model) else str(path)
        onnx.checker.check_model(model)
    except Exception as err:  # noqa: BLE001 - onnx raises several kinds for a bad file
        raise CompileError("InvalidModel", f"{path.name} is not a valid ONNX model: {err}") from None
    if quantized and not QDQ_OPS & {n.op_type for n in model.graph.node}:
        raise CompileError(
            "UnsupportedPrecision",
            "INT8: the model has no QuantizeLinear/DequantizeLinear nodes; quantize it first, e.g. with "
            "onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ), and compile that",
        )
    model_side = model_inputs(model)
    check_inputs(model_side, inputs)

    mod = _relax_module(model, model_side, inputs) if relax else None

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # old exporters' unused initializers make it warn at length
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return Imported(
        mod=mod,
        inputs=[TensorSpec(name=n, shape=list(inputs.inputs[n]), datatype=datatype(t)) for n, _, t in model_side],
        reference=lambda feed: session.run(None, feed),
        reference_name=f"onnxruntime {ort.__version__}",
        output_names=[o.name for o in model.graph.output],
    )


def _relax_module(model: onnx.ModelProto, model_side, inputs: DataInputConfig):
    from tvm.relax.frontend.onnx import from_onnx

    shapes = {name: list(inputs.inputs[name]) for name, _, _ in model_side}
    dtypes = {name: str(dtype) for name, _, dtype in model_side}
    try:
        return from_onnx(model, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
    except Exception as err:  # noqa: BLE001 - the importer raises whatever an unsupported op hits
        raise CompileError(
            "UnsupportedOperator", f"TVM could not import the model: {str(err).splitlines()[0]}"
        ) from None
