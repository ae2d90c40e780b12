"""Generate CustomResourceDefinitions from the pydantic models.

Pydantic writes JSON Schema (2020-12); the API server wants a *structural* OpenAPI
v3.0 schema: every node typed, no $ref, no `null` types, exclusive bounds as booleans,
and `additionalProperties` never beside `properties`. This module does that
conversion and nothing else, so the models stay the single source.

    python -m kompile.api.crd [--check]

writes crds/ and the Helm chart's charts/kompile/crds/ (the same files).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from kompile.api import RESOURCES
from kompile.api.common import GROUP, VERSION
from kompile.api.resource import CustomResource

# Keys with meaning in the API server's schema language; everything else pydantic
# emits (title, $defs after inlining, ...) is dropped.
_KEPT = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
    "default",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON Schema node (with its $defs) to a structural schema node."""
    schema = dict(schema)
    if "$ref" in schema:
        target = defs[schema.pop("$ref").rsplit("/", 1)[-1]]
        # Keys beside the $ref (a field's own description, default) win over the def's.
        schema = {**target, **schema}

    if schema.get("x-kubernetes-int-or-string"):
        return {k: v for k, v in schema.items() if k in _KEPT}

    # Optional[X] is anyOf [X, null]: the API server expresses optional by absence.
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            merged = structural(branches[0], defs)
            for key in ("description", "default"):
                if key in schema:
                    merged[key] = schema[key]
            schema = {**schema, **merged}
            schema.pop("anyOf")
        else:
            raise ValueError(f"a union of several types has no structural form: {schema['anyOf']}")

    if "const" in schema:
        schema.setdefault("enum", [schema["const"]])

    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _KEPT:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = structural(value, defs)
            # `false` is pydantic's extra="forbid"; the API server prunes unknown fields
            # anyway and rejects additionalProperties beside properties.
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "default":
            # Only scalar defaults: object defaults would freeze today's sub-defaults into
            # stored objects, and None means "absent".
            if value is not None and not isinstance(value, dict | list):
                out[key] = value
        else:
            out[key] = value

    # A free-form node (Any) carries no type: it keeps whatever the user wrote.
    if "type" not in out and "properties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        if "enum" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    # type and description first: the generated YAML is read by people too.
    return dict(sorted(out.items(), key=lambda kv: _ORDER.get(kv[0], len(_ORDER))))


_ORDER = {"type": 0, "description": 1}


def model_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def crd(resource: CustomResource) -> dict[str, Any]:
    spec = model_schema(resource.spec)
    if resource.spec.__doc__ and "description" not in spec:
        spec["description"] = resource.spec.__doc__.strip()
    status = model_schema(resource.status)
    status.pop("required", None)
    schema = {
        "type": "object",
        "description": resource.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    names = {
        "kind": resource.kind,
        "listKind": f"{resource.kind}List",
        "plural": resource.plural,
        "singular": resource.singular,
        "shortNames": list(resource.short_names),
        "categories": list(resource.categories),
    }
    columns = []
    for col in resource.columns:
        entry = {"name": col.name, "type": col.type, "jsonPath": col.json_path}
        if col.description:
            entry["description"] = col.description
        if col.priority:
            entry["priority"] = col.priority
        columns.append(entry)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name, "labels": {"app.kubernetes.io/part-of": "kompile"}},
        "spec": {
            "group": GROUP,
            "scope": resource.scope,
            "names": names,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render(resource: CustomResource) -> str:
    header = "# Generated by `python -m kompile.api.crd` from kompile.api: do not edit.\n"
    return header + yaml.safe_dump(copy.deepcopy(crd(resource)), sort_keys=False, width=120)


def filename(resource: CustomResource) -> str:
    return f"{GROUP}_{resource.plural}.yaml"


OUTPUTS = ("crds", "charts/kompile/crds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    parser.add_argument("--check", action="store_true", help="fail if the files on disk are stale")
    args = parser.parse_args(argv)
    stale = []
    for out in OUTPUTS:
        folder = args.root / out
        folder.mkdir(parents=True, exist_ok=True)
        for resource in RESOURCES:
            path = folder / filename(resource)
            text = render(resource)
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.write_text(text)
    if stale:
        print("stale CRDs (run `python -m kompile.api.crd`):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
