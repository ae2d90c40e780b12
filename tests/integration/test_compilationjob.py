"""CompilationJob through the operator: Job, phases, result, failure, stop, late targets."""

import json
import time
from collections import Counter

import pytest

from kompile.api import API_VERSION
from kompile.kube import dig
from tests.conftest import ROOT
from tests.integration.conftest import eventually, get, kompile, kubectl
from tests.integration.kubelet import report

pytestmark = pytest.mark.integration

DIGEST = "3f" * 32


def job_spec(target: str, **extra) -> dict:
    return {
        "inputConfig": {
            "s3Uri": "s3://models/squeezenet/model.onnx",
            "framework": "ONNX",
            "dataInputConfig": {"data_0": [1, 3, 224, 224]},
        },
        "outputConfig": {"s3OutputLocation": "s3://artifacts/squeezenet/", "targetDevice": target},
        "stoppingCondition": {"maxRuntimeInSeconds": 600},
        "credentialsSecretName": "s3-creds",
        **extra,
    }


def phase_of(cluster, name, namespace):
    return lambda: (get(cluster, "CompilationJob", name, namespace).get("status") or {}).get("phase")


def wait_phase(cluster, name, namespace, phase, timeout=30):
    eventually(
        lambda: phase_of(cluster, name, namespace)() == phase,
        timeout=timeout,
        message=f"{name} to reach {phase}, is {phase_of(cluster, name, namespace)()}",
    )
    return get(cluster, "CompilationJob", name, namespace)


def event_reasons(namespace, name) -> dict:
    listing = kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json")
    items = json.loads(listing.stdout)["items"]
    return dict(Counter(e["reason"] for e in items if e["involvedObject"]["kind"] == "CompilationJob"))


def compiler_job(cluster, name, namespace):
    return cluster.get("batch/v1", "Job", f"{name}-compile", namespace)


def test_job_runs_the_compiler_on_the_target_pool(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompilationJob", "native", job_spec(hardware_target), namespace))
    job = eventually(lambda: compiler_job(cluster, "native", namespace), message="compiler Job")
    cj = get(cluster, "CompilationJob", "native", namespace)
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CompilationJob", "native", cj["metadata"]["uid"])
    assert job["spec"]["activeDeadlineSeconds"] == 600
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kompile.dev/hardware-target": hardware_target}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    container = pod["containers"][0]
    assert container["image"] == "docker.io/local/kompile-compiler:test"
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}},
    }
    assert json.loads(env["KOMPILE_JOB"]["value"])["target"]["name"] == hardware_target
    cj = wait_phase(cluster, "native", namespace, "Starting")
    assert cj["status"]["compilerJobName"] == "native-compile"
    assert cj["status"]["compilationStartTime"]


def test_success_creates_the_compiled_model(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompilationJob", "ok", job_spec(hardware_target), namespace))
    wait_phase(cluster, "ok", namespace, "Starting")
    report(namespace, "ok", "Running")
    wait_phase(cluster, "ok", namespace, "InProgress")
    result = {
        "artifact": {"uri": "s3://artifacts/squeezenet/", "sha256": DIGEST, "sizeBytes": 5_000_000},
        "inputs": [{"name": "data_0", "shape": [1, 3, 224, 224], "datatype": "FP32"}],
        "outputs": [{"name": "softmaxout_1", "shape": [1, 1000, 1, 1], "datatype": "FP32"}],
        "latency": {"p50Ms": 2.5, "p90Ms": 2.9, "referenceP50Ms": 3.2},
    }
    report(namespace, "ok", "Succeeded", exit_code=0, message=json.dumps(result))
    cj = wait_phase(cluster, "ok", namespace, "Completed")
    assert cj["status"]["artifact"] == {"uri": "s3://artifacts/squeezenet/", "sha256": DIGEST, "sizeBytes": 5_000_000}
    assert cj["status"]["compilationEndTime"]
    succeeded = next(c for c in cj["status"]["conditions"] if c["type"] == "Succeeded")
    assert succeeded["status"] == "True" and succeeded["observedGeneration"] == 1
    faster = next(c for c in cj["status"]["conditions"] if c["type"] == "FasterThanReference")
    assert (faster["status"], faster["reason"]) == ("True", "FasterThanReference")
    assert faster["message"] == "p50 2.50 ms, 1.28x the speed of the reference (3.20 ms)"
    model = get(cluster, "CompiledModel", "ok", namespace)
    assert model["spec"]["artifact"]["sha256"] == DIGEST
    assert model["spec"]["target"] == hardware_target
    assert model["spec"]["inputs"][0]["shape"] == [1, 3, 224, 224]
    assert model["spec"]["latency"]["p50Ms"] == 2.5
    assert model["spec"]["sourceJob"] == "ok"
    assert "ownerReferences" not in model["metadata"]  # the registry entry outlives the job
    eventually(
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (get(cluster, "CompiledModel", "ok", namespace).get("status") or {}).get("conditions", [])
        ),
        message="CompiledModel Ready",
    )
    # Job, pod and change handlers race on every step; each transition is still told once.
    reasons = eventually(
        lambda: event_reasons(namespace, "ok").get("CompiledModelReady") and event_reasons(namespace, "ok"),
        message="events",
    )
    for reason in ("CompilerJobCreated", "Starting", "InProgress", "Completed", "CompiledModelReady"):
        assert reasons.get(reason) == 1, reasons


