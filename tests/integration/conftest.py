"""Integration tests run against the real API server of hack/cluster.

No kubelet runs in this cluster yet, so where a test needs a compiler pod to run or
end, it writes the pod's status itself, as the kubelet would; everything else (the Job
controller counting pods, garbage collection, schema validation, RBAC) is the real
control plane.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from kompile.api import API_VERSION
from kompile.kube import Kube
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def eventually(check, timeout: float = 30, interval: float = 0.5, message: str = ""):
    """Poll `check` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s: {message} (last: {last!r})")


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.fixture(scope="session")
def cluster():
    """The API server, with the CRDs installed; skipped only when no cluster was asked for."""
    try:
        config.load_kube_config()
        client.VersionApi().get_code(_request_timeout=5)
    except Exception as err:  # noqa: BLE001 - any failure to reach the server means the same
        if os.environ.get("KOMPILE_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"the local cluster is not reachable: {err}")
        pytest.skip('no cluster: run `hack/cluster up` and `eval "$(hack/cluster env)"`, or use hack/test')
    kubectl("apply", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
    return Kube()


# A label no node carries, on a key of its own (PodNodeSelector refuses pods whose own
# nodeSelector sets the same key to another value, as a compiler pod on a pool would).
NO_NODE = "kompile.dev/integration-tests=schedule-nothing"


@pytest.fixture(scope="module")
def namespace(cluster):
    name = f"kt-{uuid.uuid4().hex[:8]}"
    # Integration tests play the kubelet (tests/integration/kubelet.py): their pods must never
    # reach the real nodes, so the namespace pins them to a pool no node is in (PodNodeSelector).
    client.CoreV1Api().create_namespace(
        {"metadata": {"name": name, "annotations": {"scheduler.alpha.kubernetes.io/node-selector": NO_NODE}}}
    )
    yield name
    client.CoreV1Api().delete_namespace(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Operator:
    """`kompile-operator` as a subprocess, with exactly the Helm chart's RBAC."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path):
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KOMPILE_WATCH_NAMESPACES": self.namespace,
            "KOMPILE_LIVENESS_PORT": str(self.port),
            "KOMPILE_LOG_FORMAT": "plain",
            "KOMPILE_COMPILER_IMAGE": "docker.io/local/kompile-compiler:test",
            "KOMPILE_S3_ENDPOINT": "http://10.96.0.50:8333",
        }
        out = self.log.open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "kompile.main"], env=env, stdout=out, stderr=out)
        eventually(self.healthy, timeout=60, message="operator liveness endpoint")

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            pytest.fail(f"the operator exited:\n{self.log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def errors(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "Traceback" in line or " ERROR " in line]


def chart_rbac(release: str, namespace: str) -> list[dict]:
    rendered = subprocess.run(
        [
            "helm",
            "template",
            release,
            str(ROOT / "charts/kompile"),
            "-n",
            namespace,
            "--set",
            f"watchNamespaces={{{namespace}}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    return [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in kinds]


def service_account_kubeconfig(namespace: str, account: str, path: Path) -> Path:
    core = client.CoreV1Api()
    # Kubernetes 1.20 mints a token Secret for every ServiceAccount.
    sa = eventually(
        lambda: core.read_namespaced_service_account(account, namespace).secrets or None,
        message="service account token",
    )
    secret = core.read_namespaced_secret(sa[0].name, namespace)
    token = base64.b64decode(secret.data["token"]).decode()
    admin = client.Configuration.get_default_copy()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [
                    {"name": "c", "cluster": {"server": admin.host, "certificate-authority": admin.ssl_ca_cert}}
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def operator(cluster, namespace, tmp_path_factory, request):
    """The operator watching this module's namespace, as the chart's ServiceAccount."""
    objects = chart_rbac(namespace, namespace)
    for obj in objects:
        cluster.apply(obj)
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    folder = tmp_path_factory.mktemp("operator")
    op = Operator(
        service_account_kubeconfig(namespace, account, folder / "kubeconfig"), namespace, folder / "operator.log"
    )
    op.start()
    yield op
    op.stop()
    for obj in objects:
        if obj["kind"] != "ServiceAccount":
            cluster.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
    sys.stderr.write(f"\n--- operator log ({op.log}) ---\n{op.log.read_text()[-3000:]}\n")


def kompile(kind: str, name: str, spec: dict, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def get(kube: Kube, kind: str, name: str, namespace: str | None = None) -> dict:
    api_version = (
        API_VERSION if kind in {"CompilationJob", "CompiledModel", "InferenceEndpoint", "HardwareTarget"} else None
    )
    assert api_version, kind
    return kube.get(api_version, kind, name, namespace) or {}


@pytest.fixture(scope="module")
def hardware_target(cluster, namespace):
    """A GPU-like target unique to this module (HardwareTargets are cluster-wide)."""
    name = f"{namespace}-gpu"
    cluster.apply(
        kompile(
            "HardwareTarget",
            name,
            {
                "platform": {"arch": "x86_64", "accelerator": "nvidia"},
                "tvm": {"kind": "cuda", "arch": "sm_80", "host": {"mtriple": "x86_64-linux-gnu"}},
                "nodeSelector": {"kompile.dev/hardware-target": name},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "resources": {"limits": {"nvidia.com/gpu": 1}},
                "compileNatively": True,
                "instanceType": "p4d.24xlarge",
                "costPerHour": 32.77,
            },
        )
    )
    yield name
    cluster.delete(API_VERSION, "HardwareTarget", name)
