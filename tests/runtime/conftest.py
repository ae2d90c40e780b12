"""Runtime tests: a real artifact compiled here, served by the real server process, called by
clients nobody here wrote (tritonclient, kserve's REST client)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.compiler.deps import need

need("tvm")
need("kserve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m kompile_runtime` as the pod runs it, with the pod's environment."""

    def __init__(self, env: dict, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.termination_log = workdir / "termination-log"
        self.log = workdir / "server.log"
        full_env = {
            **os.environ,
            **env,
            "KOMPILE_HTTP_PORT": str(self.port),
            "KOMPILE_MODEL_DIR": str(workdir / "model"),
            "KOMPILE_TERMINATION_LOG": str(self.termination_log),
            "TVM_NUM_THREADS": "2",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kompile_runtime"], env=full_env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )

    def wait_ready(self, seconds: float = 120) -> Server:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail(f"the server was not ready in {seconds} s:\n{self.log.read_text()[-3000:]}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def serve_squeezenet(s3, work: Path, name: str, **options):
    """SqueezeNet (seeded random weights) compiled for this CPU (`options`: uncompiled=True...),
    uploaded to S3 and served from there as an InferenceEndpoint pod serves it: fetched,
    verified, loaded. Returns the ready server, the source model and the compile result."""
    from tests.compiler.models import compile_onnx, save, with_random_weights, zoo

    store, env = s3
    source = save(with_random_weights(zoo("squeezenet")), work / "squeezenet.onnx")
    result, _ = compile_onnx(
        source,
        {"data_0": [1, 3, 224, 224]},
        work / "compile",
        upload_to=f"s3://kompile-artifacts/served/{name}/",
        store=store,
        **options,
    )
    server = Server(
        {
            **env,
            "KOMPILE_MODEL_NAME": "squeezenet",
            "KOMPILE_ARTIFACT_URI": result.artifact.uri,
            "KOMPILE_ARTIFACT_SHA256": result.artifact.sha256,
            "KOMPILE_MAX_REQUEST_BYTES": str(4 * 1024 * 1024),
        },
        work,
    ).wait_ready()
    return server, source, result


@pytest.fixture(scope="session")
def served_squeezenet(s3, tmp_path_factory):
    server, source, result = serve_squeezenet(s3, tmp_path_factory.mktemp("served"), "squeezenet")
    yield server, source, result
    server.stop()


def reference(source: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    return session.run(None, {"data_0": x})[0]
