"""crds/ is generated from kompile.api, and what is generated is a valid structural schema."""

import subprocess
import sys

import pytest
import yaml

from kompile.api import RESOURCES
from kompile.api.crd import OUTPUTS, crd, filename, render

# Short names the API server's built-in resources already use (kubectl api-resources, 1.20-1.32).
BUILTIN_SHORT_NAMES = {
    "cs",
    "cm",
    "ep",
    "ev",
    "limits",
    "ns",
    "no",
    "pvc",
    "pv",
    "po",
    "rc",
    "quota",
    "sa",
    "svc",
    "crd",
    "crds",
    "ds",
    "deploy",
    "rs",
    "sts",
    "hpa",
    "cj",
    "csr",
    "netpol",
    "ing",
    "pdb",
    "psp",
    "pc",
    "sc",
    "ewma",
}


def test_crds_on_disk_are_fresh(root):
    result = subprocess.run(
        [sys.executable, "-m", "kompile.api.crd", "--check", "--root", str(root)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_chart_carries_the_same_crds(root):
    for resource in RESOURCES:
        texts = {(root / out / filename(resource)).read_text() for out in OUTPUTS}
        assert texts == {render(resource)}


def test_short_names_do_not_collide():
    names = [n for r in RESOURCES for n in r.short_names]
    assert len(names) == len(set(names))
    assert not set(names) & BUILTIN_SHORT_NAMES


def _walk(node, path):
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_schema_is_structural(resource):
    schema = crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    assert "$ref" not in text and "title" not in text and "null" not in text
    for path, node in _walk(schema, resource.kind):
        free = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert node.get("type") or free, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        for key in ("anyOf", "oneOf"):
            for branch in node.get(key, []):
                if not node.get("x-kubernetes-int-or-string"):
                    assert "type" not in branch, f"{path}: type inside {key}"


def test_status_subresource_and_columns():
    for resource in RESOURCES:
        version = crd(resource)["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert any(c["name"] == "Age" for c in version["additionalPrinterColumns"])


def test_compilation_job_schema_carries_the_rules():
    spec = crd(RESOURCES[1])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    output = spec["properties"]["outputConfig"]
    assert output["oneOf"] == [{"required": ["targetDevice"]}, {"required": ["targetPlatform"]}]
    assert output["properties"]["precision"]["enum"] == ["FP32", "FP16", "BF16", "INT8"]
    assert spec["properties"]["inputConfig"]["properties"]["framework"]["enum"][0] == "ONNX"
    runtime = spec["properties"]["stoppingCondition"]["properties"]["maxRuntimeInSeconds"]
    assert (runtime["minimum"], runtime["maximum"], runtime["default"]) == (60, 86400, 900)
    assert spec["properties"]["inputConfig"]["properties"]["dataInputConfig"] == {
        "description": spec["properties"]["inputConfig"]["properties"]["dataInputConfig"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }
