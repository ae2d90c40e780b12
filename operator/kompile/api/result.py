"""The contract between operator and compiler pod: what the pod is given, what it reports.

The operator passes a `CompilerJob` as JSON in the KOMPILE_JOB environment variable, so
the pod needs no access to the API server.

On success the compiler writes one JSON object (`CompilerResult`) to its termination
message; on failure one line `Reason: detail`. The kubelet keeps at most 4096 bytes of
it, so the result holds only what the CompiledModel needs; the full manifest is in
object storage beside the artifact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field, ValidationError

from kompile.api.common import KModel, Precision, TensorSpec
from kompile.api.compilationjob import Artifact, CompilationJobSpec
from kompile.api.compiledmodel import Latency
from kompile.api.hardwaretarget import HardwareTargetSpec

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096


def write_termination_message(text: str) -> None:
    """What a pod (compiler or server) says as it ends, where the kubelet reads it
    (KOMPILE_TERMINATION_LOG overrides the path for runs outside a pod), cut to what it keeps."""
    try:
        Path(os.environ.get("KOMPILE_TERMINATION_LOG", TERMINATION_LOG)).write_bytes(
            text.encode()[:TERMINATION_MESSAGE_LIMIT]
        )
    except OSError:
        pass  # outside a pod (a laptop run) there is no termination log; stderr has it all


def failure_line(reason: str, detail: str) -> str:
    """The one line `Reason: detail` the operator turns into a failureReason."""
    return " ".join(f"{reason}: {detail}".split()) + "\n"


class NamedTarget(KModel):
    name: str
    spec: HardwareTargetSpec


class CompilerJob(KModel):
    """What a compiler pod is asked to do."""

    name: str
    namespace: str | None = None
    spec: CompilationJobSpec
    target: NamedTarget | None = None


class CompilerResult(KModel):
    artifact: Artifact
    precision: Precision = Precision.FP32
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    latency: Latency | None = None


def parse_termination_message(message: str | None) -> CompilerResult | str | None:
    """A CompilerResult, a failure line `Reason: detail`, or None when there is nothing."""
    if not message or not message.strip():
        return None
    text = message.strip()
    if text.startswith("{"):
        try:
            return CompilerResult.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as err:
            return f"InvalidCompilerResult: the compiler's result could not be read ({err.__class__.__name__})"
    return text.splitlines()[0][:1024]
