"""The artifact: the compiled library, manifest.json listing every file's sha256, uploaded manifest last.

The artifact's digest is the sha256 of manifest.json, which pins every other file; a
reader that finds no manifest has found no artifact, so a half upload is never taken
for a finished one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kompile.api.common import TensorSpec
from kompile.api.compilationjob import Artifact
from kompile.api.compiledmodel import Latency
from kompile.api.result import CompilerResult
from kompile.storage import ObjectStore, S3Location, StorageError
from kompile_compiler.report import CompileError
from kompile_compiler.source import sha256_file

MANIFEST = "manifest.json"
LIBRARY = "model.so"
SCHEMA_VERSION = 1


def write_manifest(folder: Path, manifest: dict) -> Artifact:
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    body = {"schemaVersion": SCHEMA_VERSION, **manifest, "files": files}
    path = folder / MANIFEST
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return Artifact(uri=str(folder), sha256=sha256_file(path), size_bytes=size)


def upload(folder: Path, prefix: str, store: ObjectStore) -> str:
    """Every file under `prefix`, manifest.json last; returns the artifact's URI."""
    loc = S3Location.parse(prefix if prefix.endswith("/") else prefix + "/")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST), key=lambda p: p.name)
    try:
        for path in [*files, folder / MANIFEST]:
            kind = "application/json" if path.suffix == ".json" else "application/octet-stream"
            store.upload(path, loc.child(path.name), content_type=kind)
    except StorageError as err:
        raise CompileError("OutputNotWritable", str(err)) from None
    return str(loc)


def content_key(**parts) -> str:
    """What makes two compiles the same compile: model bytes, inputs, target, precision, options,
    compiler versions. The manifest carries it; an identical job reuses the artifact."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def reusable(prefix: str, key: str, store: ObjectStore) -> CompilerResult | None:
    """The finished artifact at `prefix` when it was compiled with this content key and every
    file its manifest lists is there; None otherwise (then the job compiles, and overwrites)."""
    base = S3Location.parse(prefix if prefix.endswith("/") else prefix + "/")
    try:
        raw = store.read(base.child(MANIFEST))
        if raw is None:
            return None
        manifest = json.loads(raw)
        if manifest.get("contentKey") != key:
            return None
        sizes = [store.size(base.child(name)) for name in manifest.get("files", {})]
    except (StorageError, ValueError):
        return None
    if any(size is None for size in sizes):
        return None
    latency = manifest.get("latency")
    return CompilerResult(
        artifact=Artifact(uri=str(base), sha256=hashlib.sha256(raw).hexdigest(), size_bytes=sum(sizes) + len(raw)),
        precision=manifest["precision"],
        inputs=[TensorSpec.model_validate(t) for t in manifest["inputs"]],
        outputs=[TensorSpec.model_validate(t) for t in manifest["outputs"]],
        latency=Latency.model_validate(
            {k: latency[k] for k in ("p50Ms", "p90Ms", "p99Ms", "referenceP50Ms") if k in latency}
        )
        if latency
        else None,
    )
