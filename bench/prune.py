"""Take named kernels' records out of a bundle: those of a round that ran slower in place.

    PYTHONPATH=. .venv/bin/python bench/prune.py densenet121 BUNDLE.json --kernels NAME [NAME ...] [--target x86-avx512]

MetaSchedule times a candidate alone, again and again on the same buffers; inside the network
a kernel can run slower with the record that won there than with the one before (two of
DenseNet-121's 1x1 convolutions after session 26's round). Once `bench/kernel_times.py` or
`profile.kernel_profile` has shown which, this rewrites the bundle without those kernels'
workloads (both keys: the weights as they are and layout-free) and their records, so the
shipped records before it keep them. Names as `bench/kernel_times.py` lists them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.cases import NAMES, case
from bench.tune import catalog_target
from kompile.api import parse_data_input_config
from kompile_compiler import frontends, tuning
from kompile_compiler.pipeline import _tvm_target


def keys_of(model: str, target_name: str, names: set[str]) -> set[str]:
    """The workload keys of the kernels of `model` named in `names`, in the form a compile with
    the shipped records takes (which convolutions are in Winograd form changes the numbering)."""
    target = catalog_target(target_name)
    with tempfile.TemporaryDirectory() as tmp:
        framework, path, inputs = case(model, Path(tmp))
        imported = frontends.load(framework, path, parse_data_input_config(inputs, framework), 2)
        prepared = tuning.prepare(imported.mod, _tvm_target(target, 2))
        work = Path(tmp) / "tuning"
        work.mkdir()
        narrower = tuning.narrower_keys(target.tvm)
        tuning.gather(work, tuning.target_key(target.tvm), None, lambda _: None, tuning.workloads(prepared), narrower)
        chosen, _ = tuning.choose(prepared, work)
    found = {n: k for n, k in tuning.kernel_workloads(chosen).items() if n in names}
    if missing := sorted(names - set(found)):
        raise SystemExit(f"{model} has no kernels {', '.join(missing)}")
    return {key for pair in found.values() for key in pair}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=NAMES)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--kernels", nargs="+", required=True)
    parser.add_argument("--target", default="x86-avx512")
    args = parser.parse_args()
    bundle = json.loads(args.bundle.read_text())
    kept = tuning._only(bundle, None, keys_of(args.model, args.target, set(args.kernels)))
    dropped = len(bundle["workloads"]) - len(kept["workloads"])
    args.bundle.write_text(json.dumps(kept))
    print(f"{args.bundle}: {dropped} workloads and their records taken out, {len(kept['workloads'])} kept")


if __name__ == "__main__":
    main()
