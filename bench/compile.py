"""Compiled latency beside onnxruntime and OpenVINO, untuned and with tuning records, in one run.

    PYTHONPATH=. .venv/bin/python bench/compile.py [MODEL ...] [--target x86-avx2]

For each model (batch 1, threads = this machine's cores on every side): onnxruntime, OpenVINO
(`pip install openvino`; FP32 and its default precision, skipped when not installed), Kompile
with no tuning records at all (TVM's rules only), and Kompile with the records shipped in the
compiler image (`bench/tune.py` makes them) as a compile pod would find them, then that compile
again with the first one's compiled kernels in a shared cache (the "warm cache" recompile, whose
compile time is compared with the untuned one); and the same in BF16 (with the
BF16 records there are), beside OpenVINO's default precision, which is BF16 on a CPU with
AVX512-BF16 or AMX. Figures, never assertions.

The latencies that are compared are measured in turns (`in_turns`), not one runtime after
another: this machine is a shared VM whose speed drifts by a third within minutes, and measured
apart, the same compiled MiniLM came out anywhere from 1.3x to 2.4x onnxruntime.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.cases import NAMES, case
from bench.tune import catalog_target
from kompile.api import Framework, Precision
from kompile_compiler import tuning
from kompile_compiler.pipeline import compile_model
from kompile_compiler.report import CompileError
from kompile_runtime.artifact import runner


def onnx_file(framework: Framework, path: Path, inputs: dict, folder: Path) -> Path:
    """The ONNX form of a case, for the runtimes that read ONNX (the PyTorch case is exported)."""
    if framework is Framework.ONNX:
        return path
    import torch

    program = torch.export.load(str(path))
    example = tuple(torch.ones(shape, dtype=torch.int64) for shape in inputs.values())
    out = folder / f"{path.stem}.onnx"
    # PRESERVE: an exported program's module refuses train(), which the default EVAL mode calls.
    torch.onnx.export(
        program.module(),
        example,
        str(out),
        input_names=list(inputs),
        dynamo=False,
        training=torch.onnx.TrainingMode.PRESERVE,
    )
    return out


def feeds(model_path: Path) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    out = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        out[i.name] = np.ones(shape, np.int64) if "int64" in i.type else np.random.rand(*shape).astype(np.float32)
    return out


def onnxruntime_run(model_path: Path, feed: dict, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feed)


def openvino_run(model_path: Path, feed: dict, threads: int, precision: str | None) -> Callable[[], object] | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    request = ov.Core().compile_model(str(model_path), "CPU", config).create_infer_request()
    return lambda: request.infer(feed)


def kompile_run(manifest: dict, folder: Path, feed: dict) -> Callable[[], object]:
    """The compiled artifact, called the way the compile pod and the server call it."""
    names = [i["name"] for i in manifest["inputs"]]
    run = runner(manifest["runtime"], folder, names)
    args = [feed[n] for n in names]
    return lambda: run(*args)


def quiet(step: float = 0.01, longest: float = 3.0) -> float:
    """Seconds waited until no thread of this process has used the CPU for `step`: the runtime
    timed before has stopped spinning. onnxruntime's idle workers spin for a fifth of a second
    after a call here (TVM's, which yield, for a twentieth); a runtime timed in that time shares
    the 2 cores with them, and its first call took 50 ms instead of 5 (SqueezeNet). In a serving
    pod no other runtime spins beside a model."""
    start = time.perf_counter()
    while (waited := time.perf_counter() - start) < longest:
        used = time.process_time()
        time.sleep(step)
        if time.process_time() - used < step / 20:
            return waited
    return waited


def in_turns(runs: dict[str, Callable[[], object]], rounds: int = 12, calls: int = 5) -> dict[str, float]:
    """Median latency (ms) of each run, measured in `rounds` turns of `calls` calls each, so a
    drift in the machine's speed reaches every runtime alike; each turn starts once the runtime
    before has gone `quiet`."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # first call: allocation, thread pools, lazy initialisation
    for _ in range(rounds):
        for name, run in runs.items():
            quiet()
            for _ in range(calls):
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(t)) for name, t in times.items()}


