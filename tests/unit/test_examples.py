"""Every Kompile object in examples/ is valid by the API models (the server test applies them too)."""

import pytest

from kompile.api import RESOURCES
from tests.conftest import ROOT, load_documents

MODELS = {r.kind: r.spec for r in RESOURCES}
DOCUMENTS = [
    (p.name, i, d) for p in sorted((ROOT / "examples").glob("*.yaml")) for i, d in enumerate(load_documents(p))
]


@pytest.mark.parametrize("name, index, doc", DOCUMENTS, ids=[f"{n}#{i}" for n, i, _ in DOCUMENTS])
def test_example_is_valid(name, index, doc):
    if doc["kind"] in MODELS:
        MODELS[doc["kind"]].model_validate(doc["spec"])
        if doc["kind"] == "CompilationJob":
            from kompile.api import CompilationJobSpec

            CompilationJobSpec.model_validate(doc["spec"]).input_config.parsed_inputs()


def test_catalog_covers_the_reference_targets():
    names = {d["metadata"]["name"] for _, _, d in DOCUMENTS if d["kind"] == "HardwareTarget"}
    assert {
        "x86-generic",
        "x86-avx2",
        "x86-avx512",
        "x86-avx512-bf16",
        "x86-sapphirerapids",
        "arm64-graviton3",
        "nvidia-sm80",
        "nvidia-sm90",
        "neuron-inf2",
    } <= names
