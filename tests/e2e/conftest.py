"""End-to-end: real nodes, real pods from our images, the operator in-cluster from the Helm
chart, the cluster's S3 and Prometheus. Needs `hack/cluster up` and `hack/images` (hack/test
does both); skipped without them, except under hack/test, where their absence fails."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration import conftest as integration
from tests.integration.conftest import eventually, kubectl

cluster = integration.cluster  # the API server fixture, shared with the integration tests

ROOT = Path(__file__).resolve().parents[2]
NODE_LABEL = "kompile.dev/hardware-target"
TUNING_CACHE = "s3://kompile-artifacts/tuning/"
RELEASE, RELEASE_NAMESPACE = "kompile-e2e", "kompile-e2e"


def _need(what: str):
    if os.environ.get("KOMPILE_REQUIRE_E2E") == "1":
        pytest.fail(f"e2e tests need {what} (hack/test provides it)")
    pytest.skip(f"no {what}: run `hack/cluster up && hack/images`, or use hack/test")


@pytest.fixture(scope="session")
def pools(cluster) -> dict[str, str]:
    """node name -> hardware pool, for the Ready nodes."""
    nodes = json.loads(kubectl("get", "nodes", "-o", "json", check=False).stdout or '{"items": []}')["items"]
    ready = {
        n["metadata"]["name"]: n["metadata"]["labels"].get(NODE_LABEL, "")
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }
    if len(set(ready.values()) - {""}) < 2:
        _need("two Ready node pools")
    return ready


@pytest.fixture(scope="session")
def s3_env() -> dict[str, str]:
    env = {k: os.environ.get(k, "") for k in ("KOMPILE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    if not all(env.values()):
        _need('cluster S3 settings (eval "$(hack/cluster env)")')
    return {**env, "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def store(s3_env):
    from kompile.storage import ObjectStore, client_from_env

    return ObjectStore(client_from_env(s3_env))


IMAGE_PARTS = ("operator", "compiler", "runtime")


@pytest.fixture(scope="session")
def e2e_namespace(cluster, pools, s3_env):
    """A namespace with S3 credentials, and the operator from the Helm chart watching it."""
    if not all(os.environ.get(f"KOMPILE_{part.upper()}_IMAGE") for part in IMAGE_PARTS):
        _need("the images' names (hack/images writes them to ~/.cache/kompile/images/images.env)")
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl(
        "-n",
        name,
        "create",
        "secret",
        "generic",
        "kompile-s3",
        f"--from-literal=AWS_ACCESS_KEY_ID={s3_env['AWS_ACCESS_KEY_ID']}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={s3_env['AWS_SECRET_ACCESS_KEY']}",
    )
    kubectl("apply", "-f", str(ROOT / "examples/hardwaretargets.yaml"))
    helm = os.environ.get("HELM", "helm")
    result = subprocess.run(
        [
            helm,
            "upgrade",
            "--install",
            RELEASE,
            str(ROOT / "charts/kompile"),
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--set",
            f"s3.endpoint={s3_env['KOMPILE_S3_ENDPOINT']}",
            "--set",
            f"tuning.cache={TUNING_CACHE}",
            "--set",
            f"prometheus.url={os.environ.get('KOMPILE_PROMETHEUS_URL', '')}",
            "--set",
            "images.pullPolicy=Never",
            *[f"--set=images.{part}={os.environ[f'KOMPILE_{part.upper()}_IMAGE']}" for part in IMAGE_PARTS],
            "--set",
            f"watchNamespaces={{{name}}}",
            "--wait",
            "--timeout",
            "3m",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        logs = kubectl("-n", RELEASE_NAMESPACE, "logs", "-l", "app.kubernetes.io/component=operator", check=False)
        pytest.fail(f"helm install failed: {result.stderr}\n{logs.stdout[-2000:]}")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
    subprocess.run([helm, "uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE], capture_output=True)


def whole_manifest(store, artifact: dict) -> dict:
    """The manifest an artifact status names, once its bytes have the digest the status gives."""
    import hashlib

    from kompile.storage import S3Location

    raw = store.read(S3Location.parse(artifact["uri"]).child("manifest.json"))
    assert raw is not None, f"no manifest.json under {artifact['uri']}"
    assert hashlib.sha256(raw).hexdigest() == artifact["sha256"]
    return json.loads(raw)


def get(kind: str, name: str, namespace: str) -> dict:
    result = kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def wait_phase(name: str, namespace: str, phases: set[str], timeout: float = 600) -> dict:
    def done():
        job = get("compilationjob", name, namespace)
        return job if job.get("status", {}).get("phase") in phases else None

    return eventually(done, timeout=timeout, interval=2, message=f"CompilationJob {name} to reach {phases}")


def apply(doc: dict, namespace: str) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(doc))


def compilation_job(name: str, model_uri: str, target: str, config: dict, **output) -> dict:
    return {
        "apiVersion": "kompile.dev/v1alpha1",
        "kind": "CompilationJob",
        "metadata": {"name": name},
        "spec": {
            "inputConfig": {"s3Uri": model_uri, "framework": "ONNX", "dataInputConfig": config},
            "outputConfig": {
                "s3OutputLocation": f"s3://kompile-artifacts/e2e/{uuid.uuid4().hex[:8]}/{name}/",
                "targetDevice": target,
                "compiledModelName": name,
                **output,
            },
            "stoppingCondition": {"maxRuntimeInSeconds": 900},
            "credentialsSecretName": "kompile-s3",
        },
    }
