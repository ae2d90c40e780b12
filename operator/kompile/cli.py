"""`kompile`: the command line.

    kompile validate FILE|DIR ...   check Kompile objects in YAML with the operator's own rules

`validate` catches before `kubectl apply` what the API server's schema cannot, such as
dataInputConfig rules, so a GitOps repository can check its manifests in CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from kompile.api import RESOURCES, CompilationJobSpec, DataInputConfigError
from kompile.controllers.validation import describe

SPECS = {r.kind: r.spec for r in RESOURCES}


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("*.y*ml")) if p.is_dir() else [p])
    return out


def validate_document(doc: dict) -> list[str]:
    """Problems with one object, each naming the field; [] when it is valid or not ours."""
    kind = doc.get("kind")
    if kind not in SPECS or not str(doc.get("apiVersion", "")).startswith("kompile.dev/"):
        return []
    try:
        spec = SPECS[kind].model_validate(doc.get("spec") or {})
        if isinstance(spec, CompilationJobSpec):
            spec.input_config.parsed_inputs()
    except ValidationError as err:
        return [describe(err)]
    except DataInputConfigError as err:
        return [f"inputConfig.dataInputConfig: {err}"]
    return []


def cmd_validate(args: argparse.Namespace) -> int:
    failed = checked = 0
    for path in _files(args.paths):
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        except (OSError, yaml.YAMLError) as err:
            print(f"{path}: cannot read: {err}", file=sys.stderr)
            failed += 1
            continue
        for doc in docs:
            problems = validate_document(doc)
            checked += doc.get("kind") in SPECS
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name', '?')}"
            for problem in problems:
                print(f"{path}: {name}: {problem}", file=sys.stderr)
            failed += bool(problems)
    print(f"{checked} Kompile object(s) checked, {failed} invalid")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kompile", description="Compile ML models for their hardware.")
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check Kompile objects in YAML files or folders")
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(func=cmd_validate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
