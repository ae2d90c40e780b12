"""A recommendation on real nodes: SqueezeNet compiled and uncompiled on both pools, loaded by
locust in a Job, measured by the cluster's Prometheus, ranked, reported to S3, cleaned up."""

from __future__ import annotations

import json
import uuid

import pytest

from kompile.storage import S3Location
from tests.compiler.models import save, with_random_weights, zoo
from tests.e2e.conftest import apply, get
from tests.integration.conftest import eventually, kubectl

pytestmark = pytest.mark.e2e
LABEL = "kompile.dev/recommendation"


@pytest.fixture(scope="module")
def model_uri(store, tmp_path_factory):
    path = save(with_random_weights(zoo("squeezenet")), tmp_path_factory.mktemp("rec") / "squeezenet.onnx")
    uri = "s3://kompile-models/e2e/recommend/squeezenet.onnx"
    store.upload(path, S3Location.parse(uri))
    return uri


def recommendation(name: str, model_uri: str, targets: list[str], **changes) -> dict:
    spec = {
        "inputConfig": {"s3Uri": model_uri, "framework": "ONNX", "dataInputConfig": {"data_0": [1, 3, 224, 224]}},
        "outputConfig": {"s3OutputLocation": f"s3://kompile-artifacts/e2e/{uuid.uuid4().hex[:8]}/"},
        "endpointConfigurations": [
            {
                "hardwareTarget": t,
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            }
            for t in targets
        ],
        "trafficPattern": {"phases": [{"initialNumberOfUsers": 2, "durationInSeconds": 30}]},
        "stoppingConditions": {"modelLatencyThresholds": [{"percentile": "P95", "valueInMilliseconds": 10000}]},
        "credentialsSecretName": "kompile-s3",
        **changes,
    }
    return {
        "apiVersion": "kompile.dev/v1alpha1",
        "kind": "InferenceRecommendation",
        "metadata": {"name": name},
        "spec": spec,
    }


def wait_finished(name: str, namespace: str, timeout: float) -> dict:
    def finished():
        rec = get("inferencerecommendation", name, namespace)
        return rec if rec.get("status", {}).get("phase") in ("Completed", "Failed", "Stopped") else None

    return eventually(finished, timeout=timeout, interval=3, message=f"InferenceRecommendation {name} to finish")


def owned(kind: str, namespace: str, name: str) -> list[str]:
    out = kubectl("-n", namespace, "get", kind, "-l", f"{LABEL}={name}", "-o", "json", check=False).stdout
    return [i["metadata"]["name"] for i in json.loads(out or '{"items": []}')["items"]]


@pytest.fixture(scope="module")
def finished(e2e_namespace, model_uri, pools):
    targets = sorted(set(pools.values()) - {""})[:2]
    apply(recommendation("squeezenet", model_uri, targets), e2e_namespace)
    return wait_finished("squeezenet", e2e_namespace, timeout=1500), targets


def test_four_measured_rows_ranked_by_cost_per_inference(finished, e2e_namespace):
    rec, targets = finished
    status = rec["status"]
    assert status["phase"] == "Completed", (status.get("failureReason"), status.get("tests"))
    rows = status["recommendations"]
    assert len(rows) == 4
    assert {(r["hardwareTarget"], r.get("inferenceSpecificationName") is None) for r in rows} == {
        (t, uncompiled) for t in targets for uncompiled in (True, False)
    }
    costs = [r["costPerInference"] for r in rows]
    assert costs == sorted(costs)
    for row in rows:
        # Every figure is a measurement: load was served, and Prometheus saw it.
        assert row["maxInvocations"] > 0 and row["modelLatency"] > 0, row
        assert row["costPerInference"] == pytest.approx(row["costPerHour"] / (row["maxInvocations"] * 60), rel=1e-2)
        assert row["modelSetupTime"] > 0 and row["cpuUtilization"] > 0 and row["memoryUtilization"] > 0
    assert any(r["paretoOptimal"] for r in rows)
    assert all(t["state"] == "Completed" and t["stopReason"] == "TrafficEnded" for t in status["tests"])


