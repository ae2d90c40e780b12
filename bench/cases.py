"""The benchmark models: the onnx wheel's zoo networks (seeded random weights) and the real MiniLM."""

from __future__ import annotations

from pathlib import Path

from kompile.api import Framework
from tests.compiler.models import minilm_program, save, with_random_weights, zoo

NAMES = ("squeezenet", "resnet50", "densenet121", "minilm-seq128")


def case(name: str, folder: Path) -> tuple[Framework, Path, dict]:
    """(framework, model file, dataInputConfig) of one benchmark model, written under `folder`."""
    if name == "minilm-seq128":
        return Framework.PYTORCH, minilm_program(folder), {"input_ids": [1, 128], "attention_mask": [1, 128]}
    model = with_random_weights(zoo(name))
    weights = {t.name for t in model.graph.initializer}
    data = next(i.name for i in model.graph.input if i.name not in weights)
    return Framework.ONNX, save(model, folder / f"{name}.onnx"), {data: [1, 3, 224, 224]}
