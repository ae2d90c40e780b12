"""Carry the shipped Winograd records over to a new TE form of the same kernels, without tuning again.

    PYTHONPATH=. .venv/bin/python bench/rekey.py squeezenet resnet50 densenet121 --target x86-avx512

A record is keyed on the structural hash of its kernel, so a change to how `winograd.compute`
spells a kernel orphans every record made for it, though the loops, the blocks and the schedule
are the same. This rebuilds each model's Winograd kernels both ways (`--old` names the TE helper
of the form the records were made for, taken from TVM by default: TOPI's `const_matrix`), replays
each record's schedule on the new form (it must apply) and rewrites the bundles with the new
workloads and the records' own measured times. It checks that both forms, scheduled so, compute
the same numbers. Run it after such a change and before the next compile that should use them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from bench.cases import NAMES, case
from bench.tune import catalog_target
from kompile.api import parse_data_input_config
from kompile_compiler import frontends, layout, tuning, winograd
from kompile_compiler.pipeline import _tvm_target


def winograd_forms(prepared) -> dict[str, object]:
    """Every Winograd kernel of `prepared`, as it is and with its weights layout-free (the form
    tuning measures), by name."""
    import tvm

    prepared._fused.clear()
    fused = prepared.fused(prepared.winograd_keys)
    found = {}
    for prefix, mod in (("", fused), ("free:", layout.weights_layout_free(fused))):
        for gv, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc) and winograd.keys_in(gv.name_hint):
                found[prefix + gv.name_hint] = func
    return found


def new_workloads(models, target, old_matrix) -> dict[str, object]:
    """Old workload hash -> the new form's normalized module, over the Winograd kernels of `models`."""
    import tvm

    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    current = winograd._constant_matrix
    mapping = {}
    for name in models:
        framework, path, inputs = case(name, Path(tempfile.mkdtemp()))
        imported = frontends.load(framework, path, parse_data_input_config(inputs, framework), 2)
        prepared = tuning.prepare(imported.mod, target)
        winograd._constant_matrix = old_matrix
        try:
            old = winograd_forms(prepared)
        finally:
            winograd._constant_matrix = current
        new = winograd_forms(prepared)
        for kernel, func in old.items():
            mapping[tuning._workload(func)] = normalize(new[kernel])
    return mapping


def same_numbers(trace, old_mod, new_mod, target) -> bool:
    """Both forms scheduled by `trace` give the same outputs on random inputs."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    outputs = []
    for mod in (old_mod, new_mod):
        schedule = tvm.s_tir.Schedule(mod)
        trace.apply_to_schedule(schedule, remove_postproc=False)
        library = tvm.tirx.build(schedule.mod, target=target)
        infos = ms.arg_info.ArgInfo.from_prim_func(schedule.mod["main"])
        rng = np.random.default_rng(0)
        args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in i.shape]).astype(i.dtype)) for i in infos]
        library["main"](*args)
        outputs.append(args[-1].numpy())
    return np.array_equal(*outputs)


def rekey(path: Path, mapping: dict, target) -> int:
    """Rewrite the bundle at `path` with its records for old workloads moved to the new ones;
    returns how many moved."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    body = json.loads(path.read_text())
    moved = 0
    with tempfile.TemporaryDirectory() as source_dir, tempfile.TemporaryDirectory() as out_dir:
        for field, file in tuning.PARTS.items():
            Path(source_dir, file).write_text("".join(line + "\n" for line in body[field]))
        source = tuning.open_database(work_dir=source_dir, allow_missing=False)
        out = tuning.open_database(work_dir=out_dir)
        for rec in source.get_all_tuning_records():
            mod = mapping.get(str(tvm_ffi.structural_hash(rec.workload.mod)))
            if mod is not None:
                if not same_numbers(rec.trace, rec.workload.mod, mod, target):
                    raise SystemExit(f"{path.name}: a record's two forms disagree; the bundle is left as it was")
                moved += 1
            workload = out.commit_workload(mod if mod is not None else rec.workload.mod)
            out.commit_tuning_record(ms.database.TuningRecord(rec.trace, workload, rec.run_secs, rec.target))
        lines = {field: Path(out_dir, file).read_text().splitlines() for field, file in tuning.PARTS.items()}
    if moved:
        path.write_text(json.dumps({**body, **lines}))
    return moved


def main() -> None:
    from tvm.topi.utils import const_matrix

    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", choices=NAMES)
    parser.add_argument("--target", default="x86-avx512")
    args = parser.parse_args()
    target = _tvm_target(catalog_target(args.target), 2)
    mapping = new_workloads(args.models, target, const_matrix)
    print(f"{len(mapping)} Winograd workloads in the old form")
    for path in sorted((tuning.SHIPPED / tuning.target_key(catalog_target(args.target).tvm)).glob("*.json")):
        if moved := rekey(path, mapping, target):
            print(f"{path.name}: {moved} records re-keyed")


if __name__ == "__main__":
    main()