def test_the_report_is_in_object_storage(finished, store):
    rec, _ = finished
    uri = rec["status"]["reportUri"]
    page = store.read(S3Location.parse(uri)).decode()
    assert "<svg" in page and page.count("<circle") == 4
    for row in rec["status"]["recommendations"]:
        assert f"<td>{row['endpointName']}</td>" in page


def test_no_temporary_endpoint_or_load_job_is_left(finished, e2e_namespace):
    rec, _ = finished
    assert owned("inferenceendpoints", e2e_namespace, "squeezenet") == []
    assert owned("jobs", e2e_namespace, "squeezenet") == ["squeezenet-report"]
    endpoints = {t["endpointName"] for t in rec["status"]["tests"]}

    def serving_gone():
        out = kubectl("-n", e2e_namespace, "get", "deployments,pods", "-o", "json").stdout
        labels = [i["metadata"].get("labels", {}) for i in json.loads(out)["items"]]
        return not [x for x in labels if x.get("kompile.dev/inference-endpoint") in endpoints]

    eventually(serving_gone, timeout=120, interval=2, message="the temporary endpoints' Deployments and pods gone")


def test_an_existing_compiled_model_is_tested_as_it_is(finished, e2e_namespace, model_uri):
    """A CompiledModel the first recommendation made, named in a second one with no model to compile."""
    _, targets = finished
    model = f"squeezenet-compile-{targets[0]}"
    doc = recommendation("registered", model_uri, targets, compiledModels=[model])
    del doc["spec"]["inputConfig"]
    doc["spec"]["trafficPattern"] = {"phases": [{"initialNumberOfUsers": 1, "durationInSeconds": 20}]}
    apply(doc, e2e_namespace)
    rec = wait_finished("registered", e2e_namespace, timeout=600)
    assert rec["status"]["phase"] == "Completed", rec["status"].get("failureReason")
    [row] = rec["status"]["recommendations"]
    assert (row["hardwareTarget"], row["inferenceSpecificationName"]) == (targets[0], model)
    assert row["maxInvocations"] > 0
    assert owned("compilationjobs", e2e_namespace, "registered") == []  # nothing was compiled


def test_deleting_the_recommendation_deletes_what_it_made(finished, e2e_namespace):
    assert len(owned("compilationjobs", e2e_namespace, "squeezenet")) == 3
    assert len(owned("compiledmodels", e2e_namespace, "squeezenet")) == 3
    kubectl("-n", e2e_namespace, "delete", "inferencerecommendation", "squeezenet")

    def gone():
        left = [k for k in ("compilationjobs", "compiledmodels") if owned(k, e2e_namespace, "squeezenet")]
        return not left

    eventually(gone, timeout=120, interval=2, message="the recommendation's CompilationJobs and CompiledModels gone")


def test_an_unknown_target_fails_at_once_with_its_name(e2e_namespace, model_uri, pools):
    apply(recommendation("unknown-target", model_uri, ["x86-no-such-pool"]), e2e_namespace)
    rec = wait_finished("unknown-target", e2e_namespace, timeout=60)
    assert rec["status"]["phase"] == "Failed"
    assert rec["status"]["failureReason"] == (
        "HardwareTargetNotFound: endpointConfigurations names HardwareTarget 'x86-no-such-pool', which does not exist"
    )
    assert owned("compilationjobs", e2e_namespace, "unknown-target") == []


def test_an_impossible_threshold_is_refused_by_the_api_server(e2e_namespace, model_uri, pools):
    doc = recommendation(
        "zero-latency",
        model_uri,
        ["x86-avx2"],
        stoppingConditions={"modelLatencyThresholds": [{"percentile": "P95", "valueInMilliseconds": 0}]},
    )
    result = kubectl("-n", e2e_namespace, "apply", "-f", "-", stdin=json.dumps(doc), check=False)
    assert result.returncode != 0
    assert "valueInMilliseconds" in result.stderr and "should be greater than or equal to 1" in result.stderr
