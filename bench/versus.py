"""A compiled model's time beside onnxruntime's, convolution shape by shape: where is the gap?

    PYTHONPATH=. .venv/bin/python bench/versus.py resnet50 [--target x86-avx512] [--runs 20]

Compiles the model with the shipped records, as a compile pod would, and runs it under the
Relax VM's instrument hook (`profile.kernel_profile`); runs onnxruntime on the same model with
its own profiler (`SessionOptions.enable_profiling`). Both sides' times are of kernels in place,
inside whole inferences, so the caches hold what a real call leaves in them (a record's time,
measured alone with its inputs hot, can be a third lower), and both are profiled in `--turns`
turns, ours then onnxruntime, each once the other's threads have stopped spinning
(`bench.compile.quiet`), each figure the median over the turns, so a drift in the
machine's speed reaches both sides alike. Convolutions are matched on their
shapes (input height and channels, output height and channels; the kernel size is not in our
kernels' arguments once the weights are repacked, so a 1x1 and a 3x3 of one shape share a row);
everything else is summed by kind. Figures, never assertions: on this shared VM the whole
machine's speed drifts between runs, and only ratios within one run mean much.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.cases import NAMES, case
from bench.compile import feeds, kompile, onnx_file, quiet
from bench.tune import catalog_target
from kompile.api.common import TensorSpec
from kompile_compiler import packaging, profile


def onnxruntime_profile(model: Path, feed: dict, threads: int, runs: int) -> tuple[float, list[tuple]]:
    """onnxruntime's median inference (ms) with its profiler on, and each node's (op, input
    shapes, output shapes, median ms) over the later half of the runs (the first ones warm up)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(model.parent / "ort-profile")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    later = lambda values: values[len(values) // 2 :]  # noqa: E731
    runs_ms = [e["dur"] / 1000 for e in events if e.get("name") == "model_run"]
    nodes: dict[str, list[float]] = defaultdict(list)
    about: dict[str, tuple] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            nodes[e["name"]].append(e["dur"] / 1000)
            shapes = lambda key: [next(iter(d.values())) for d in e["args"].get(key, [])]  # noqa: E731,B023
            about[e["name"]] = (e["args"].get("op_name", "?"), shapes("input_type_shape"), shapes("output_type_shape"))
    rows = [(*about[n], float(np.median(later(ms)))) for n, ms in nodes.items()]
    return float(np.median(later(runs_ms))), rows


def _padded(channels: int) -> int:
    """Output channels as both sides compute them: onnxruntime's blocked layout and our lane
    padding (`intrinsics.pad_channels`) take SqueezeNet's 1000 classes to 1008."""
    return -(-channels // 16) * 16


def ort_key(inputs: list, outputs: list) -> tuple[int, int, int, int]:
    """(input height, input channels, output height, padded output channels) of an NCHW convolution."""
    (_, ci, h, _), (_, co, ho, _) = inputs[0], outputs[0]
    return h, ci, ho, _padded(co)


def our_key(shapes: tuple) -> tuple[int, int, int, int]:
    """The same of one of our NHWC convolution kernels: data first, output last."""
    (_, h, _, ci), (_, ho, _, co) = shapes[0], shapes[-1]
    return h, ci, ho, _padded(co)


def kind(name: str) -> str:
    """A kernel's kind: its name without the numbers TVM makes names unique with."""
    return re.sub(r"\d+", "", name.removesuffix("_prepacked"))


def ort_rows(nodes: list[tuple]) -> dict[tuple, tuple[float, int]]:
    """onnxruntime's nodes of one turn summed by row: a convolution's shape, or another op's kind."""
    rows: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
    for op, ins, outs, ms in nodes:
        row = rows[ort_key(ins, outs) if op == "Conv" and len(ins[0]) == 4 else ("onnxruntime", op)]
        row[0] += ms
        row[1] += 1
    return {k: (ms, n) for k, (ms, n) in rows.items()}


def our_rows(kernels: dict[str, profile.KernelTime], names: dict[tuple, set]) -> dict[tuple, tuple[float, int]]:
    """Our kernels of one turn summed the same way; `names` gathers the kernels of each convolution row."""
    rows: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
    for name, k in kernels.items():
        convolution = "conv2d" in name and len(k.shapes) >= 2 and len(k.shapes[0]) == 4 == len(k.shapes[-1])
        key = our_key(k.shapes) if convolution else ("ours", kind(name))
        if convolution:
            names.setdefault(key, set()).add(name.removesuffix("_prepacked"))
        rows[key][0] += k.seconds * 1000
        rows[key][1] += k.calls
    return {k: (ms, n) for k, (ms, n) in rows.items()}


def _median(turns: list[dict], key) -> tuple[float, int]:
    found = [t[key] for t in turns if key in t]
    return (float(np.median([ms for ms, _ in found])), found[0][1]) if found else (0.0, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=NAMES)
    parser.add_argument("--target", default="x86-avx512")
    parser.add_argument("--runs", type=int, default=20, help="inferences profiled a turn on our side (onnxruntime: 5x)")
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    os.environ["TVM_NUM_THREADS"] = str(threads)
    ours: list[dict] = []
    theirs: list[dict] = []
    totals: list[tuple[float, float]] = []  # onnxruntime's inference, our kernels' sum
    names: dict[tuple, set] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        framework, path, inputs = case(args.model, folder)
        manifest = kompile(framework, path, inputs, catalog_target(args.target), folder / "build", records=True)
        model = onnx_file(framework, path, inputs, folder)
        feed = feeds(model)
        specs = [TensorSpec(name=i["name"], shape=i["shape"]) for i in manifest["inputs"]]
        for _ in range(args.turns):
            quiet()
            kernels = profile.kernel_profile(folder / "build" / "artifact" / packaging.LIBRARY, feed, specs, args.runs)
            quiet()
            ort_ms, nodes = onnxruntime_profile(model, feed, threads, args.runs * 5)
            ours.append(our_rows(kernels, names))
            theirs.append(ort_rows(nodes))
            totals.append((ort_ms, sum(k.seconds for k in kernels.values()) * 1000))

    print(f"# {args.model} on {args.target}, batch 1, {threads} threads, kernels in place, {args.turns} turns")
    for ort_ms, ours_ms in totals:
        print(f"# onnxruntime {ort_ms:.2f} ms an inference, ours {ours_ms:.2f} ms in kernels ({ours_ms / ort_ms:.2f}x)")
    convs = {k for t in ours + theirs for k in t if isinstance(k[0], int)}
    rows = sorted(((k, _median(theirs, k), _median(ours, k)) for k in convs), key=lambda r: -max(r[1][0], r[2][0]))
    print("| convolution H x CI -> H x CO | onnxruntime ms (calls) | ours ms (calls) | ours / onnxruntime | kernels |")
    print("|---|---|---|---|---|")
    for (h, ci, ho, co), (o, oc), (u, uc) in rows:
        ratio = f"{u / o:.2f}" if o and u else "-"
        kernels = ", ".join(sorted(names.get((h, ci, ho, co), ())))
        print(f"| {h} x {ci} -> {ho} x {co} | {o:.3f} ({oc}) | {u:.3f} ({uc}) | {ratio} | {kernels} |")
    print("| other, by kind | ms (calls) |")
    print("|---|---|")
    others = {k for t in ours + theirs for k in t if not isinstance(k[0], int)}
    for side, op in sorted(others, key=lambda k: (k[0], -_median(ours + theirs, k)[0])):
        ms, calls = _median(theirs if side == "onnxruntime" else ours, (side, op))
        print(f"| {side}: {op} | {ms:.3f} ({calls}) |")


if __name__ == "__main__":
    main()
