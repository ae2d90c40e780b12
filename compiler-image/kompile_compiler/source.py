"""The model as given: fetched from S3 or a path, unpacked safely, its model file found."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from kompile.api import Framework
from kompile.storage import ObjectStore, StorageError
from kompile_compiler.report import CompileError

# An archive bigger than this unpacked is refused (a model zoo's largest fit well within).
MAX_UNPACKED_BYTES = 8 << 30

# What a model file of each framework looks like inside a Neo-style model.tar.gz.
MODEL_FILES = {
    Framework.ONNX: ("*.onnx",),
    Framework.PYTORCH: ("*.pth", "*.pt", "*.pt2"),
    Framework.TENSORFLOW: ("*.pb", "*.pbtxt"),
    Framework.TFLITE: ("*.tflite",),
    Framework.KERAS: ("*.h5", "*.keras"),
    Framework.MXNET: ("*-symbol.json",),
    Framework.XGBOOST: ("*.json", "*.ubj", "*.model", "*.bst"),
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(uri: str, workdir: Path, store: ObjectStore | None = None) -> Path:
    """The model's bytes on local disk: an s3:// URI is downloaded, a path is used as it is."""
    if not uri.startswith("s3://"):
        path = Path(uri)
        if not path.exists():
            raise CompileError("ModelNotFound", f"{uri} does not exist")
        return path
    target = workdir / "source" / Path(uri.rstrip("/")).name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return (store or ObjectStore()).download(uri, target)
    except StorageError as err:
        reason = {"NotFound": "ModelNotFound", "AccessDenied": "StorageAccessDenied"}.get(err.reason, "StorageError")
        raise CompileError(reason, str(err)) from None


def unpack(archive: Path, into: Path, limit: int = MAX_UNPACKED_BYTES) -> Path:
    """Unpack a model.tar.gz, refusing anything that could write outside `into` or fill the disk."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            total = 0
            for m in members:
                name = Path(m.name)
                if name.is_absolute() or ".." in name.parts:
                    raise CompileError(
                        "InvalidModelArchive", f"{archive.name}: entry {m.name!r} points outside the archive"
                    )
                if m.issym() or m.islnk():
                    link = Path(m.linkname)
                    if link.is_absolute() or ".." in (name.parent / link).parts:
                        raise CompileError(
                            "InvalidModelArchive",
                            f"{archive.name}: link {m.name!r} -> {m.linkname!r} leaves the archive",
                        )
                elif not (m.isfile() or m.isdir()):
                    raise CompileError(
                        "InvalidModelArchive", f"{archive.name}: entry {m.name!r} is not a file or folder"
                    )
                total += m.size
                if total > limit:
                    raise CompileError(
                        "InvalidModelArchive", f"{archive.name} unpacks to more than {limit >> 20} MiB; refusing it"
                    )
            into.mkdir(parents=True, exist_ok=True)
            # The checks above come first; the "data" filter is a second guard of the standard library's.
            tar.extractall(into, members=members, filter="data")
    except tarfile.TarError as err:
        raise CompileError("InvalidModelArchive", f"{archive.name} is not a readable tar archive: {err}") from None
    return into


def locate(path: Path, framework: Framework, workdir: Path) -> Path:
    """The model file: `path` itself, or the one model file inside an archive."""
    if path.is_file() and tarfile.is_tarfile(path):
        path = unpack(path, workdir / "unpacked")
    if path.is_file():
        return path
    patterns = MODEL_FILES[framework]
    found = sorted({p for pattern in patterns for p in path.rglob(pattern) if p.is_file()})
    if not found:
        raise CompileError("ModelNotFound", f"no {framework.value} model file ({', '.join(patterns)}) in the archive")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(path)) for p in found)
        raise CompileError("AmbiguousModel", f"the archive holds several {framework.value} model files: {names}")
    return found[0]
