"""ONNX models compiled by TVM for this machine's CPU, checked against onnxruntime."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kompile.api import Framework
from kompile.api.common import DataType
from kompile.api.result import CompilerResult, parse_termination_message
from kompile.storage import S3Location
from kompile_compiler.pipeline import compile_model
from kompile_compiler.report import CompileError
from kompile_compiler.targets import host_target
from tests.compiler.models import compile_onnx, save, with_random_weights, zoo


@pytest.fixture(scope="module")
def squeezenet(tmp_path_factory):
    return save(with_random_weights(zoo("squeezenet")), tmp_path_factory.mktemp("models") / "squeezenet.onnx")


def mlp(path, batch="N"):
    """A two-layer perceptron with a dynamic batch dimension, built here (compiles in a second)."""
    rng = np.random.default_rng(1)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [16, 32], rng.standard_normal((16, 32)).astype(np.float32).ravel())
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [32, 4], rng.standard_normal((32, 4)).astype(np.float32).ravel())
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["logits"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, path)


def test_squeezenet_matches_onnxruntime(squeezenet, tmp_path):
    out = tmp_path / "artifact"
    result, manifest = compile_onnx(squeezenet, {"data_0": [1, 3, 224, 224]}, tmp_path / "work", output_dir=out)
    assert manifest["parity"]["maxAbsError"] <= 1e-4
    assert manifest["parity"]["reference"].startswith("onnxruntime")
    assert [o.wire() for o in result.outputs] == [
        {"name": "softmaxout_1", "shape": [1, 1000, 1, 1], "datatype": "FP32"}
    ]
    assert result.inputs[0].datatype is DataType.FP32
    assert result.latency.p50_ms > 0 and result.latency.reference_p50_ms > 0
    # The digest pins the manifest, and the manifest pins every file.
    written = json.loads((out / "manifest.json").read_text())
    assert result.artifact.sha256 == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert written["files"] == {"model.so": hashlib.sha256((out / "model.so").read_bytes()).hexdigest()}
    assert written["model"]["sourceSha256"] == hashlib.sha256(squeezenet.read_bytes()).hexdigest()
    assert written["compiler"]["tvm"] and written["target"]["tvm"]["kind"] == "llvm"
    # The compiler's own code and records are part of what built it, so part of the reuse key.
    assert written["compiler"]["kompile"].startswith("0.1.0+")


def test_dynamic_batch_is_fixed_by_data_input_config(tmp_path):
    result, manifest = compile_onnx(mlp(tmp_path / "mlp.onnx"), {"features": [8, 16]}, tmp_path / "work")
    assert result.outputs[0].shape == [8, 4]
    assert manifest["parity"]["maxAbsError"] <= 1e-4


@pytest.mark.parametrize(
    "config, reason, detail",
    [
        (
            {"data_0": [1, 3, 256, 256]},
            "InputShapeMismatch",
            "input 'data_0' is [1,3,224,224] in the model, dataInputConfig gives [1,3,256,256]",
        ),
        (
            {"data_0": [1, 3, 224]},
            "InputShapeMismatch",
            "input 'data_0' is [1,3,224,224] in the model, dataInputConfig gives [1,3,224]",
        ),
        (
            {"data": [1, 3, 224, 224]},
            "UnknownInput",
            "dataInputConfig names input 'data', but the model's inputs are ['data_0']",
        ),
        ({"data_0": [1, 3, -1, 224]}, "InvalidDataInputConfig", "input 'data_0': dimension 2 is -1"),
    ],
)
def test_input_errors_name_the_input(squeezenet, tmp_path, config, reason, detail):
    with pytest.raises(CompileError) as err:
        compile_onnx(squeezenet, config, tmp_path)
    assert err.value.reason == reason
    assert detail in err.value.detail


def test_missing_input(tmp_path):
    model = onnx.load(str(mlp(tmp_path / "two.onnx")))
    model.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 16]))
    with pytest.raises(CompileError) as err:
        compile_onnx(save(model, tmp_path / "two-inputs.onnx"), {"features": [1, 16]}, tmp_path)
    assert (err.value.reason, err.value.detail) == (
        "MissingInput",
        "the model's input 'mask' [1,16] has no shape in dataInputConfig",
    )


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CompileError) as err:
        compile_onnx(bad, {"x": [1]}, tmp_path)
    assert err.value.reason == "InvalidModel"


def _tar(path, entries):
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "dev":
                info.type = tarfile.CHRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "entries, reason, fragment",
    [
        ([("../evil.onnx", b"x", "file")], "InvalidModelArchive", "points outside the archive"),
        ([("/etc/evil.onnx", b"x", "file")], "InvalidModelArchive", "points outside the archive"),
        ([("model.onnx", "../../etc/passwd", "sym")], "InvalidModelArchive", "leaves the archive"),
        ([("null", "", "dev")], "InvalidModelArchive", "is not a file or folder"),
        ([("a.onnx", b"x", "file"), ("b/c.onnx", b"y", "file")], "AmbiguousModel", "a.onnx, b/c.onnx"),
        ([("README.md", b"hi", "file")], "ModelNotFound", "no ONNX model file (*.onnx) in the archive"),
    ],
)
def test_archives_are_unpacked_safely(tmp_path, entries, reason, fragment):
    archive = _tar(tmp_path / "model.tar.gz", entries)
    with pytest.raises(CompileError) as err:
        compile_onnx(archive, {"x": [1]}, tmp_path / "work")
    assert err.value.reason == reason and fragment in err.value.detail
    assert not (tmp_path / "evil.onnx").exists()


def qdq(source, path):
    """`source` quantized to INT8 by onnxruntime's own tools (static, QDQ format), calibrated on
    a few random images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Images(CalibrationDataReader):
        def __init__(self):
            self.rng, self.left = np.random.default_rng(11), 4

        def get_next(self):
            if not self.left:
                return None
            self.left -= 1
            return {"data_0": self.rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}

    quantize_static(
        str(source),
        str(path),
        Images(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return path


def test_int8_from_a_qdq_model_matches_onnxruntime_and_says_how_fast(squeezenet, tmp_path):
    from kompile.api import Precision

    model = qdq(squeezenet, tmp_path / "squeezenet-int8.onnx")
    result, manifest = compile_onnx(model, {"data_0": [1, 3, 224, 224]}, tmp_path / "work", precision=Precision.INT8)
    assert manifest["precision"] == "INT8" and result.precision is Precision.INT8
    assert manifest["parity"]["reference"].startswith("onnxruntime")
    assert manifest["parity"]["maxAbsError"] <= manifest["parity"]["atol"] + manifest["parity"]["rtol"]
    assert manifest["latency"]["speedupVsReference"] > 0  # measured, whichever way it goes


def test_int8_needs_a_quantized_model(squeezenet, tmp_path):
    from kompile.api import Precision

    with pytest.raises(CompileError) as err:
        compile_onnx(squeezenet, {"data_0": [1, 3, 224, 224]}, tmp_path, precision=Precision.INT8)
    assert err.value.reason == "UnsupportedPrecision"
    assert err.value.detail.startswith("INT8: the model has no QuantizeLinear/DequantizeLinear nodes")


def test_unsupported_framework_says_so(squeezenet, tmp_path):
    with pytest.raises(CompileError) as err:
        compile_model(
            model_uri=str(squeezenet),
            framework=Framework.MXNET,
            data_input_config={"data": [1, 3]},
            target=host_target(),
            workdir=tmp_path,
        )
    assert err.value.reason == "UnsupportedFramework"
    assert err.value.detail.startswith("MXNET: not supported: MXNet is retired")


def _job(model_uri: str, output: str, **target) -> str:
    return json.dumps(
        {
            "name": "squeezenet",
            "namespace": "ml",
            "spec": {
                "inputConfig": {
                    "s3Uri": model_uri,
                    "framework": "ONNX",
                    "dataInputConfig": {"data_0": [1, 3, 224, 224]},
                },
                "outputConfig": {"s3OutputLocation": output, **target},
            },
        }
    )


def _pod(job: str, env: dict, tmp_path) -> tuple[subprocess.CompletedProcess, str]:
    """`python -m kompile_compiler` as the pod runs it, its termination log in tmp_path."""
    log = tmp_path / "termination-log"
    run = subprocess.run(
        [sys.executable, "-m", "kompile_compiler"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env, "KOMPILE_JOB": job, "KOMPILE_TERMINATION_LOG": str(log)},
    )
    return run, log.read_text() if log.exists() else ""


def test_pod_compiles_a_neo_archive_from_s3(s3, squeezenet, tmp_path):
    store, env = s3
    # Packaged as Neo asks: the model file inside model.tar.gz.
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(squeezenet, arcname="squeezenet/model.onnx")
    store.upload(archive, S3Location("kompile-models", "squeezenet/model.tar.gz"))
    inline = {"targetPlatform": {"arch": "x86_64" if os.uname().machine == "x86_64" else "arm64"}}
    run, message = _pod(
        _job("s3://kompile-models/squeezenet/model.tar.gz", "s3://kompile-artifacts/sq/", **inline), env, tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = parse_termination_message(message)
    assert isinstance(result, CompilerResult)
    assert result.artifact.uri == "s3://kompile-artifacts/sq/"
    manifest = store.read(S3Location("kompile-artifacts", "sq/manifest.json"))
    assert hashlib.sha256(manifest).hexdigest() == result.artifact.sha256
    library = store.read(S3Location("kompile-artifacts", "sq/model.so"))
    assert json.loads(manifest)["files"]["model.so"] == hashlib.sha256(library).hexdigest()
    assert "compiling for" in run.stderr  # progress for the pod's log


def test_pod_failures_reach_the_termination_log(s3, tmp_path):
    _, env = s3
    run, message = _pod(
        _job("s3://kompile-models/absent/model.onnx", "s3://kompile-artifacts/x/", targetPlatform={"arch": "x86_64"}),
        env,
        tmp_path,
    )
    assert run.returncode == 2
    assert message.startswith("ModelNotFound: cannot read s3://kompile-models/absent/model.onnx: NoSuchKey")
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    run, message = _pod(
        _job(
            "s3://kompile-models/squeezenet/model.tar.gz",
            "s3://kompile-artifacts/x/",
            targetPlatform={"arch": "x86_64"},
        ),
        wrong,
        tmp_path,
    )
    assert run.returncode == 2 and message.startswith("StorageAccessDenied: cannot read s3://kompile-models/")
    run, message = _pod(
        _job(
            "s3://kompile-models/x.onnx",
            "s3://kompile-artifacts/x/",
            targetPlatform={"arch": "x86_64", "accelerator": "neuron"},
        ),
        env,
        tmp_path,
    )
    assert message.startswith("BackendUnavailable: the neuron backend needs neuronx-cc")
    run, message = _pod("{not json", env, tmp_path)
    assert run.returncode == 2 and message.startswith("InvalidJob:")


def test_fp16_auto_cast_reports_its_error(squeezenet, tmp_path):
    from kompile.api import Precision

    result, manifest = compile_onnx(squeezenet, {"data_0": [1, 3, 224, 224]}, tmp_path, precision=Precision.FP16)
    assert result.precision is Precision.FP16 and manifest["precision"] == "FP16"
    assert result.outputs[0].datatype is DataType.FP32  # float32 at the model's edges
    # Measured, and within FP16's tolerance; not bit-exact like FP32.
    assert 0 < manifest["parity"]["maxAbsError"] <= 1e-2
    assert (manifest["parity"]["atol"], manifest["parity"]["rtol"]) == (1e-2, 1e-2)


def test_bf16_auto_cast_reports_its_error(squeezenet, tmp_path):
    """BF16 casts the operands of every convolution and matmul, keeps FP32 accumulators and
    FP32 everywhere else: an error bigger than FP32's, within BF16's tolerance."""
    from kompile.api import Precision

    result, manifest = compile_onnx(squeezenet, {"data_0": [1, 3, 224, 224]}, tmp_path, precision=Precision.BF16)
    assert result.precision is Precision.BF16 and manifest["precision"] == "BF16"
    assert result.outputs[0].datatype is DataType.FP32
    parity = manifest["parity"]
    assert (parity["atol"], parity["rtol"]) == (5e-2, 5e-2)
    # bfloat16 keeps 8 bits of mantissa: the error is real (FP32 compiles stay under 1e-5 here).
    assert 1e-5 < parity["maxAbsError"] <= 5e-2


def test_bf16_casts_only_what_multiplies(tmp_path):
    """The rewrite itself: each matmul takes bfloat16 operands and gives float32, ReLU and the
    model's edges stay float32, and the weights are folded into bfloat16 constants."""
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from kompile.api import Precision
    from kompile_compiler import autocast

    imported = from_onnx(onnx.load(mlp(tmp_path / "mlp.onnx", batch=2)), keep_params_in_input=False)
    text = autocast.apply(imported, Precision.BF16).script(show_meta=False)
    assert 'def main(features: R.Tensor((2, 16), dtype="float32")) -> R.Tensor((2, 4), dtype="float32")' in text
    assert text.count("R.astype(") == 2  # the two activations; the weights were cast at compile time
    matmuls = [line for line in text.splitlines() if "R.matmul(" in line]
    assert len(matmuls) == 2 and all(
        'dtype="float32") = R.matmul(' in m and 'out_dtype="float32"' in m for m in matmuls
    )
    assert 'dtype="float32") = R.nn.relu(' in text
    constants = []
    mod = autocast.apply(imported, Precision.BF16)
    relax.analysis.post_order_visit(
        mod["main"], lambda e: constants.append(str(e.ty)) if isinstance(e, tvm.ir.GenericConst) else None
    )
    assert sorted(constants) == ['R.Tensor((16, 32), dtype="bfloat16")', 'R.Tensor((32, 4), dtype="bfloat16")']
    # FP32 and INT8 leave the module as it is.
    assert autocast.apply(imported, Precision.FP32).same_as(imported)


def test_an_identical_compile_reuses_the_artifact(s3, tmp_path):
    """Same model, inputs, target, precision, options: the second job (a retried pod, a job
    applied again) finds the finished artifact and reuses it; any difference compiles anew."""
    store, _ = s3
    model = mlp(tmp_path / "mlp.onnx")

    def run(folder: str, **options):
        messages: list[str] = []
        result, manifest = compile_onnx(
            model,
            {"features": [2, 16]},
            tmp_path / folder,
            upload_to="s3://kompile-artifacts/reuse/mlp/",
            store=store,
            progress=messages.append,
            **options,
        )
        return result, manifest, messages

    first, written, _ = run("a")
    second, manifest, messages = run("b")
    assert manifest == {"contentKey": written["contentKey"], "reused": True}
    assert second.artifact == first.artifact and second.outputs == first.outputs
    assert second.latency == first.latency
    assert any("reused" in m for m in messages)
    third, manifest, _ = run("c", opt_level=2)
    assert "reused" not in manifest and manifest["contentKey"] != written["contentKey"]
    assert third.artifact.sha256 != first.artifact.sha256


def test_user_samples_from_s3_drive_the_parity_check(s3, tmp_path):
    store, _ = s3
    model = mlp(tmp_path / "mlp.onnx")
    samples = np.random.default_rng(9).standard_normal((3, 2, 16)).astype(np.float32)  # three samples of [2, 16]
    np.savez(tmp_path / "samples.npz", features=samples)
    store.upload(tmp_path / "samples.npz", S3Location.parse("s3://kompile-models/mlp/samples.npz"))
    _, manifest = compile_onnx(
        model,
        {"features": [2, 16]},
        tmp_path / "work",
        store=store,
        sample_data_uri="s3://kompile-models/mlp/samples.npz",
    )
    assert manifest["parity"]["samples"] == 3 and manifest["parity"]["inputs"] == "user samples"
    assert manifest["parity"]["maxAbsError"] <= 1e-4


@pytest.mark.parametrize(
    "arrays, detail",
    [
        ({"feature": np.zeros((2, 16), np.float32)}, "array 'feature' names no input; the inputs are ['features']"),
        ({"features": np.zeros((2, 8), np.float32)}, "input 'features': samples are [2, 8], the input is [2, 16]"),
        ({}, "no array for input 'features'"),
        ({"features": np.zeros((2, 16), np.float64)}, None),  # float64 is cast to float32
        (
            {"features": np.zeros((2, 16), np.complex64)},
            "input 'features': samples are complex64, the input is float32",
        ),
    ],
)
def test_bad_samples_say_what_does_not_fit(tmp_path, arrays, detail):
    np.savez(tmp_path / "samples.npz", **arrays)

    def compile_with_samples():
        return compile_onnx(
            mlp(tmp_path / "mlp.onnx"),
            {"features": [2, 16]},
            tmp_path / "work",
            sample_data_uri=str(tmp_path / "samples.npz"),
        )

    if detail is None:
        assert compile_with_samples()[1]["parity"]["inputs"] == "user samples"
        return
    with pytest.raises(CompileError) as err:
        compile_with_samples()
    assert err.value.reason == "InvalidSampleData" and detail in err.value.detail
