"""A restarted operator picks up where it was and creates nothing twice."""

import pytest

from kompile.manifests import COMPILATION_JOB_LABEL, INFERENCE_ENDPOINT_LABEL
from tests.integration.conftest import eventually, get, kompile
from tests.integration.kubelet import report
from tests.integration.test_compilationjob import job_spec, wait_phase
from tests.integration.test_inferenceendpoint import model_spec

pytestmark = pytest.mark.integration


def count(cluster, api_version, kind, namespace, label, value):
    return len(cluster.list(api_version, kind, namespace, {label: value}))


def test_restart_mid_flight_creates_no_duplicates(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompilationJob", "restart", job_spec(hardware_target), namespace))
    cluster.apply(kompile("CompiledModel", "restart", model_spec(hardware_target, "4" * 64), namespace))
    cluster.apply(kompile("InferenceEndpoint", "restart", {"compiledModelName": "restart", "replicas": 1}, namespace))
    wait_phase(cluster, "restart", namespace, "Starting")
    eventually(
        lambda: count(cluster, "apps/v1", "Deployment", namespace, INFERENCE_ENDPOINT_LABEL, "restart"),
        message="Deployment",
    )

    operator.stop()
    # While it is down, the compile starts running: the operator must notice on its return.
    report(namespace, "restart", "Running")
    operator.start()
    wait_phase(cluster, "restart", namespace, "InProgress")
    operator.stop()
    operator.start()  # and once more, with nothing changed at all

    # Give the resumed handlers time to run before counting.
    eventually(
        lambda: get(cluster, "InferenceEndpoint", "restart", namespace).get("status", {}).get("url"),
        message="endpoint status",
    )
    assert count(cluster, "batch/v1", "Job", namespace, COMPILATION_JOB_LABEL, "restart") == 1
    assert count(cluster, "v1", "Pod", namespace, COMPILATION_JOB_LABEL, "restart") == 1
    assert count(cluster, "apps/v1", "Deployment", namespace, INFERENCE_ENDPOINT_LABEL, "restart") == 1
    assert count(cluster, "v1", "Service", namespace, INFERENCE_ENDPOINT_LABEL, "restart") == 1
    assert operator.errors() == []
