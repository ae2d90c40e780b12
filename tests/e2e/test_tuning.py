"""A tuning compile on a real node: it runs on the target's pool, its progress shows in the
status while it runs, and its records land in the cluster's shared tuning cache."""

from __future__ import annotations

import pytest

from kompile.storage import S3Location
from tests.compiler.models import dense
from tests.e2e.conftest import TUNING_CACHE, apply, compilation_job, get, whole_manifest
from tests.integration.conftest import eventually, kubectl

pytestmark = pytest.mark.e2e


def test_a_tuning_compile_reports_progress_and_shares_its_records(e2e_namespace, pools, store, tmp_path):
    # Tuning measures on the target's CPU, so the job must name a pool whose code runs here.
    target = "x86-avx2" if "x86-avx2" in pools.values() else "x86-generic"
    uri = "s3://kompile-models/e2e/tuning/dense.onnx"
    store.upload(dense(tmp_path / "dense.onnx"), S3Location.parse(uri))
    job = compilation_job("tuned-dense", uri, target, {"x": [4, 64]})
    job["spec"]["tuning"] = {"trials": 16, "maxTrialsPerTask": 16}
    apply(job, e2e_namespace)

    seen: list[str] = []

    def finished():
        status = get("compilationjob", "tuned-dense", e2e_namespace).get("status") or {}
        if status.get("progress") and status["progress"] not in seen:
            seen.append(status["progress"])
        return status if status.get("phase") in ("Completed", "Failed") else None

    status = eventually(finished, timeout=600, interval=1, message="the tuning compile to end")
    assert status["phase"] == "Completed", status.get("failureReason")
    assert seen, "no progress line reached the status while the compiler ran"
    assert "progress" not in status  # a finished job shows no step as if it still ran
    manifest = whole_manifest(store, status["artifact"])
    assert manifest["tuning"]["trials"] == 16 and manifest["tuning"]["kernelsFromRecords"] >= 1
    assert manifest["tuning"]["published"].startswith(TUNING_CACHE)
    assert store.read(S3Location.parse(manifest["tuning"]["published"])) is not None
    node = kubectl(
        "-n",
        e2e_namespace,
        "get",
        "pods",
        "-l",
        "kompile.dev/compilation-job=tuned-dense",
        "-o",
        "jsonpath={.items[0].spec.nodeName}",
    ).stdout
    assert pools[node] == target, f"the tuning pod ran on {node} ({pools[node]}), not in the {target} pool"
