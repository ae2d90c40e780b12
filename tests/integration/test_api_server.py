"""The CRDs on a real API server: they install, the examples apply, bad specs bounce with field errors."""

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ConflictError

from kompile.api import API_VERSION, RESOURCES
from tests.conftest import ROOT
from tests.integration.conftest import kompile, kubectl

pytestmark = pytest.mark.integration

GOOD_JOB = {
    "inputConfig": {
        "s3Uri": "s3://models/squeezenet/model.onnx",
        "framework": "ONNX",
        "dataInputConfig": {"data_0": [1, 3, 224, 224]},
    },
    "outputConfig": {"s3OutputLocation": "s3://artifacts/squeezenet/", "targetDevice": "x86-avx2"},
}


def test_crds_are_established(cluster):
    ext = client.ApiextensionsV1Api()
    for resource in RESOURCES:
        crd = ext.read_custom_resource_definition(resource.crd_name)
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True", resource.kind
        assert conditions.get("NonStructuralSchema") is None, resource.kind


def _example_jobs() -> set[str]:
    docs = (d for f in sorted((ROOT / "examples").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()))
    return {f"compilationjob.kompile.dev/{d['metadata']['name']}" for d in docs if d and d["kind"] == "CompilationJob"}


def test_every_example_applies(cluster, namespace):
    result = kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples"))
    assert "compilationjob.kompile.dev/squeezenet-avx2" in result.stdout
    listed = kubectl("get", "compilationjobs", "-n", namespace, "-o", "name").stdout.split()
    assert set(listed) == _example_jobs()


def test_empty_strings_survive_the_server(cluster, namespace):
    # Guards the build recipe: go-openapi's zero-value check once turned "" into null.
    body = kompile("CompilationJob", "empty-strings", GOOD_JOB, namespace)
    created, _ = cluster.create(body)
    patched = cluster.patch_status(API_VERSION, "CompilationJob", "empty-strings", namespace, {"failureReason": ""})
    assert patched["status"]["failureReason"] == ""
    assert created["spec"]["outputConfig"]["precision"] == "FP32"  # a schema default, applied by the server


def test_status_writes_honour_the_version_read(cluster, namespace):
    # The operator's exactly-once transitions rest on this precondition on the status subresource.
    created, _ = cluster.create(kompile("CompilationJob", "versioned", GOOD_JOB, namespace))
    stale = created["metadata"]["resourceVersion"]
    cluster.patch_status(API_VERSION, "CompilationJob", "versioned", namespace, {"phase": "Starting"}, stale)
    with pytest.raises(ConflictError):
        cluster.patch_status(API_VERSION, "CompilationJob", "versioned", namespace, {"phase": "Failed"}, stale)
    assert cluster.get(API_VERSION, "CompilationJob", "versioned", namespace)["status"]["phase"] == "Starting"


def _with(path: str, value):
    spec = {k: dict(v) for k, v in GOOD_JOB.items()}
    section, _, field = path.partition(".")
    if field:
        spec[section][field] = value
    else:
        spec[section] = value
    return spec


@pytest.mark.parametrize(
    "kind, spec, field",
    [
        ("CompilationJob", _with("inputConfig.framework", "CAFFE"), "spec.inputConfig.framework"),
        ("CompilationJob", _with("inputConfig.s3Uri", "https://bucket/model.onnx"), "spec.inputConfig.s3Uri"),
        ("CompilationJob", _with("outputConfig.precision", "FP8"), "spec.outputConfig.precision"),
        ("CompilationJob", _with("outputConfig.targetPlatform", {"arch": "arm64"}), "spec.outputConfig"),
        ("CompilationJob", _with("outputConfig.compiledModelName", "Bad_Name"), "spec.outputConfig.compiledModelName"),
        (
            "CompilationJob",
            _with("stoppingCondition", {"maxRuntimeInSeconds": 100000}),
            "spec.stoppingCondition.maxRuntimeInSeconds",
        ),
        ("CompilationJob", _with("tuning", {"trials": -1}), "spec.tuning.trials"),
        ("CompilationJob", {"outputConfig": GOOD_JOB["outputConfig"]}, "spec.inputConfig"),
        ("InferenceEndpoint", {"compiledModelName": "m", "replicas": -1}, "spec.replicas"),
        (
            "InferenceEndpoint",
            {"compiledModelName": "m", "autoscaling": {"minReplicas": 1}},
            "spec.autoscaling.maxReplicas",
        ),
        (
            "InferenceEndpoint",
            {"compiledModelName": "m", "resources": {"requests": {"cpu": "lots"}}},
            "spec.resources.requests.cpu",
        ),
        (
            "InferenceEndpoint",
            {"compiledModelName": "m", "autoscaling": {"maxReplicas": 3, "metric": "gpu"}},
            "spec.autoscaling.metric",
        ),
        (
            "CompiledModel",
            {"artifact": {"uri": "s3://artifacts/m/", "sha256": "abc"}, "target": "t", "framework": "ONNX"},
            "spec.artifact.sha256",
        ),
        (
            "CompiledModel",
            {
                "artifact": {"uri": "s3://artifacts/m/", "sha256": "a" * 64},
                "target": "t",
                "framework": "ONNX",
                "inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT"}],
            },
            "spec.inputs.datatype",
        ),
    ],
)
def test_server_rejects_bad_specs_naming_the_field(cluster, namespace, kind, spec, field):
    plural = next(r.plural for r in RESOURCES if r.kind == kind)
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi().create_namespaced_custom_object(
            "kompile.dev", "v1alpha1", namespace, plural, kompile(kind, "bad", spec, namespace)
        )
    assert err.value.status == 422
    assert field in err.value.body, err.value.body


def test_hardware_target_rules(cluster):
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi().create_cluster_custom_object(
            "kompile.dev",
            "v1alpha1",
            "hardwaretargets",
            kompile("HardwareTarget", "bad-arch", {"platform": {"arch": "riscv64"}, "tvm": {"kind": "llvm"}}),
        )
    assert "spec.platform.arch" in err.value.body
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi().create_cluster_custom_object(
            "kompile.dev",
            "v1alpha1",
            "hardwaretargets",
            kompile(
                "HardwareTarget", "bad-cuda", {"platform": {"arch": "x86_64"}, "tvm": {"kind": "cuda", "arch": "80"}}
            ),
        )
    assert "spec.tvm.arch" in err.value.body


def test_kubectl_shows_columns_and_short_names(cluster, namespace):
    cluster.apply(kompile("CompilationJob", "columns", GOOD_JOB, namespace))
    out = kubectl("get", "kcj", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "PHASE", "FRAMEWORK", "TARGET", "PRECISION"]
    assert "columns" in out and "ONNX" in out and "x86-avx2" in out
    assert "compilationjob.kompile.dev/columns" in kubectl("get", "kompile", "-n", namespace, "-o", "name").stdout
