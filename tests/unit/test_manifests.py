"""The Kubernetes objects the operator makes, built from specs without a cluster."""

import json

import pytest

from kompile.api import CompilationJobSpec, HardwareTargetSpec, InferenceEndpointSpec
from kompile.api.compiledmodel import CompiledModelSpec
from kompile.config import OperatorConfig
from kompile.kube import child_name
from kompile.manifests import DIGEST_ANNOTATION
from kompile.manifests.compiler import compiler_job
from kompile.manifests.serving import autoscaler, deployment, service

CFG = OperatorConfig(compiler_image="reg/compiler:1", runtime_image="reg/runtime:1", s3_endpoint="http://s3:8333")
GPU = HardwareTargetSpec.model_validate(
    {
        "platform": {"arch": "x86_64", "accelerator": "nvidia"},
        "tvm": {"kind": "cuda", "arch": "sm_80"},
        "nodeSelector": {"kompile.dev/hardware-target": "nvidia-sm80"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
    }
)


def owner(kind, name):
    return {
        "apiVersion": "kompile.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ml", "uid": "u-1", "generation": 1},
    }


def cj_spec(**extra):
    return CompilationJobSpec.model_validate(
        {
            "inputConfig": {"s3Uri": "s3://models/a.onnx", "framework": "ONNX", "dataInputConfig": {"x": [1, 3]}},
            "outputConfig": {"s3OutputLocation": "s3://artifacts/a/", "targetDevice": "nvidia-sm80"},
            "stoppingCondition": {"maxRuntimeInSeconds": 1200},
            "credentialsSecretName": "s3-creds",
            **extra,
        }
    )


def test_compiler_job_carries_spec_deadline_and_owner():
    job = compiler_job(owner("CompilationJob", "resnet"), cj_spec(), "nvidia-sm80", GPU, CFG)
    assert job["metadata"]["name"] == "resnet-compile"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["spec"]["activeDeadlineSeconds"] == 1200
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "reg/compiler:1"
    passed = json.loads(next(e["value"] for e in container["env"] if e["name"] == "KOMPILE_JOB"))
    assert passed["spec"]["inputConfig"]["dataInputConfig"] == {"x": [1, 3]}
    assert passed["target"]["spec"]["tvm"] == {"kind": "cuda", "arch": "sm_80"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # A cross-compile runs anywhere: no pool placement.
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_credentials_come_from_the_secret_by_reference_only():
    job = compiler_job(owner("CompilationJob", "resnet"), cj_spec(), "nvidia-sm80", GPU, CFG)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert all("value" not in env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    assert env["KOMPILE_S3_ENDPOINT"]["value"] == "http://s3:8333"


@pytest.mark.parametrize("natively, tuning", [(True, None), (False, {"trials": 64})])
def test_native_compiles_go_to_the_pool(natively, tuning):
    target = GPU.model_copy(update={"compile_natively": natively})
    extra = {"tuning": tuning} if tuning else {}
    pod = compiler_job(owner("CompilationJob", "r"), cj_spec(**extra), "nvidia-sm80", target, CFG)["spec"]["template"][
        "spec"
    ]
    assert pod["nodeSelector"] == {"kompile.dev/hardware-target": "nvidia-sm80"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_pods_run_unprivileged():
    pod = compiler_job(owner("CompilationJob", "r"), cj_spec(), None, None, CFG)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = pod["containers"][0]["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True


MODEL = CompiledModelSpec.model_validate(
    {
        "artifact": {"uri": "s3://artifacts/a/", "sha256": "a" * 64},
        "target": "nvidia-sm80",
        "framework": "ONNX",
    }
)


def test_deployment_on_the_pool_with_digest_and_probes():
    ie = owner("InferenceEndpoint", "resnet")
    spec = InferenceEndpointSpec.model_validate({"compiledModelName": "resnet", "replicas": 2})
    dep = deployment(ie, spec, "resnet", MODEL, GPU, CFG)
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert pod["nodeSelector"] == {"kompile.dev/hardware-target": "nvidia-sm80"}
    assert pod["tolerations"][0]["effect"] == "NoSchedule"
    container = pod["containers"][0]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}  # the target's default
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert dep["spec"]["template"]["metadata"]["annotations"][DIGEST_ANNOTATION] == "a" * 64
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "InferenceEndpoint"


def test_serving_pods_size_threads_to_their_cpu_and_drain_before_stopping():
    ie = owner("InferenceEndpoint", "resnet")
    spec = InferenceEndpointSpec.model_validate({"compiledModelName": "resnet"})
    pod = deployment(ie, spec, "resnet", MODEL, GPU, CFG)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TVM_NUM_THREADS"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": "server",
        "resource": "limits.cpu",
        "divisor": "1",
    }
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    # The grace period covers the preStop pause and the server's own drain.
    assert pod["terminationGracePeriodSeconds"] > int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_autoscaling_leaves_replicas_to_the_hpa():
    ie = owner("InferenceEndpoint", "resnet")
    spec = InferenceEndpointSpec.model_validate(
        {
            "compiledModelName": "resnet",
            "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetUtilizationPercentage": 60},
        }
    )
    assert "replicas" not in deployment(ie, spec, "resnet", MODEL, GPU, CFG)["spec"]
    hpa = autoscaler(ie, spec, "autoscaling/v2beta2")
    assert hpa["apiVersion"] == "autoscaling/v2beta2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 60},
    }
    assert autoscaler(ie, InferenceEndpointSpec.model_validate({"compiledModelName": "r"}), "autoscaling/v2") is None


def test_service_selects_the_endpoint_pods():
    svc = service(owner("InferenceEndpoint", "resnet"), CFG)
    assert svc["spec"]["selector"] == {"kompile.dev/inference-endpoint": "resnet"}
    assert svc["spec"]["ports"][0]["port"] == 8080


def test_child_names_are_deterministic_labels():
    assert child_name("squeezenet", "compile") == "squeezenet-compile"
    long = "a-very-long-compilation-job-name-that-goes-on-and-on-past-the-label-limit"
    name = child_name(long, "compile")
    assert len(name) <= 63 and name.endswith("-compile") and name == child_name(long, "compile")
    assert name != child_name(long + "x", "compile")
    assert child_name("model.v2", "predictor") == "model-v2-predictor"
