"""`kompile`: the command line.

    kompile validate FILE|DIR ...   check Kompile objects in YAML with the operator's own rules
    kompile compile MODEL ...       compile a model here, with the compiler pods' own pipeline
    kompile run DIR [--input NAME=FILE.npy]   verify an artifact's digests, run it once
    kompile bench DIR               verify, then time it on random inputs
    kompile recommendations NAME [-n NAMESPACE]   an InferenceRecommendation's ranked table

`validate` catches before `kubectl apply` what the API server's schema cannot, such as
dataInputConfig rules, so a GitOps repository can check its manifests in CI.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from kompile.api import RESOURCES, DataInputConfigError, Framework, Precision
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
        if (inputs := getattr(spec, "input_config", None)) is not None:
            inputs.parsed_inputs()
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


def _shape_arg(text: str) -> tuple[str | None, list[int]]:
    """NAME=1,3,224,224, or a bare 1,3,224,224 (PyTorch's list form)."""
    name, _, dims = text.rpartition("=")
    try:
        return (name or None), [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=1,3,224,224") from None


def _target(args: argparse.Namespace):
    from kompile.api.hardwaretarget import Arch, HardwareTargetSpec, TargetPlatform
    from kompile_compiler import targets

    if args.platform:
        return targets.resolve(None, TargetPlatform(arch=Arch(args.platform)))
    if not args.target:
        return targets.host_target()
    for path in _files(args.catalog or []):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "HardwareTarget" and doc["metadata"]["name"] == args.target:
                return targets.from_hardware_target(args.target, HardwareTargetSpec.model_validate(doc["spec"]))
    raise SystemExit(f"kompile: no HardwareTarget {args.target!r} in {args.catalog or 'any --catalog'}")


def cmd_compile(args: argparse.Namespace) -> int:
    try:
        from kompile_compiler.pipeline import compile_model
        from kompile_compiler.report import CompileError
    except ImportError:
        print("kompile compile needs the compiler: pip install 'kompile[compiler]'", file=sys.stderr)
        return 3
    import tempfile

    named = [(n, s) for n, s in args.input]
    config = [s for _, s in named] if all(n is None for n, _ in named) else {n: s for n, s in named}
    try:
        with tempfile.TemporaryDirectory(prefix="kompile-") as workdir:
            result, _ = compile_model(
                model_uri=args.model,
                framework=Framework(args.framework),
                data_input_config=config or None,
                target=_target(args),
                precision=Precision(args.precision),
                opt_level=args.opt_level,
                workdir=Path(workdir),
                output_dir=Path(args.output),
                upload_to=args.upload,
                sample_data_uri=args.sample_data,
                trials=args.trials,
                max_trials_per_task=args.max_trials_per_task,
                tuning_cache=args.tuning_cache,
                uncompiled=args.uncompiled,
            )
    except CompileError as err:
        print(f"{err.reason}: {err.detail}", file=sys.stderr)
        return 2
    print(f"{args.output}: sha256 {result.artifact.sha256}, {result.artifact.size_bytes} bytes")
    return 0


def _load_artifact(args: argparse.Namespace):
    from kompile_runtime.artifact import ArtifactError, load

    try:
        return load(Path(args.artifact), args.sha256)
    except ArtifactError as err:
        print(f"{err.reason}: {err.detail}", file=sys.stderr)
        raise SystemExit(2) from None


def _feed(model, given: list[tuple[str | None, str]] | None = None) -> dict:
    import numpy as np

    from kompile_compiler.validation import sample_inputs

    feed = sample_inputs(model.inputs)
    for name, path in given or []:
        feed[name] = np.load(path)
    return feed


def cmd_run(args: argparse.Namespace) -> int:
    from kompile_runtime.artifact import InvalidInput

    model = _load_artifact(args)
    try:
        outputs = model(_feed(model, [tuple(i.split("=", 1)) for i in args.input]))
    except InvalidInput as err:
        print(f"InvalidInput: {err}", file=sys.stderr)
        return 2
    for spec, value in zip(model.outputs, outputs, strict=True):
        print(
            f"{spec.name} {list(value.shape)} {value.dtype}: min {value.min():.6g} max {value.max():.6g} "
            f"mean {value.mean():.6g}"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kompile_compiler.validation import percentiles_ms

    model = _load_artifact(args)
    inputs = model.check(_feed(model))  # checked once; the timing is the model's alone
    figures = percentiles_ms(lambda: model.run(*inputs), repeats=args.repeats, budget_s=args.budget)
    print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))
    return 0


def cmd_recommendations(args: argparse.Namespace) -> int:
    from kompile.api.recommendation import INFERENCE_RECOMMENDATION, Recommendation
    from kompile.recommender.report import table

    if args.file:
        obj = yaml.safe_load(Path(args.file).read_text())
    else:
        from kompile.kube import Kube

        rec = INFERENCE_RECOMMENDATION
        obj = Kube().get(rec.api_version, rec.kind, args.name, args.namespace)
        if obj is None:
            print(f"InferenceRecommendation {args.namespace}/{args.name} not found", file=sys.stderr)
            return 1
    status = obj.get("status") or {}
    print(f"{obj['metadata']['name']}: {status.get('phase', 'Pending')}", end="")
    print(f" ({status['progress']})" if status.get("progress") else "")
    if status.get("failureReason"):
        print(f"failureReason: {status['failureReason']}")
    rows = [Recommendation.model_validate(r) for r in status.get("recommendations") or []]
    if rows:
        cells = table(rows)
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        for row in cells:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for test in status.get("tests") or []:
        if test.get("failureReason"):
            print(f"{test['endpointName']}: {test['failureReason']}")
    if status.get("reportUri"):
        print(f"report: {status['reportUri']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kompile", description="Compile ML models for their hardware.")
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check Kompile objects in YAML files or folders")
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(func=cmd_validate)
    comp = sub.add_parser("compile", help="compile a model file, archive or s3:// URI into an artifact folder")
    comp.add_argument("model", help="a model file, a model.tar.gz, or an s3:// URI")
    comp.add_argument("--framework", required=True, choices=[f.value for f in Framework], type=str.upper)
    comp.add_argument(
        "--input",
        action="append",
        default=[],
        type=_shape_arg,
        metavar="NAME=SHAPE",
        help="an input's name and static shape, e.g. data_0=1,3,224,224 (repeat per input)",
    )
    where = comp.add_mutually_exclusive_group()
    where.add_argument("--target", help="a HardwareTarget name from --catalog (default: this machine's CPU)")
    where.add_argument("--platform", choices=["x86_64", "arm64"], help="a generic CPU of this architecture")
    comp.add_argument("--catalog", action="append", help="YAML file or folder with HardwareTargets")
    comp.add_argument("--precision", default="FP32", choices=[p.value for p in Precision])
    comp.add_argument("--opt-level", type=int, default=3, choices=range(4))
    comp.add_argument("-o", "--output", required=True, help="the artifact folder to write")
    comp.add_argument(
        "--sample-data", metavar="NPZ", help="sample inputs for the parity check (file or s3://), named like the inputs"
    )
    comp.add_argument("--upload", metavar="S3_PREFIX", help="also upload the artifact there (manifest last)")
    comp.add_argument("--trials", type=int, default=0, help="MetaSchedule tuning trials (0: records and rules only)")
    comp.add_argument(
        "--max-trials-per-task",
        type=int,
        help="tuning trials per kernel (default 64); a budget too small for every kernel goes to the slowest ones",
    )
    comp.add_argument(
        "--tuning-cache",
        default=os.environ.get("KOMPILE_TUNING_CACHE"),
        metavar="DIR_OR_S3_PREFIX",
        help="shared tuning records: read before compiling, and this compile's tuned records left there "
        "(default: $KOMPILE_TUNING_CACHE)",
    )
    comp.add_argument(
        "--uncompiled",
        action="store_true",
        help="package the ONNX model as it is, for onnxruntime in the runtime server (a baseline); no compile",
    )
    comp.set_defaults(func=cmd_compile)
    for name, func, text in (("run", cmd_run, "run an artifact once"), ("bench", cmd_bench, "time an artifact")):
        p = sub.add_parser(name, help=f"verify an artifact folder's digests, then {text}")
        p.add_argument("artifact", help="the folder kompile compile wrote")
        p.add_argument("--sha256", help="the digest the artifact must have (a CompiledModel's)")
        p.set_defaults(func=func)
        if name == "run":
            p.add_argument(
                "--input",
                action="append",
                default=[],
                metavar="NAME=FILE.npy",
                help="an input from a .npy file (others are random)",
            )
        else:
            p.add_argument("--repeats", type=int, default=50)
            p.add_argument("--budget", type=float, default=30.0, help="stop timing after this many seconds")
    recs = sub.add_parser("recommendations", help="print an InferenceRecommendation's ranked table")
    recs.add_argument("name")
    recs.add_argument("-n", "--namespace", default="default")
    recs.add_argument("-f", "--file", help="read the object from this YAML or JSON (kubectl get -o yaml) instead")
    recs.set_defaults(func=cmd_recommendations)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