def hold(namespace: str, job: str, on: bool) -> None:
    """A finalizer that keeps a deleted Job in its deleting state until released."""
    patch = '{"metadata": {"finalizers": ["kompile.dev/test-hold"]}}' if on else '{"metadata": {"finalizers": null}}'
    kubectl("-n", namespace, "patch", "job", job, "--type=merge", "-p", patch)


def test_a_job_applied_again_never_takes_its_predecessors_outcome(cluster, namespace, operator, hardware_target):
    """Delete a finished CompilationJob and apply it again at once: its old compiler Job is
    still being garbage-collected (held here by a finalizer) and must not count as the new
    one's success; the new job waits, then runs its own compiler Job."""
    cluster.apply(kompile("CompilationJob", "again", job_spec(hardware_target), namespace))
    wait_phase(cluster, "again", namespace, "Starting")
    old = compiler_job(cluster, "again", namespace)
    hold(namespace, "again-compile", True)
    report(namespace, "again", "Succeeded", exit_code=0, message="{}")
    eventually(
        lambda: (compiler_job(cluster, "again", namespace).get("status") or {}).get("succeeded"), message="old Job done"
    )
    kubectl("-n", namespace, "delete", "compilationjob", "again", "--wait=true")
    eventually(
        lambda: dig(compiler_job(cluster, "again", namespace), "metadata", "deletionTimestamp"),
        message="the old Job being deleted",
    )
    cluster.apply(kompile("CompilationJob", "again", job_spec(hardware_target), namespace))
    wait_phase(cluster, "again", namespace, "Starting")
    time.sleep(3)
    assert phase_of(cluster, "again", namespace)() == "Starting"
    hold(namespace, "again-compile", False)
    new = eventually(
        lambda: (
            (job := compiler_job(cluster, "again", namespace))
            and job["metadata"]["uid"] != old["metadata"]["uid"]
            and job
        ),
        timeout=60,
        message="a compiler Job of the new CompilationJob",
    )
    cj = get(cluster, "CompilationJob", "again", namespace)
    assert new["metadata"]["ownerReferences"][0]["uid"] == cj["metadata"]["uid"]
    assert cj["status"]["phase"] in ("Starting", "InProgress")


