"""PyTorch: TorchScript files (`torch.jit.trace(...).save("model.pth")`, as Neo asks) and
`torch.export` programs (`torch.export.save(ep, "model.pt2")`). Torch itself is the reference.

A TorchScript module goes through torch's TorchScript-based ONNX exporter into TVM's ONNX
importer; an exported program goes straight to TVM's `from_exported_program`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from kompile.api import DataInputConfig
from kompile.api.common import DataType, TensorSpec
from kompile_compiler.frontends import Imported, show
from kompile_compiler.report import CompileError


def load(path: Path, inputs: DataInputConfig, threads: int) -> Imported:
    import torch

    torch.set_num_threads(threads)
    names = list(inputs.inputs)
    # Neo: PyTorch models take float32 inputs. An exported program says its own types.
    specs = [TensorSpec(name=n, shape=list(inputs.inputs[n]), datatype=DataType.FP32) for n in names]
    if path.suffix == ".pt2":
        module, mod, specs = _exported_program(path, specs)
    else:
        module, mod = _torchscript(path, specs)

    def reference(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(feed[n]) for n in names])
        return [t.numpy() for t in (out if isinstance(out, list | tuple) else [out])]

    return Imported(
        mod=mod,
        inputs=specs,
        reference=reference,
        reference_name=f"torch {torch.__version__}",
        output_names=None,  # unnamed in PyTorch: the pipeline names them output0, output1, ...
    )


def _torchscript(path: Path, specs: list[TensorSpec]):
    import onnx
    import torch
    from tvm.relax.frontend.onnx import from_onnx

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError and others for non-TorchScript files
        raise CompileError(
            "InvalidModel",
            f"{path.name} is not a TorchScript file ({str(err).splitlines()[0]}); save it as Neo asks: "
            "torch.jit.trace(model, example).save('model.pth'), or use torch.export.save(..., 'model.pt2')",
        ) from None
    examples = tuple(torch.zeros(s.shape) for s in specs)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, examples, buffer, dynamo=False, input_names=[s.name for s in specs])
    except Exception as err:  # noqa: BLE001 - a wrong input count or shape surfaces here
        raise CompileError(
            "InputShapeMismatch",
            f"the model does not run on inputs {[s.shape for s in specs]} from dataInputConfig: "
            f"{str(err).strip().splitlines()[-1]}",
        ) from None
    model = onnx.load_from_string(buffer.getvalue())
    try:
        mod = from_onnx(model, shape_dict={s.name: s.shape for s in specs}, keep_params_in_input=False)
    except Exception as err:  # noqa: BLE001
        raise CompileError(
            "UnsupportedOperator", f"TVM could not import the model: {str(err).splitlines()[0]}"
        ) from None
    return module, mod


def _exported_program(path: Path, specs: list[TensorSpec]):
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    try:
        program = torch.export.load(str(path))
    except Exception as err:  # noqa: BLE001
        raise CompileError("InvalidModel", f"{path.name} is not a torch.export program: {err}") from None
    placeholders = [
        n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs
    ]
    exported = [list(n.meta["val"].shape) for n in placeholders]
    dtypes = [str(n.meta["val"].dtype) for n in placeholders]
    if len(exported) != len(specs):
        raise CompileError(
            "InputShapeMismatch", f"the program takes {len(exported)} inputs, dataInputConfig gives {len(specs)}"
        )
    for spec, shape in zip(specs, exported, strict=True):
        if [int(d) for d in shape] != spec.shape:
            raise CompileError(
                "InputShapeMismatch",
                f"input '{spec.name}' is {show(shape)} in the exported program, "
                f"dataInputConfig gives {show(spec.shape)}",
            )
    typed = []
    for spec, torch_type in zip(specs, dtypes, strict=True):
        if (datatype := DataType.of_array_type(torch_type)) is None:
            raise CompileError("UnsupportedDataType", f"inputs of type {torch_type} are not supported")
        typed.append(spec.model_copy(update={"datatype": datatype}))
    try:
        mod = from_exported_program(program, keep_params_as_input=False)
    except Exception as err:  # noqa: BLE001
        raise CompileError(
            "UnsupportedOperator", f"TVM could not import the program: {str(err).splitlines()[0]}"
        ) from None
    return program.module(), mod, typed
