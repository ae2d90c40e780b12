"""Compile time in a fresh process, as a compile pod has it: untuned, with records, and again.

    PYTHONPATH=. .venv/bin/python bench/recompile.py [MODEL ...] [--target x86-avx512] [--rounds 2]

For each model, each compile in a process of its own (TVM imported, nothing warm): with no
records at all (TVM's rules only), with the records shipped in the compiler image and an empty
shared cache (the first compile: it leaves its compiled kernels there), and the same again with
that cache (the recompile, which links them: `kompile_compiler/kernel_cache.py`). Prints each
compile's `compileSeconds` (import to exported library, no parity check or latency measurement)
and the recompile's ratio to the untuned compile, the issue's 1.2x target. Figures, never
assertions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cases import NAMES


def one(name: str, target_name: str, records: bool, cache: str | None) -> None:
    """One compile, here: its manifest's figures as a JSON line on stdout."""
    from bench.cases import case
    from bench.compile import kompile
    from bench.tune import catalog_target

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        framework, path, inputs = case(name, folder)
        target = catalog_target(target_name)
        manifest = kompile(framework, path, inputs, target, folder / "w", records, cache=Path(cache) if cache else None)
    compiled = manifest["tuning"].get("compiledKernels", {})
    print(json.dumps({"seconds": manifest["compiler"]["compileSeconds"], **compiled}))


def fresh(name: str, target_name: str, records: bool, cache: Path | None) -> dict:
    command = [sys.executable, __file__, "--one", name, "--target", target_name]
    command += (["--records"] if records else []) + (["--cache", str(cache)] if cache else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", help=f"default: all of {', '.join(NAMES)}")
    parser.add_argument("--target", default="x86-avx512")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--records", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.target, args.records, args.cache)
    if unknown := set(args.models) - set(NAMES):
        parser.error(f"unknown models {sorted(unknown)}; choose from {', '.join(NAMES)}")
    print(f"# target {args.target}, compileSeconds, each compile in a fresh process")
    print("| model | untuned s | with records, first s (kernels stored) | recompile s (kernels reused) | ratio |")
    print("|---|---|---|---|---|")
    for name in args.models or NAMES:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as cache:
                untuned = fresh(name, args.target, False, None)
                first = fresh(name, args.target, True, Path(cache))
                again = fresh(name, args.target, True, Path(cache))
            ratio = again["seconds"] / untuned["seconds"]  # the recompile's, to the untuned compile's
            print(
                f"| {name} | {untuned['seconds']:.2f} | {first['seconds']:.2f} ({first.get('kernelsStored')}) | "
                f"{again['seconds']:.2f} ({again.get('kernelsReused')}) | {ratio:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
