"""Tune models with MetaSchedule and keep their best records as the compiler image's pre-tuned set.

    PYTHONPATH=. .venv/bin/python bench/tune.py squeezenet minilm-seq128 --trials 800 --per-task 32
    PYTHONPATH=. .venv/bin/python bench/tune.py resnet50 densenet121 --trials 512 --per-task 64

Compiles each model for a catalog HardwareTarget (default x86-avx2, whose CPU this machine
must have: tuning measures every candidate here) through the same `compile_model` a compiler
pod runs, with `trials`, and writes the best record of each kernel to
compiler-image/kompile_compiler/records/<target key>/<model>.json, which every later compile for
that target applies without tuning. Prints tuning time and the tuned latency beside the
reference runtime's. Minutes to hours on a small machine: a bench, never a test.

A budget smaller than --per-task times the kernels goes, as in any compile, to the kernels
where a round saves the most time with the records there are (a kernel without a record
first); run it again to tune the next ones, or name them with --kernels.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from bench.cases import NAMES, case
from kompile.api import Precision
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile_compiler import tuning
from kompile_compiler.pipeline import compile_model
from kompile_compiler.targets import from_hardware_target

ROOT = Path(__file__).resolve().parents[1]
# Outside the temporary folder: a compile that fails after tuning (its parity check) keeps its records.
CACHE = Path.home() / ".cache/kompile/bench-tuning"


def catalog_target(name: str):
    for doc in yaml.safe_load_all((ROOT / "examples/hardwaretargets.yaml").read_text()):
        if doc and doc["metadata"]["name"] == name:
            return from_hardware_target(name, HardwareTargetSpec.model_validate(doc["spec"]))
    raise SystemExit(f"no HardwareTarget {name} in examples/hardwaretargets.yaml")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", choices=NAMES)
    parser.add_argument("--target", default="x86-avx2")
    parser.add_argument("--trials", type=int, default=800)
    parser.add_argument("--per-task", type=int, default=32)
    parser.add_argument("--records", type=Path, default=tuning.SHIPPED)
    parser.add_argument("--precision", type=Precision, default=Precision.FP32, choices=list(Precision))
    parser.add_argument(
        "--winograd", action="store_true", help="every 3x3 convolution Winograd can compute in that form, to tune it"
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="time each candidate with the CPU caches flushed first, as a kernel deep in a network finds them",
    )
    parser.add_argument(
        "--kernels",
        nargs="+",
        default=(),
        help="tune these kernels (names as bench/kernel_times.py lists them) and no others",
    )
    args = parser.parse_args()
    target = catalog_target(args.target)
    key = tuning.target_key(target.tvm)
    print(f"# target {args.target} {target.tvm}, {os.cpu_count()} cores, records -> {args.records / key}")
    print("| model | kernels | trials | tune s | tuned p50 ms | reference p50 ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models:
            framework, path, inputs = case(name, folder)
            _, m = compile_model(
                model_uri=str(path),
                framework=framework,
                data_input_config=inputs,
                target=target,
                precision=args.precision,
                workdir=folder / name,
                trials=args.trials,
                max_trials_per_task=args.per_task,
                tuning_cache=str(CACHE),
                winograd=True if args.winograd else None,
                kernels=tuple(args.kernels),
                cold_cache=args.cold_cache,
            )
            stem = name if args.precision is Precision.FP32 else f"{name}-{args.precision.value.lower()}"
            # A bundle holds only what this run measured (never the records it was given), so a
            # later run on the same model adds a file rather than replacing the one before it.
            out = next(
                p
                for i in range(1, 1000)
                if not (p := args.records / key / f"{stem}{'' if i == 1 else f'.{i}'}.json").exists()
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(m["tuning"]["published"], out)
            lat, t = m["latency"], m["tuning"]
            print(
                f"| {name} | {t['kernels']} | {t['trials']} | {t['tuneSeconds']:.0f} | {lat['p50Ms']:.2f} | "
                f"{lat['referenceP50Ms']:.2f} | {lat['p50Ms'] / lat['referenceP50Ms']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
