"""Request bodies in the v2 binary tensor extension, built once before the load starts.

Binary tensors keep the load generator's own CPU out of the figures: a JSON body of
SqueezeNet's input is 150,000 numbers to print per request, a binary one is a copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kompile.api.common import TensorSpec

HEADER = "Inference-Header-Content-Length"


class PayloadError(ValueError):
    """The sample payloads do not fit the model; the message names the input."""


def random_feeds(inputs: list[TensorSpec], count: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random inputs of the declared shapes: normal floats, small non-negative integers (valid ids)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for spec in inputs:
            dtype = np.dtype(spec.datatype.array_type)
            if np.issubdtype(dtype, np.floating):
                feed[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
            else:
                feed[spec.name] = rng.integers(0, 2 if dtype == np.bool_ else 8, spec.shape).astype(dtype)
        feeds.append(feed)
    return feeds


def npz_feeds(path: Path, inputs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    """One feed per sample of an .npz whose arrays are named like the inputs, each the input's
    shape or a stack [k, ...shape]. The same file serves the compiler's parity check and the
    load test, so both read it here, with the same rules and the same errors."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as err:  # noqa: BLE001 - numpy says what it could not read
        raise PayloadError(f"not an .npz numpy can read: {err}") from None
    if unknown := sorted(set(arrays) - {s.name for s in inputs}):
        raise PayloadError(f"array {unknown[0]!r} names no input; the inputs are {[s.name for s in inputs]}")
    counts = set()
    for spec in inputs:
        if spec.name not in arrays:
            raise PayloadError(f"no array for input {spec.name!r}")
        value = arrays[spec.name]
        if list(value.shape) == spec.shape:
            value = value[None]
        elif list(value.shape[1:]) != spec.shape:
            raise PayloadError(
                f"input {spec.name!r}: samples are {list(value.shape)}, the input is {spec.shape} "
                f"(give {spec.shape} or a stack [k, {', '.join(map(str, spec.shape))}])"
            )
        want = np.dtype(spec.datatype.array_type)
        # float64 samples for a float32 input are fine; floats for token ids are not.
        if not np.can_cast(value.dtype, want, "same_kind"):
            raise PayloadError(f"input {spec.name!r}: samples are {value.dtype}, the input is {want}")
        arrays[spec.name] = value.astype(want, copy=False)
        counts.add(value.shape[0])
    if len(counts) != 1:
        raise PayloadError(f"the inputs have different numbers of samples: {sorted(counts)}")
    return [{name: arrays[name][i] for name in arrays} for i in range(counts.pop())]


def binary_request(feed: dict[str, np.ndarray], inputs: list[TensorSpec]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one infer call with every tensor, inputs and outputs, in binary."""
    arrays = [np.ascontiguousarray(feed[spec.name]) for spec in inputs]
    header = {
        "inputs": [
            {
                "name": spec.name,
                "shape": spec.shape,
                "datatype": spec.datatype.value,
                "parameters": {"binary_data_size": array.nbytes},
            }
            for spec, array in zip(inputs, arrays, strict=True)
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = head + b"".join(a.tobytes() for a in arrays)
    return body, {HEADER: str(len(head)), "Content-Type": "application/octet-stream"}