def test_compiler_error_becomes_the_failure_reason(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompilationJob", "bad-shape", job_spec(hardware_target), namespace))
    wait_phase(cluster, "bad-shape", namespace, "Starting")
    reason = "InputShapeMismatch: input 'data_0' is [1,3,224,224] in the model, dataInputConfig gives [1,3,256,256]"
    report(namespace, "bad-shape", "Failed", exit_code=2, message=reason + "\n")
    cj = wait_phase(cluster, "bad-shape", namespace, "Failed")
    assert cj["status"]["failureReason"] == reason
    assert "artifact" not in cj["status"]
    assert get(cluster, "CompiledModel", "bad-shape", namespace) == {}
    row = kubectl("get", "compilationjob", "bad-shape", "-n", namespace).stdout
    assert "Failed" in row and "InputShapeMismatch" in row


def test_a_crash_without_message_still_says_why(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompilationJob", "oom", job_spec(hardware_target), namespace))
    wait_phase(cluster, "oom", namespace, "Starting")
    report(namespace, "oom", "Failed", exit_code=137, reason="OOMKilled")
    cj = wait_phase(cluster, "oom", namespace, "Failed")
    assert (
        cj["status"]["failureReason"]
        == "CompilerPodFailed: the compiler container ended with OOMKilled (exit code 137)"
    )


def test_success_without_a_result_is_never_completed(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompilationJob", "silent", job_spec(hardware_target), namespace))
    wait_phase(cluster, "silent", namespace, "Starting")
    report(namespace, "silent", "Succeeded", exit_code=0)
    cj = wait_phase(cluster, "silent", namespace, "Failed")
    assert cj["status"]["failureReason"].startswith("ResultMissing:")


def test_invalid_data_input_config_fails_before_any_pod(cluster, namespace, operator, hardware_target):
    spec = job_spec(hardware_target)
    spec["inputConfig"]["dataInputConfig"] = {"data_0": [1, 3, -1, 224]}
    cluster.apply(kompile("CompilationJob", "dynamic", spec, namespace))
    cj = wait_phase(cluster, "dynamic", namespace, "Failed")
    assert cj["status"]["failureReason"] == (
        "InvalidDataInputConfig: input 'data_0': dimension 2 is -1; dynamic or empty dimensions cannot be "
        "compiled ahead of time, give the size the model will be served with"
    )
    assert compiler_job(cluster, "dynamic", namespace) is None


def test_stop_flag_stops_the_compile(cluster, namespace, operator, hardware_target):
    cluster.apply(kompile("CompilationJob", "stopme", job_spec(hardware_target), namespace))
    eventually(lambda: compiler_job(cluster, "stopme", namespace), message="compiler Job")
    report(namespace, "stopme", "Running")
    wait_phase(cluster, "stopme", namespace, "InProgress")
    cluster.apply(kompile("CompilationJob", "stopme", {**job_spec(hardware_target), "stop": True}, namespace))
    seen = set()
    eventually(
        lambda: seen.add(phase_of(cluster, "stopme", namespace)()) or "Stopped" in seen,
        timeout=60,
        interval=0.1,
        message="Stopped",
    )
    assert "Stopping" in seen or compiler_job(cluster, "stopme", namespace) is None
    assert compiler_job(cluster, "stopme", namespace) is None


def test_waits_for_a_target_applied_later(cluster, namespace, operator):
    late = f"{namespace}-late"
    cluster.apply(kompile("CompilationJob", "early", job_spec(late), namespace))
    eventually(
        lambda: any(
            c["reason"] == "HardwareTargetNotFound"
            for c in (get(cluster, "CompilationJob", "early", namespace).get("status") or {}).get("conditions", [])
        ),
        message="HardwareTargetNotFound condition",
    )
    assert phase_of(cluster, "early", namespace)() == "Starting"
    cluster.apply(kompile("HardwareTarget", late, {"platform": {"arch": "x86_64"}, "tvm": {"kind": "llvm"}}))
    try:
        eventually(lambda: compiler_job(cluster, "early", namespace), timeout=45, message="Job after target")
        pod = compiler_job(cluster, "early", namespace)["spec"]["template"]["spec"]
        assert "nodeSelector" not in pod  # a cross-compile: any node will do
    finally:
        cluster.delete(API_VERSION, "HardwareTarget", late)


def test_inline_platform_needs_no_target(cluster, namespace, operator):
    spec = job_spec("unused")
    spec["outputConfig"] = {"s3OutputLocation": "s3://artifacts/arm/", "targetPlatform": {"arch": "arm64"}}
    cluster.apply(kompile("CompilationJob", "inline", spec, namespace))
    wait_phase(cluster, "inline", namespace, "Starting")
    report(
        namespace,
        "inline",
        "Succeeded",
        exit_code=0,
        message=json.dumps({"artifact": {"uri": "s3://artifacts/arm/", "sha256": DIGEST, "sizeBytes": 1}}),
    )
    wait_phase(cluster, "inline", namespace, "Completed")
    assert get(cluster, "CompiledModel", "inline", namespace)["spec"]["target"] == "linux-arm64"


def test_examples_show_phases_in_kubectl_get(cluster, namespace, operator):
    # The namespace goes at the module's end; the catalog (cluster-wide) stays, as a user's would.
    kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples"))
    names = ["squeezenet-avx2", "resnet18-arm64", "resnet50-fp16"]
    for name in names:
        wait_phase(cluster, name, namespace, "Starting")
    out = kubectl("get", "compilationjobs", "-n", namespace).stdout
    for name in names:
        assert any(line.split()[:2] == [name, "Starting"] for line in out.splitlines()), out


def test_operator_logged_no_errors(operator):
    assert operator.errors() == []
