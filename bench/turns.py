"""Two compiler trees' artifacts of one model, timed in turns with onnxruntime: was a change faster?

    PYTHONPATH=. .venv/bin/python bench/turns.py keep squeezenet /tmp/new [--target x86-avx512]
    git stash; PYTHONPATH=. .venv/bin/python bench/turns.py keep squeezenet /tmp/old; git stash pop
    PYTHONPATH=. .venv/bin/python bench/turns.py time squeezenet /tmp/old /tmp/new [--repeats 4]

`keep` compiles the model with the shipped records, as a compile pod would, with the tree as it
is, and keeps the artifact and its manifest in the folder. `time` loads every kept artifact and
onnxruntime in one process and prints, `--repeats` times, each one's median latency over 20
turns of 5 calls (`bench.compile.in_turns`) and its ratio to onnxruntime's. On this shared VM
one run of one model drifts by a third within minutes; in turns the drift reaches every runtime
alike, so a few percent between two artifacts shows. Figures, never assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench.cases import NAMES, case
from bench.compile import feeds, in_turns, kompile, kompile_run, onnx_file, onnxruntime_run
from bench.tune import catalog_target


def keep(name: str, folder: Path, target_name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        framework, path, inputs = case(name, Path(tmp))
        folder.mkdir(parents=True, exist_ok=True)
        manifest = kompile(framework, path, inputs, catalog_target(target_name), folder, records=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    t = manifest["tuning"]
    print(f"kept {folder}: {t['kernelsFromRecords']}/{t['kernels']} kernels from records")


def time_kept(name: str, folders: list[Path], repeats: int) -> None:
    threads = os.cpu_count() or 1
    os.environ["TVM_NUM_THREADS"] = str(threads)  # as the operator sets it in a runtime pod
    with tempfile.TemporaryDirectory() as tmp:
        framework, path, inputs = case(name, Path(tmp))
        model_onnx = onnx_file(framework, path, inputs, Path(tmp))
        feed = feeds(model_onnx)
        runs = {"onnxruntime": onnxruntime_run(model_onnx, feed, threads)}
        for folder in folders:
            manifest = json.loads((folder / "manifest.json").read_text())
            runs[str(folder)] = kompile_run(manifest, folder / "artifact", feed)
        print(f"# {name}, batch 1, {threads} threads, ms (ratio to onnxruntime)")
        for _ in range(repeats):
            ms = in_turns(runs, rounds=20)
            base = ms["onnxruntime"]
            print(
                " | ".join(
                    f"{k} {v:.2f}" + ("" if k == "onnxruntime" else f" ({v / base:.3f}x)") for k, v in ms.items()
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["keep", "time"])
    parser.add_argument("model", choices=NAMES)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--target", default="x86-avx512")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    if args.action == "keep":
        if len(args.folders) != 1:
            parser.error("keep takes one folder")
        keep(args.model, args.folders[0], args.target)
    else:
        time_kept(args.model, args.folders, args.repeats)


if __name__ == "__main__":
    main()
