"""CompiledModel: the registry entry for one compiled artifact.

A successful CompilationJob creates it; a user may also apply one for an artifact
compiled elsewhere. It outlives the job that made it: endpoints serve it by name.
"""

from __future__ import annotations

from pydantic import Field

from kompile.api.common import Framework, KModel, ObjectName, ObservedStatus, Precision, S3Uri, TensorSpec
from kompile.api.resource import CustomResource, PrinterColumn

SHA256 = r"^[a-f0-9]{64}$"


class ArtifactRef(KModel):
    uri: S3Uri = Field(description="Prefix holding the compiled library, manifest.json and its digests.")
    sha256: str = Field(pattern=SHA256, description="sha256 of manifest.json, which lists every file's sha256.")
    size_bytes: int | None = Field(None, ge=0)


class Latency(KModel):
    """Latency measured by the compiler pod on the compile node, batch as compiled."""

    p50_ms: float | None = Field(None, ge=0)
    p90_ms: float | None = Field(None, ge=0)
    p99_ms: float | None = Field(None, ge=0)
    reference_p50_ms: float | None = Field(None, ge=0, description="The reference runtime's p50, same inputs.")

    def versus_reference(self) -> tuple[bool, str] | None:
        """Whether the compiled model is faster than its reference runtime, in a sentence with the
        ratio; None where either side was not measured (e.g. a cross-compiled artifact)."""
        if not self.p50_ms or not self.reference_p50_ms:
            return None
        compiled, reference = self.p50_ms, self.reference_p50_ms
        if compiled <= reference:
            return (
                True,
                f"p50 {compiled:.2f} ms, {reference / compiled:.2f}x the speed of the reference ({reference:.2f} ms)",
            )
        return (
            False,
            f"p50 {compiled:.2f} ms is {compiled / reference:.1f}x slower than the reference ({reference:.2f} ms)",
        )


class CompiledModelSpec(KModel):
    artifact: ArtifactRef
    target: ObjectName = Field(description="The HardwareTarget the artifact was compiled for.")
    framework: Framework
    precision: Precision = Precision.FP32
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    source_job: str | None = Field(None, description="The CompilationJob that produced it, if any.")
    latency: Latency | None = None


class CompiledModelStatus(ObservedStatus):
    """Condition Ready: the artifact is registered and can be served."""


COMPILED_MODEL = CustomResource(
    kind="CompiledModel",
    plural="compiledmodels",
    short_names=("kcm",),
    spec=CompiledModelSpec,
    status=CompiledModelStatus,
    description="A compiled model artifact, its digest, target and measured latency.",
    columns=(
        PrinterColumn("Target", ".spec.target"),
        PrinterColumn("Framework", ".spec.framework"),
        PrinterColumn("Precision", ".spec.precision"),
        PrinterColumn("P50-ms", ".spec.latency.p50Ms", "number"),
        PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        PrinterColumn("Digest", ".spec.artifact.sha256", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
)