def kompile(
    framework, path, inputs, target, workdir: Path, records: bool, precision=Precision.FP32, cache: Path | None = None
) -> dict:
    # "No records" means what a compile would do on a target nobody has tuned for.
    shipped = tuning.SHIPPED
    tuning.SHIPPED = shipped if records else workdir / "no-records"
    try:
        _, manifest = compile_model(
            output_dir=workdir / "artifact",
            model_uri=str(path),
            framework=framework,
            data_input_config=inputs,
            target=target,
            workdir=workdir,
            precision=precision,
            tuning_cache=str(cache) if cache else None,
            progress=lambda _: None,
        )
    finally:
        tuning.SHIPPED = shipped
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", help=f"default: all of {', '.join(NAMES)}")
    parser.add_argument("--target", default="x86-avx2")
    args = parser.parse_args()
    if unknown := set(args.models) - set(NAMES):
        parser.error(f"unknown models {sorted(unknown)}; choose from {', '.join(NAMES)}")
    threads = os.cpu_count() or 1
    os.environ["TVM_NUM_THREADS"] = str(threads)
    target = catalog_target(args.target)
    print(f"# target {args.target} {target.tvm}, batch 1, {threads} threads everywhere")
    print(
        "| model | onnxruntime ms | OpenVINO FP32 / default ms | Kompile untuned ms (compile s) "
        "| Kompile with records ms (compile s, recompile s) | kernels from records | with records / onnxruntime "
        "| Kompile BF16 ms (max abs error, kernels from records) | BF16 / OpenVINO default |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models or NAMES:
            framework, path, inputs = case(name, folder)
            model_onnx = onnx_file(framework, path, inputs, folder)
            feed = feeds(model_onnx)
            cold = kompile(framework, path, inputs, target, folder / f"{name}-cold", records=False)
            # The first compile with records leaves its compiled kernels in a shared cache; the
            # recompile links them (`kernel_cache`): the "second compile, warm cache".
            shared = folder / f"{name}-cache"
            warm = kompile(framework, path, inputs, target, folder / f"{name}-warm", True, cache=shared)
            again = kompile(framework, path, inputs, target, folder / f"{name}-again", True, cache=shared)
            try:
                bf16 = kompile(framework, path, inputs, target, folder / f"{name}-bf16", True, Precision.BF16)
            except CompileError as err:  # the parity gate refusing BF16 is a result too
                bf16, refused = None, f"{err.reason}: {err.detail}"
            runs = {
                "ort": onnxruntime_run(model_onnx, feed, threads),
                "ov32": openvino_run(model_onnx, feed, threads, "f32"),
                "ovdef": openvino_run(model_onnx, feed, threads, None),
                "warm": kompile_run(warm, folder / f"{name}-warm" / "artifact", feed),
            }
            # A BF16 model with no records runs for seconds a call: its compile-time figure will do.
            if bf16 is not None and bf16["latency"]["p50Ms"] < 1000:
                runs["bf16"] = kompile_run(bf16, folder / f"{name}-bf16" / "artifact", feed)
            ms = in_turns({k: v for k, v in runs.items() if v is not None})
            ort_ms, ov32, ovdef = ms["ort"], ms.get("ov32"), ms.get("ovdef")
            ratio = ms["warm"] / ort_ms
            if bf16 is None:
                bf16_cell, bf16_vs_ov = refused, "-"
            else:
                b, bf16_ms = bf16["tuning"], ms.get("bf16", bf16["latency"]["p50Ms"])
                bf16_cell = (
                    f"{bf16_ms:.2f} ({bf16['parity']['maxAbsError']:.2g}, {b['kernelsFromRecords']}/{b['kernels']})"
                )
                bf16_vs_ov = f"{bf16_ms / ovdef:.2f}x" if ovdef is not None else "-"
            ratios.append(ratio)
            ov = f"{ov32:.2f} / {ovdef:.2f}" if ov32 is not None else "not installed"
            t = warm["tuning"]
            print(
                f"| {name} | {ort_ms:.2f} | {ov} | {cold['latency']['p50Ms']:.2f} "
                f"({cold['compiler']['compileSeconds']:.1f}) | {ms['warm']:.2f} "
                f"({warm['compiler']['compileSeconds']:.1f}, {again['compiler']['compileSeconds']:.1f}) | "
                f"{t['kernelsFromRecords']}/{t['kernels']} | "
                f"{ratio:.2f}x | {bf16_cell} | {bf16_vs_ov} |",
                flush=True,
            )
    print(f"\ngeo-mean Kompile (with records) / onnxruntime: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}x")


if __name__ == "__main__":
    main()
