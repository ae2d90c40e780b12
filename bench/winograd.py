"""One 3x3 convolution tuned in Winograd form, against its direct form: is Winograd worth it here?

    PYTHONPATH=. .venv/bin/python bench/winograd.py 28 28 128 128 [--tiles 4 2] [--trials 64] [--direct-ms 1.08]

Tunes (MetaSchedule, `--trials` each) the NHWC convolution of an H x W x CI image to CO
channels, batch 1, directly (its weights layout-free, as the compile tunes them) and as the
Winograd kernel of `kompile_compiler.winograd` with each tile size asked for, on this machine
for `--target`, and prints each one's best measured time. `--direct-ms` takes the direct time
from elsewhere (`bench/kernel_times.py` of a model with shipped records) instead of tuning it.
Minutes on 2 cores; figures, never assertions.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from bench.tune import catalog_target
from kompile_compiler import tuning, winograd


def direct(h: int, w: int, ci: int, co: int):
    from tvm import te, topi

    data = te.placeholder((1, h, w, ci), name="data")
    weight = te.placeholder((3, 3, ci, co), name="weight")
    out = topi.nn.conv2d_nhwc(data, weight, 1, 1, 1, out_dtype="float32")
    return te.create_prim_func([data, weight, out]).with_attr("layout_free_buffers", [1])


def in_winograd(h: int, w: int, ci: int, co: int, m: int):
    from tvm import te

    data = te.placeholder((1, h, w, ci), name="data")
    filters = te.placeholder((m + 2, m + 2, ci, co), name="filters")
    out = winograd.compute(data, filters, m)
    return te.create_prim_func([data, filters, out]).with_attr("layout_free_buffers", [1])


def best_ms(func, target, trials: int) -> float:
    import tvm
    from tvm.s_tir import meta_schedule as ms

    with tempfile.TemporaryDirectory() as work:
        database = ms.tune_tir(
            tvm.IRModule({"main": func}),
            target,
            work,
            max_trials_global=trials,
            num_trials_per_iter=min(trials, tuning.ROUND),
            builder=ms.builder.LocalBuilder(f_build=tuning._build_candidate, timeout_sec=tuning.BUILD_TIMEOUT),
        )
        times = [np.mean([float(s) for s in r.run_secs]) for r in database.get_all_tuning_records() if r.run_secs]
        return min(t for t in times if t < tuning.FAILED_RUN) * 1000


def main() -> None:
    import tvm

    parser = argparse.ArgumentParser()
    parser.add_argument("shape", nargs=4, type=int, metavar=("H", "W", "CI", "CO"))
    parser.add_argument("--target", default="x86-avx512")
    parser.add_argument("--tiles", nargs="+", type=int, default=[4, 2])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--direct-ms", type=float)
    args = parser.parse_args()
    h, w, ci, co = args.shape
    target = tvm.target.Target({"num-cores": 2, **catalog_target(args.target).tvm})
    flops = 2 * h * w * ci * co * 9
    plain = args.direct_ms or best_ms(direct(h, w, ci, co), target, args.trials)
    print(f"{h}x{w}x{ci}->{co}: direct {plain:.3f} ms ({flops / plain / 1e6:.0f} GFLOPS)", flush=True)
    for m in args.tiles:
        ms_ = best_ms(in_winograd(h, w, ci, co, m), target, args.trials)
        print(f"  F({m},3) after {args.trials} trials: {ms_:.3f} ms, {plain / ms_:.2f}x the direct form", flush=True)


if __name__ == "__main__":
    main()
