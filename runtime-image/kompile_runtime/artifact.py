"""A compiled artifact, verified before it is loaded: the manifest against the expected
digest, every file against the manifest. A mismatch refuses to load; it never serves.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kompile.api.common import TensorSpec
from kompile.storage import ObjectStore, S3Location, StorageError

MANIFEST = "manifest.json"


class ArtifactError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class InvalidInput(ValueError):
    """A request's tensors do not fit the model; the message names the input (an HTTP 400)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(folder: Path, expected_sha256: str | None = None) -> dict:
    """The manifest, once it and every file it lists match their digests."""
    try:
        raw = (folder / MANIFEST).read_bytes()
    except OSError:
        raise ArtifactError("ArtifactIncomplete", f"{folder} has no {MANIFEST}") from None
    if expected_sha256 and _sha256(raw) != expected_sha256:
        raise ArtifactError(
            "DigestMismatch", f"{MANIFEST} has sha256 {_sha256(raw)}, the CompiledModel expects {expected_sha256}"
        )
    manifest = json.loads(raw)
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError("ArtifactIncomplete", f"{name} is listed in the manifest but missing")
        if _sha256(path.read_bytes()) != digest:
            raise ArtifactError("DigestMismatch", f"{name} does not match the sha256 its manifest lists")
    return manifest


def fetch(uri: str, folder: Path, store: ObjectStore | None = None) -> Path:
    """Download an artifact: the manifest first, then exactly the files it lists."""
    store = store or ObjectStore()
    base = S3Location.parse(uri if uri.endswith("/") else uri + "/")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        store.download(base.child(MANIFEST), folder / MANIFEST)
        for name in json.loads((folder / MANIFEST).read_text()).get("files", {}):
            if "/" in name or name.startswith("."):
                raise ArtifactError("ArtifactInvalid", f"the manifest lists an unsafe file name {name!r}")
            store.download(base.child(name), folder / name)
    except StorageError as err:
        raise ArtifactError("ArtifactUnavailable", str(err)) from None
    return folder


TVM_RUNTIME, TREE_RUNTIME, ONNX_RUNTIME = "tvm-relax-vm", "tl2cgen", "onnxruntime"
# The file each runtime loads. ONNX_RUNTIME serves a model uncompiled, for comparisons.
MODEL_FILES = {TVM_RUNTIME: "model.so", TREE_RUNTIME: "model.so", ONNX_RUNTIME: "model.onnx"}


def runner(kind: str, folder: Path, input_names: list[str]) -> Callable[..., list[np.ndarray]]:
    """A callable over the artifact's model file, by the runtime its manifest names, taking the
    inputs in the manifest's order; the compile pod's parity check uses the same one the
    serving pod does."""
    if kind not in MODEL_FILES:
        raise ArtifactError("ArtifactInvalid", f"the manifest names runtime {kind!r}, which this server does not have")
    model = folder / MODEL_FILES[kind]
    if kind == TREE_RUNTIME:
        return _tree_runner(model)
    if kind == ONNX_RUNTIME:
        return _onnx_runner(model, input_names)
    return _vm_runner(model)


def _vm_runner(library: Path) -> Callable[..., list[np.ndarray]]:
    import tvm
    from tvm import relax

    main = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())["main"]

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        result = main(*[tvm.runtime.tensor(a) for a in arrays])
        return [result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result]

    return run


def _tree_runner(library: Path) -> Callable[..., list[np.ndarray]]:
    """tl2cgen's predictor over the tree library: one FP32 [batch, features] input."""
    import tl2cgen

    predictor = tl2cgen.Predictor(str(library))

    def run(x: np.ndarray) -> list[np.ndarray]:
        out = predictor.predict(tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=np.float32)))
        return [np.asarray(out, dtype=np.float32).reshape(x.shape[0], -1)]

    return run


def _onnx_runner(model: Path, input_names: list[str]) -> Callable[..., list[np.ndarray]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # The same thread budget a compiled model gets (the container's CPU limit).
    options.intra_op_num_threads = int(os.environ.get("TVM_NUM_THREADS") or 0)
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        return session.run(None, dict(zip(input_names, arrays, strict=True)))

    return run


@dataclass
class LoadedModel:
    manifest: dict
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # The model on inputs already checked and in the model's order (see check).
    run: Callable[..., list[np.ndarray]]

    def check(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The inputs in the model's order, or InvalidInput naming what is wrong."""
        unknown = sorted(set(feed) - {i.name for i in self.inputs})
        if unknown:
            raise InvalidInput(f"unknown input {unknown[0]!r}; the model's inputs are {[i.name for i in self.inputs]}")
        ordered = []
        for spec in self.inputs:
            if spec.name not in feed:
                raise InvalidInput(f"input {spec.name!r} is missing")
            value = np.asarray(feed[spec.name])
            if list(value.shape) != spec.shape:
                raise InvalidInput(f"input {spec.name!r} has shape {list(value.shape)}, the model takes {spec.shape}")
            want = np.dtype(spec.datatype.array_type)
            if value.dtype != want:
                raise InvalidInput(f"input {spec.name!r} is {value.dtype}, the model takes {spec.datatype.value}")
            ordered.append(value)
        return ordered

    def __call__(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.run(*self.check(feed))


def load(folder: Path, expected_sha256: str | None = None) -> LoadedModel:
    manifest = verify(folder, expected_sha256)
    inputs = [TensorSpec.model_validate(t) for t in manifest["inputs"]]
    return LoadedModel(
        manifest=manifest,
        inputs=inputs,
        outputs=[TensorSpec.model_validate(t) for t in manifest["outputs"]],
        run=runner(manifest.get("runtime", TVM_RUNTIME), folder, [t.name for t in inputs]),
    )
