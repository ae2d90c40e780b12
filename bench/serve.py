"""Serving overhead: the same compiled model called in-process and through the v2 server.

    PYTHONPATH=. .venv/bin/python bench/serve.py [--seconds 20]

Compiles SqueezeNet (seeded random weights) and a small MLP for this CPU, starts
`python -m kompile_runtime` on loopback for each, and measures p50/p99 latency and
throughput at concurrency 1, 4 and 16 with tritonclient (binary tensors), beside the
in-process call of the same loaded artifact. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from kompile_runtime.artifact import load
from tests.compiler.models import compile_onnx, save, with_random_weights, zoo
from tests.compiler.test_compile_onnx import mlp
from tests.runtime.conftest import Server

CONCURRENCY = (1, 4, 16)


def measure(call, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """p50 ms, p99 ms, requests per second of `call` from `concurrency` threads."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker():
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            call()
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(latencies) / elapsed


def bench(name: str, folder: Path, inputs: dict, seconds: float) -> None:
    import tritonclient.http as triton

    model = load(folder)
    feed = {spec.name: np.random.default_rng(0).random(spec.shape, dtype=np.float32) for spec in model.inputs}
    lock = threading.Lock()  # in-process: one inference at a time, as the server runs them

    def in_process():
        with lock:
            model(feed)

    server = Server({"KOMPILE_MODEL_NAME": name, "KOMPILE_ARTIFACT_URI": str(folder)}, folder.parent).wait_ready()
    local = threading.local()

    def through_server():
        if not hasattr(local, "client"):
            local.client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=120)
            local.tensors = []
            for spec in model.inputs:
                t = triton.InferInput(spec.name, spec.shape, "FP32")
                t.set_data_from_numpy(feed[spec.name])
                local.tensors.append(t)
        local.client.infer(name, local.tensors)

    try:
        for c in CONCURRENCY:
            a = measure(in_process, c, seconds)
            b = measure(through_server, c, seconds)
            print(
                f"| {name} | {c} | {a[0]:.2f} / {a[1]:.2f} | {b[0]:.2f} / {b[1]:.2f} | {a[2]:.1f} | {b[2]:.1f} "
                f"| {b[2] / a[2]:.2f} |"
            )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [
            ("mlp", mlp(root / "mlp.onnx", batch=1), {"features": [1, 16]}),
            (
                "squeezenet",
                save(with_random_weights(zoo("squeezenet")), root / "sq.onnx"),
                {"data_0": [1, 3, 224, 224]},
            ),
        ]
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.seconds:.0f} s per cell")
        print(
            "| model | concurrency | in-process p50 / p99 ms | server p50 / p99 ms | in-process req/s | server req/s "
            "| throughput ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, path, inputs in cases:
            out = root / name / "artifact"
            compile_onnx(path, inputs, root / name / "work", output_dir=out)
            bench(name, out, inputs, args.seconds)


if __name__ == "__main__":
    main()
