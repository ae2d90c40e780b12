"""The recommender's two serving pieces on real parts: SqueezeNet packaged uncompiled and
served by onnxruntime in our server, and the locust load generator driving it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from tests.compiler.deps import need_installed
from tests.runtime.conftest import Server, reference, serve_squeezenet

need_installed("locust")


@pytest.fixture(scope="module")
def served_uncompiled(s3, tmp_path_factory):
    work = tmp_path_factory.mktemp("uncompiled")
    server, source, _ = serve_squeezenet(s3, work, "squeezenet-uncompiled", uncompiled=True)
    yield server, source, json.loads((work / "compile" / "artifact" / "manifest.json").read_text())
    server.stop()


def test_the_uncompiled_model_is_served_by_onnxruntime(served_uncompiled):
    import tritonclient.http as triton

    server, source, manifest = served_uncompiled
    assert manifest["runtime"] == "onnxruntime"
    assert set(manifest["files"]) == {"model.onnx"}
    assert manifest["parity"]["maxAbsError"] == 0.0  # the same runtime on both sides
    x = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)
    tensor = triton.InferInput("data_0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    got = client.infer("squeezenet", [tensor]).as_numpy("softmaxout_1")
    np.testing.assert_allclose(got, reference(source, x), rtol=1e-5, atol=1e-6)


def test_only_onnx_models_are_packaged_uncompiled(tmp_path):
    from kompile.api import Framework
    from kompile_compiler.report import CompileError
    from tests.compiler.models import compile_onnx, dense

    with pytest.raises(CompileError, match="UnsupportedFramework.*onnxruntime serves ONNX models, not PYTORCH"):
        compile_onnx(dense(tmp_path / "m.onnx"), {"x": [4, 64]}, tmp_path, uncompiled=True, framework=Framework.PYTORCH)
    with pytest.raises(CompileError, match="UnsupportedTuning"):
        compile_onnx(dense(tmp_path / "m.onnx"), {"x": [4, 64]}, tmp_path, uncompiled=True, trials=8)


def _served(server: Server) -> int:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(r'^kompile_requests_total\{code="200",model="squeezenet"\} ([0-9.e+]+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def load(server: Server, tmp_path, phases: list[dict], stopping: dict | None = None) -> tuple[int, dict]:
    config = {
        "url": server.url,
        "modelName": "squeezenet",
        "inputs": [{"name": "data_0", "shape": [1, 3, 224, 224], "datatype": "FP32"}],
        "phases": phases,
        "stoppingConditions": stopping or {},
    }
    log = tmp_path / "termination-log"
    env = {**os.environ, "KOMPILE_LOADTEST": json.dumps(config), "KOMPILE_TERMINATION_LOG": str(log)}
    done = subprocess.run([sys.executable, "-m", "kompile.loadgen"], env=env, capture_output=True, text=True)
    message = log.read_text() if log.exists() else ""
    return done.returncode, (json.loads(message) if message.startswith("{") else {"failure": message + done.stderr})


def test_users_follow_the_phases_and_every_request_reaches_the_server(served_uncompiled, tmp_path):
    server = served_uncompiled[0]
    before = _served(server)
    rc, summary = load(
        server,
        tmp_path,
        [
            {"initialNumberOfUsers": 1, "durationInSeconds": 5},
            {"initialNumberOfUsers": 2, "spawnRate": 60, "durationInSeconds": 5},
        ],
    )
    assert rc == 0, summary
    assert summary["stopReason"] == "TrafficEnded"
    # The second phase starts at 2 users and adds one a second: 6 at most by its end.
    assert 5 <= summary["maxUsers"] <= 7
    assert 9 <= summary["end"] - summary["start"] <= 20
    assert summary["failures"] == 0
    assert summary["requests"] > 10
    # The server answered every request locust counted, and at most the ones its users still
    # had in flight when the load stopped.
    assert 0 <= _served(server) - before - summary["requests"] <= summary["maxUsers"]


def test_a_latency_threshold_stops_the_load_early(served_uncompiled, tmp_path):
    started = time.monotonic()
    rc, summary = load(
        served_uncompiled[0],
        tmp_path,
        [{"initialNumberOfUsers": 2, "durationInSeconds": 120}],
        {"modelLatencyThresholds": [{"percentile": "P50", "valueInMilliseconds": 1}]},
    )
    assert rc == 0, summary
    assert summary["stopReason"] == "ModelLatencyThreshold"
    assert time.monotonic() - started < 60  # long before the phase's two minutes


def test_max_invocations_stops_the_load(served_uncompiled, tmp_path):
    rc, summary = load(
        served_uncompiled[0], tmp_path, [{"initialNumberOfUsers": 1, "durationInSeconds": 120}], {"maxInvocations": 60}
    )
    assert rc == 0, summary
    assert summary["stopReason"] == "MaxInvocations"
    assert summary["end"] - summary["start"] < 60


def test_an_unreachable_endpoint_is_a_clear_failure(tmp_path):
    class Nowhere:
        url = "http://127.0.0.1:9"  # discard port: nothing listens

    rc, summary = load(Nowhere, tmp_path, [{"initialNumberOfUsers": 1, "durationInSeconds": 5}])
    assert rc == 2
    expected = r"NoSuccessfulRequests: none of [0-9]+ requests to http://127.0.0.1:9 succeeded"
    assert re.match(expected, summary["failure"]), summary
