"""Where a compiled model's time goes, kernel by kernel, and the rate each kernel reaches.

    PYTHONPATH=. .venv/bin/python bench/kernel_times.py resnet50 [--target x86-avx2] [--top 20] [--runs 5]

Compiles the model with the shipped records, as a compile pod would, runs it `--runs` times
under the Relax VM's instrument hook, and prints for each kernel: calls per inference, its
milliseconds (median over the runs), its share of the total, the GFLOPS it reaches (FLOPs from
TVM's own estimate on the kernel as laid out and fused for tuning) and whether a tuning record
scheduled it ("weights repacked": a record for the kernel with its weights in a layout of the
schedule's own). A Winograd convolution's rate counts the operations it does, a quarter of the
direct form's multiplies. A kernel with a large share and a low rate is the next one to tune; one without a
record usually means a change to the layout or the rewrites renamed its workload. Figures, never
assertions: on a shared 2-core VM one kernel's time varies by a third between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench.cases import NAMES, case
from bench.compile import kompile
from bench.tune import catalog_target
from kompile.api import Precision, parse_data_input_config
from kompile_compiler import frontends, packaging, profile, schedules, tuning
from kompile_compiler.pipeline import _prepare, _tvm_target
from kompile_compiler.validation import sample_inputs


def rates(mod) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    """FLOPs and MetaSchedule workload keys (as it is, with its weights layout-free) of every
    kernel of `mod`, by name."""
    from tvm.s_tir.analysis import estimate_tir_flops

    flops = {gv.name_hint: float(estimate_tir_flops(func.body)) for gv, func in tuning._kernels(mod)}
    return flops, tuning.kernel_workloads(mod)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=NAMES)
    parser.add_argument("--target", default="x86-avx2")
    parser.add_argument("--precision", type=Precision, default=Precision.FP32, choices=list(Precision))
    parser.add_argument("--top", type=int, default=25, help="kernels to list, by time")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    os.environ["TVM_NUM_THREADS"] = str(threads)
    target = catalog_target(args.target)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        framework, path, inputs = case(args.model, folder)
        build = folder / "build"
        manifest = kompile(framework, path, inputs, target, build, records=True, precision=args.precision)
        imported = frontends.load(framework, path, parse_data_input_config(inputs, framework), threads)
        prepared = _prepare(imported.mod, target, args.precision, threads, lambda _: None)
        # The form the compile chose, from the records it gathered: kernel names match the artifact's.
        chosen = tuning.choose(prepared, build / "tuning")[0]
        flops, keys = rates(chosen)
        with _tvm_target(target, threads):
            ruled = schedules.scheduled(schedules.before_records(chosen))
        recorded = {json.loads(line)[0] for line in (build / "tuning" / tuning.WORKLOADS).read_text().splitlines()}
        ran = profile.kernel_profile(
            build / "artifact" / packaging.LIBRARY, sample_inputs(imported.inputs), imported.inputs, args.runs
        )
        times = {tuning.kernel_name(name): k for name, k in ran.items()}
    total = sum(k.seconds for k in times.values())
    t = manifest["tuning"]
    print(
        f"# {args.model} {args.precision.value} on {args.target} {target.tvm}, {threads} threads: "
        f"{total * 1000:.2f} ms in {len(times)} kernels, {t['kernelsFromRecords']}/{t['kernels']} from records"
    )
    print("| kernel | calls | ms | share | GFLOPS | record |")
    print("|---|---|---|---|---|---|")
    for name in sorted(times, key=lambda n: times[n].seconds, reverse=True)[: args.top]:
        k = times[name]
        rate = f"{flops[name] * k.calls / k.seconds / 1e9:.1f}" if flops.get(name) else "-"
        plain, free = keys.get(name, ("", ""))
        record = "weights repacked" if free != plain and free in recorded else "yes" if plain in recorded else "no"
        record = "no: scheduled first, by a rule" if name in ruled else record
        print(f"| {name} | {k.calls} | {k.seconds * 1000:.3f} | {k.seconds / total:.1%} | {rate} | {record} |")


if __name__ == "__main__":
    main()
