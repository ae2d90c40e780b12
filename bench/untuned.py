"""Untuned compile: latency of Kompile's default pipeline beside the framework's own runtime.

    python bench/untuned.py            (from the repository root, with kompile[dev,compiler])

Batch 1, TVM_NUM_THREADS and the reference's threads equal to the machine's cores. Prints
one row per model: compile time, p50 compiled, p50 reference, and their ratio. These are
the "before" figures of the performance issue; they are measured, never asserted.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

from kompile.api import Framework
from kompile_compiler.pipeline import compile_model
from kompile_compiler.targets import host_target
from tests.compiler.models import minilm_program, save, with_random_weights, zoo


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [
            (
                "squeezenet",
                Framework.ONNX,
                save(with_random_weights(zoo("squeezenet")), folder / "sq.onnx"),
                {"data_0": [1, 3, 224, 224]},
            ),
            (
                "minilm-seq128",
                Framework.PYTORCH,
                minilm_program(folder),
                {"input_ids": [1, 128], "attention_mask": [1, 128]},
            ),
        ]
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, target {host_target().tvm}")
        print("| model | compile s | Kompile p50 ms | reference p50 ms | ratio | max abs error |")
        print("|---|---|---|---|---|---|")
        for name, framework, path, inputs in cases:
            _, m = compile_model(
                model_uri=str(path),
                framework=framework,
                data_input_config=inputs,
                target=host_target(),
                workdir=folder / name,
                progress=lambda _: None,
            )
            lat = m["latency"]
            ratio = lat["p50Ms"] / lat["referenceP50Ms"]
            print(
                f"| {name} | {m['compiler']['compileSeconds']:.1f} | {lat['p50Ms']:.1f} | "
                f"{lat['referenceP50Ms']:.2f} ({m['parity']['reference']}) | {ratio:.0f}x "
                f"| {m['parity']['maxAbsError']:.2g} |"
            )


if __name__ == "__main__":
    main()
