"""InferenceEndpoint through the operator: Deployment, Service and HPA on the target's pool."""

import pytest

from kompile.manifests import DIGEST_ANNOTATION
from tests.integration.conftest import eventually, get, kompile

pytestmark = pytest.mark.integration


def model_spec(target: str, digest: str) -> dict:
    return {
        "artifact": {"uri": "s3://artifacts/squeezenet/", "sha256": digest},
        "target": target,
        "framework": "ONNX",
        "inputs": [{"name": "data_0", "shape": [1, 3, 224, 224]}],
    }


def children(cluster, namespace, name="squeezenet"):
    child = f"{name}-predictor"
    return (
        cluster.get("apps/v1", "Deployment", child, namespace),
        cluster.get("v1", "Service", child, namespace),
        cluster.get("autoscaling/v2beta2", "HorizontalPodAutoscaler", child, namespace),
    )


def ready_condition(cluster, namespace, name):
    for c in (get(cluster, "InferenceEndpoint", name, namespace).get("status") or {}).get("conditions", []):
        if c["type"] == "Ready":
            return c
    return None


def test_endpoint_rolls_out_on_the_pool(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompiledModel", "squeezenet", model_spec(hardware_target, "1" * 64), namespace))
    cluster.apply(
        kompile(
            "InferenceEndpoint",
            "squeezenet",
            {
                "compiledModelName": "squeezenet",
                "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targetUtilizationPercentage": 60},
                "credentialsSecretName": "s3-creds",
            },
            namespace,
        )
    )
    dep, svc, hpa = eventually(
        lambda: all(children(cluster, namespace)) and children(cluster, namespace),
        message="Deployment, Service and HPA",
    )
    ie = get(cluster, "InferenceEndpoint", "squeezenet", namespace)
    for obj in (dep, svc, hpa):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == ie["metadata"]["uid"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kompile.dev/hardware-target": hardware_target}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert dep["spec"]["template"]["metadata"]["annotations"][DIGEST_ANNOTATION] == "1" * 64
    assert svc["spec"]["selector"] == {"kompile.dev/inference-endpoint": "squeezenet"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    status = eventually(
        lambda: (
            get(cluster, "InferenceEndpoint", "squeezenet", namespace).get("status", {}).get("url")
            and get(cluster, "InferenceEndpoint", "squeezenet", namespace)["status"]
        ),
        message="status url",
    )
    assert status["url"] == f"http://squeezenet-predictor.{namespace}.svc.cluster.local:8080"
    # No kubelet runs here, so no replica becomes ready and no digest is reported as served.
    assert ready_condition(cluster, namespace, "squeezenet")["status"] == "False"
    assert "servedDigest" not in status


def test_new_artifact_rolls_the_pods(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompiledModel", "squeezenet", model_spec(hardware_target, "2" * 64), namespace))
    eventually(
        lambda: (
            children(cluster, namespace)[0]["spec"]["template"]["metadata"]["annotations"][DIGEST_ANNOTATION]
            == "2" * 64
        ),
        message="digest rolled into the Deployment template",
    )


def test_dropping_autoscaling_removes_the_hpa(cluster, namespace, operator, hardware_target):
    cluster.apply(
        kompile(
            "InferenceEndpoint",
            "squeezenet",
            {"compiledModelName": "squeezenet", "replicas": 2, "autoscaling": None},
            namespace,
        )
    )
    eventually(lambda: children(cluster, namespace)[2] is None, message="HPA removed")
    assert children(cluster, namespace)[0]["spec"]["replicas"] == 2


def test_waits_for_its_model(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("InferenceEndpoint", "later", {"compiledModelName": "later"}, namespace))
    eventually(
        lambda: (ready_condition(cluster, namespace, "later") or {}).get("reason") == "CompiledModelNotFound",
        message="CompiledModelNotFound",
    )
    assert children(cluster, namespace, "later")[0] is None
    cluster.apply(kompile("CompiledModel", "later", model_spec(hardware_target, "3" * 64), namespace))
    eventually(lambda: children(cluster, namespace, "later")[0], timeout=30, message="Deployment once the model exists")
