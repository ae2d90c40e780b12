"""The API models' own rules: what a schema alone cannot say."""

import pytest
from pydantic import ValidationError

from kompile.api import CompilationJobSpec, HardwareTargetSpec, InferenceEndpointSpec
from kompile.api.hardwaretarget import TvmTarget
from kompile.controllers.validation import describe


def job(**output):
    return {
        "inputConfig": {"s3Uri": "s3://models/m.onnx", "framework": "ONNX", "dataInputConfig": {"x": [1, 3]}},
        "outputConfig": {"s3OutputLocation": "s3://out/m/", **output},
    }


def test_job_defaults_follow_neo():
    spec = CompilationJobSpec.model_validate(job(targetDevice="x86-avx2"))
    assert spec.stopping_condition.max_runtime_in_seconds == 900
    assert spec.output_config.precision.value == "FP32"
    assert spec.stop is False


@pytest.mark.parametrize("output", [{}, {"targetDevice": "a", "targetPlatform": {"arch": "arm64"}}])
def test_exactly_one_target(output):
    with pytest.raises(ValidationError) as err:
        CompilationJobSpec.model_validate(job(**output))
    assert "exactly one of targetDevice" in describe(err.value)


def test_errors_name_the_field_in_wire_form():
    bad = job(targetDevice="x86")
    bad["inputConfig"]["s3Uri"] = "https://example.com/model.onnx"
    bad["stoppingCondition"] = {"maxRuntimeInSeconds": 5}
    with pytest.raises(ValidationError) as err:
        CompilationJobSpec.model_validate(bad)
    text = describe(err.value)
    assert "inputConfig.s3Uri" in text
    assert "stoppingCondition.maxRuntimeInSeconds" in text


def test_unknown_fields_are_errors_not_silently_dropped():
    with pytest.raises(ValidationError) as err:
        CompilationJobSpec.model_validate({**job(targetDevice="x"), "tunning": {"trials": 5}})
    assert "tunning" in describe(err.value)


def test_tvm_target_dict_is_what_tvm_takes():
    target = TvmTarget.model_validate(
        {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-v1", "mattr": ["+neon"], "numCores": 4}
    )
    assert target.tvm_dict() == {
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mcpu": "neoverse-v1",
        "mattr": ["+neon"],
        "num-cores": 4,
    }
    cuda = TvmTarget.model_validate({"kind": "cuda", "arch": "sm_90", "host": {"mtriple": "x86_64-linux-gnu"}})
    assert cuda.tvm_dict() == {"kind": "cuda", "arch": "sm_90", "host": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}}


@pytest.mark.parametrize(
    "tvm, message",
    [
        ({"kind": "cuda"}, "a cuda target needs arch"),
        ({"kind": "llvm", "arch": "sm_80"}, "arch is a CUDA target attribute"),
    ],
)
def test_target_rules(tvm, message):
    with pytest.raises(ValidationError) as err:
        TvmTarget.model_validate(tvm)
    assert message in str(err.value)


def test_tvm_backend_needs_a_tvm_target():
    with pytest.raises(ValidationError) as err:
        HardwareTargetSpec.model_validate({"platform": {"arch": "x86_64"}})
    assert "backend tvm needs the tvm target" in str(err.value)
    neuron = HardwareTargetSpec.model_validate(
        {"platform": {"arch": "x86_64", "accelerator": "neuron"}, "backend": "neuron"}
    )
    assert neuron.tvm is None


def test_autoscaling_bounds():
    with pytest.raises(ValidationError) as err:
        InferenceEndpointSpec.model_validate(
            {"compiledModelName": "m", "autoscaling": {"minReplicas": 3, "maxReplicas": 2}}
        )
    assert "maxReplicas (2) is below minReplicas (3)" in str(err.value)


@pytest.mark.parametrize("quantity", ["500m", "2Gi", "1", 4, "1.5"])
def test_quantities(quantity):
    spec = InferenceEndpointSpec.model_validate(
        {"compiledModelName": "m", "resources": {"requests": {"cpu": quantity}}}
    )
    assert spec.resources.requests["cpu"] == str(quantity)


def test_bad_quantity():
    with pytest.raises(ValidationError):
        InferenceEndpointSpec.model_validate({"compiledModelName": "m", "resources": {"requests": {"cpu": "lots"}}})


def test_inline_platforms_have_one_dns_safe_name():
    from kompile.api.hardwaretarget import TargetPlatform

    assert TargetPlatform(arch="x86_64").name == "linux-x86-64"
    assert TargetPlatform(arch="arm64", accelerator="nvidia").name == "linux-arm64-nvidia"


def test_one_table_of_tensor_types():
    from kompile.api.common import DataType

    assert DataType.FP32.array_type == "float32"
    assert DataType.of_array_type("int64") is DataType.INT64
    assert DataType.of_array_type("torch.bool") is DataType.BOOL
    assert DataType.BYTES.array_type is None and DataType.of_array_type("complex64") is None


@pytest.mark.parametrize(
    "latency, verdict",
    [
        ({"p50Ms": 2.5, "referenceP50Ms": 3.2}, (True, "p50 2.50 ms, 1.28x the speed of the reference (3.20 ms)")),
        (
            {"p50Ms": 321.7, "referenceP50Ms": 6.81},
            (False, "p50 321.70 ms is 47.2x slower than the reference (6.81 ms)"),
        ),
        ({"p50Ms": 3.0}, None),
        ({}, None),
    ],
)
def test_latency_says_how_it_compares_with_the_reference(latency, verdict):
    from kompile.api.compiledmodel import Latency

    assert Latency.model_validate(latency).versus_reference() == verdict
