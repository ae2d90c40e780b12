"""Playing the kubelet: write a pod's status as a kubelet would report it.

Integration tests pin their pods to a pool no node is in (their namespace's PodNodeSelector),
so the real kubelets leave them alone, and tests that need a compiler pod to start or end
write its status subresource. The e2e tests run pods on the real nodes.
The Job controller, which turns pod phases into Job conditions, is the real one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubernetes import client

from kompile.manifests import COMPILATION_JOB_LABEL
from tests.integration.conftest import eventually


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compiler_pod(namespace: str, job: str) -> dict:
    """The pod the Job controller made for this CompilationJob's compiler Job."""
    core = client.CoreV1Api()
    pods = eventually(
        lambda: core.list_namespaced_pod(namespace, label_selector=f"{COMPILATION_JOB_LABEL}={job}").items,
        message=f"compiler pod of {job}",
    )
    return pods[0]


def report(
    namespace: str, job: str, phase: str, *, exit_code: int | None = None, message: str = "", reason: str | None = None
) -> None:
    pod = compiler_pod(namespace, job)
    container = pod.spec.containers[0]
    if phase == "Running":
        state = {"running": {"startedAt": _now()}}
    else:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "message": message,
                "startedAt": _now(),
                "finishedAt": _now(),
            }
        }
    status = {
        "phase": phase,
        "containerStatuses": [
            {
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": phase == "Running",
                "restartCount": 0,
                "state": state,
            }
        ],
    }
    client.CoreV1Api().patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": status})
