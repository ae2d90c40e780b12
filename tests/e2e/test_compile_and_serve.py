"""The mission's path on real nodes: kubectl apply a CompilationJob, a compiler pod compiles
with TVM, the operator registers the CompiledModel, an InferenceEndpoint serves it on its
hardware pool, and a v2 client gets the answer onnxruntime gives."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from kompile.storage import S3Location
from tests.compiler.models import save, with_random_weights, zoo
from tests.e2e.conftest import apply, compilation_job, get, wait_phase, whole_manifest
from tests.integration.conftest import eventually, kubectl

pytestmark = pytest.mark.e2e
INPUT = {"data_0": [1, 3, 224, 224]}


@pytest.fixture(scope="module")
def squeezenet(store, tmp_path_factory):
    path = save(with_random_weights(zoo("squeezenet")), tmp_path_factory.mktemp("e2e") / "squeezenet.onnx")
    uri = "s3://kompile-models/e2e/squeezenet.onnx"
    store.upload(path, S3Location.parse(uri))
    return path, uri


@pytest.fixture(scope="module")
def serving_pool(pools) -> tuple[str, str]:
    """The pool to serve on and the other one, which must stay empty of its pods."""
    names = sorted(set(pools.values()) - {""})
    return names[0], names[1]


@pytest.fixture(scope="module")
def compiled(e2e_namespace, squeezenet, serving_pool):
    apply(compilation_job("squeezenet", squeezenet[1], serving_pool[0], INPUT), e2e_namespace)
    job = wait_phase("squeezenet", e2e_namespace, {"Completed", "Failed"})
    assert job["status"]["phase"] == "Completed", job["status"].get("failureReason")
    return job


def _infer(url: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=url, network_timeout=60)
    tensor = triton.InferInput("data_0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("squeezenet", [tensor]).as_numpy("softmaxout_1")


def _endpoint(namespace: str, compiled_model: str) -> dict:
    return {
        "apiVersion": "kompile.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "squeezenet"},
        "spec": {
            "compiledModelName": compiled_model,
            "replicas": 2,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "credentialsSecretName": "kompile-s3",
        },
    }


def _ready(namespace: str):
    ie = get("inferenceendpoint", "squeezenet", namespace)
    ready = [c for c in ie.get("status", {}).get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"]
    return ie if ready and ie["status"].get("readyReplicas") == 2 else None


@pytest.fixture(scope="module")
def endpoint(e2e_namespace, compiled):
    apply(_endpoint(e2e_namespace, "squeezenet"), e2e_namespace)
    ie = eventually(lambda: _ready(e2e_namespace), timeout=300, interval=2, message="InferenceEndpoint Ready")
    ip = kubectl("-n", e2e_namespace, "get", "service", "squeezenet-predictor", "-o", "jsonpath={.spec.clusterIP}")
    return ie, f"{ip.stdout}:8080"


def test_compiled_in_a_pod_into_a_registered_model(e2e_namespace, compiled, store):
    model = get("compiledmodel", "squeezenet", e2e_namespace)
    artifact = model["spec"]["artifact"]
    assert artifact["sha256"] == compiled["status"]["artifact"]["sha256"]
    manifest = whole_manifest(store, artifact)
    assert manifest["parity"]["maxAbsError"] <= 1e-4
    # Untuned TVM is far slower than onnxruntime on this CPU: the job must say so, not hide it.
    written = manifest["latency"]
    verdict = next(c for c in compiled["status"]["conditions"] if c["type"] == "FasterThanReference")
    assert verdict["status"] == ("True" if written["speedupVsReference"] >= 1 else "False")
    assert verdict["message"].startswith(f"p50 {written['p50Ms']:.2f} ms")


def test_served_on_its_pool_and_answers_like_onnxruntime(e2e_namespace, endpoint, squeezenet, serving_pool, pools):
    ie, url = endpoint
    pods = json.loads(
        kubectl(
            "-n", e2e_namespace, "get", "pods", "-l", "kompile.dev/inference-endpoint=squeezenet", "-o", "json"
        ).stdout
    )["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert len(running) == 2
    # Every serving pod is on a node of the target's pool, none on the other pool.
    assert {pools[p["spec"]["nodeName"]] for p in running} == {serving_pool[0]}
    assert (
        ie["status"]["servedDigest"] == get("compiledmodel", "squeezenet", e2e_namespace)["spec"]["artifact"]["sha256"]
    )

    import onnxruntime

    x = np.random.default_rng(7).standard_normal((1, 3, 224, 224)).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(squeezenet[0])).run(None, {"data_0": x})[0]
    np.testing.assert_allclose(_infer(url, x), expected, atol=1e-4)


def test_prometheus_scrapes_the_serving_pods(endpoint, e2e_namespace):
    import os

    prometheus = os.environ.get("KOMPILE_PROMETHEUS_URL")
    if not prometheus:
        pytest.skip('no KOMPILE_PROMETHEUS_URL (eval "$(hack/cluster env)")')
    _, url = endpoint
    x = np.zeros((1, 3, 224, 224), np.float32)
    for _ in range(3):
        _infer(url, x)
    query = f'sum(kompile_requests_total{{namespace="{e2e_namespace}",endpoint="squeezenet",code="200"}})'

    def answered():
        with urllib.request.urlopen(f"{prometheus}/api/v1/query?query={urllib.parse.quote(query)}", timeout=10) as r:
            result = json.load(r)["data"]["result"]
        return result and float(result[0]["value"][1]) >= 3

    eventually(answered, timeout=60, interval=2, message=query)


def test_a_new_digest_rolls_out_without_a_failed_request(e2e_namespace, endpoint, squeezenet, serving_pool):
    """Recompile (FP16: another artifact, another digest), point the endpoint at it, and keep
    calling throughout the rollout: every request must succeed."""
    _, url = endpoint
    apply(compilation_job("squeezenet-fp16", squeezenet[1], serving_pool[0], INPUT, precision="FP16"), e2e_namespace)
    job = wait_phase("squeezenet-fp16", e2e_namespace, {"Completed", "Failed"})
    assert job["status"]["phase"] == "Completed", job["status"].get("failureReason")
    new_digest = job["status"]["artifact"]["sha256"]

    failures: list[str] = []
    calls = 0
    stop = threading.Event()
    x = np.zeros((1, 3, 224, 224), np.float32)

    def load():
        nonlocal calls
        while not stop.is_set():
            try:
                _infer(url, x)
            except Exception as err:  # noqa: BLE001 - every failure is the finding
                failures.append(repr(err))
            calls += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        apply(_endpoint(e2e_namespace, "squeezenet-fp16"), e2e_namespace)

        def rolled():
            ie = _ready(e2e_namespace)
            return ie if ie and ie["status"].get("servedDigest") == new_digest else None

        eventually(rolled, timeout=300, interval=2, message="rollout to the FP16 digest")
        time.sleep(3)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert calls > 10
    assert failures == [], f"{len(failures)} of {calls} requests failed during the rollout: {failures[:3]}"


def test_a_live_recommendation_sizes_the_endpoint_from_its_own_metrics(e2e_namespace, endpoint):
    """Opted in to continuous recommendations, the endpoint gets replicas for the peak of its
    recent traffic (the rollout test's calls) from Prometheus, in its status and its spec."""
    import math

    settings = {"intervalSeconds": 30, "windowSeconds": 600, "targetUtilizationPercentage": 60, "apply": True}
    patch = json.dumps({"spec": {"recommendation": settings}})
    kubectl("-n", e2e_namespace, "patch", "inferenceendpoint", "squeezenet", "--type", "merge", "-p", patch)

    def recommended():
        return get("inferenceendpoint", "squeezenet", e2e_namespace).get("status", {}).get("recommendation")

    found = eventually(recommended, timeout=120, interval=3, message="status.recommendation")
    assert found["currentReplicas"] == 2 and found["windowSeconds"] == 600
    assert found["peakInvocations"] > 0 and found["modelLatency"] > 0  # the earlier tests' calls, seen by Prometheus
    assert found["costPerHour"] == pytest.approx(2 * 0.154)  # x86-avx2's price in examples/hardwaretargets.yaml
    # 2 replicas of 1 CPU at peakCpuUtilization % is the peak's cores; the replicas run it at <= 60 %.
    peak_cores = found["peakCpuUtilization"] / 100 * 2
    # (peakCpuUtilization is rounded to 0.1 %: either side of a whole replica is accepted.)
    assert found["replicas"] in {max(1, math.ceil(peak_cores / 0.6 + d)) for d in (-0.01, 0.01)}, found
    assert found["applied"] == (found["replicas"] != 2)
    spec = get("inferenceendpoint", "squeezenet", e2e_namespace)["spec"]
    assert spec["replicas"] == found["replicas"]
