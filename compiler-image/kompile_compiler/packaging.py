"""The artifact: the compiled library, manifest.json listing every file's sha256, uploaded manifest last.

The artifact's digest is the sha256 of manifest.json, which pins every other file; a
reader that finds no manifest has found no artifact, so a half upload is never taken
for a finished one.
"""

from __future__ import annotations

import json
from pathlib import Path

from kompile.api.compilationjob import Artifact
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
