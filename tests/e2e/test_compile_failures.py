"""Compiles that go wrong on real nodes end in a clear `Failed`, never a Completed without an artifact."""

from __future__ import annotations

import json
import time

import pytest

from kompile.storage import S3Location
from tests.compiler.models import save, with_random_weights, zoo
from tests.e2e.conftest import apply, compilation_job, get, wait_phase, whole_manifest
from tests.integration.conftest import eventually, kubectl

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def model_uri(store, tmp_path_factory):
    path = save(with_random_weights(zoo("squeezenet"), seed=3), tmp_path_factory.mktemp("e2e") / "sq.onnx")
    uri = "s3://kompile-models/e2e/failures/squeezenet.onnx"
    store.upload(path, S3Location.parse(uri))
    return uri


def test_a_wrong_input_name_fails_with_the_compilers_reason(e2e_namespace, model_uri, pools):
    target = sorted(set(pools.values()) - {""})[0]
    # Valid by the schema and by seed 003's rules; only the model knows its input is `data_0`.
    apply(compilation_job("wrong-input", model_uri, target, {"data": [1, 3, 224, 224]}), e2e_namespace)
    job = wait_phase("wrong-input", e2e_namespace, {"Completed", "Failed"})
    assert job["status"]["phase"] == "Failed"
    assert job["status"]["failureReason"].startswith("UnknownInput: ")
    assert "data_0" in job["status"]["failureReason"]
    # And `kubectl get` shows it.
    table = kubectl("-n", e2e_namespace, "get", "compilationjob", "wrong-input").stdout
    assert "Failed" in table and "UnknownInput" in table
    assert not get("compiledmodel", "wrong-input", e2e_namespace)


def test_a_killed_compiler_pod_never_completes_without_an_artifact(e2e_namespace, model_uri, pools, store):
    target = sorted(set(pools.values()) - {""})[0]
    apply(compilation_job("killed", model_uri, target, {"data_0": [1, 3, 224, 224]}), e2e_namespace)

    def running_pod():
        pods = json.loads(
            kubectl("-n", e2e_namespace, "get", "pods", "-l", "kompile.dev/compilation-job=killed", "-o", "json").stdout
        )["items"]
        return [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]

    first = eventually(running_pod, timeout=180, interval=0.5, message="the compiler pod to run")[0]
    time.sleep(3)  # mid-compile: fetching, importing or building
    kubectl("-n", e2e_namespace, "delete", "pod", first, "--grace-period=0", "--force", "--wait=false")
    job = wait_phase("killed", e2e_namespace, {"Completed", "Failed"})
    if job["status"]["phase"] == "Completed":
        # Retried to the end: the artifact it names must be whole.
        whole_manifest(store, job["status"]["artifact"])
    else:
        assert job["status"]["failureReason"], "a Failed job must say why"
