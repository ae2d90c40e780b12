"""InferenceEndpoint: serve a CompiledModel on its hardware's node pool."""

from __future__ import annotations

import enum

from pydantic import Field, model_validator

from kompile.api.common import IntOrPercent, KModel, ObjectName, ObservedStatus, ResourceRequirements
from kompile.api.resource import CustomResource, PrinterColumn


class ScaleMetric(enum.StrEnum):
    CPU = "cpu"
    MEMORY = "memory"


class Autoscaling(KModel):
    """A HorizontalPodAutoscaler on a resource utilisation target."""

    min_replicas: int = Field(1, ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    metric: ScaleMetric = ScaleMetric.CPU
    target_utilization_percentage: int = Field(70, ge=1, le=100)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) is below minReplicas ({self.min_replicas})")
        return self


class Rollout(KModel):
    """How a new artifact replaces the old one; the default never lowers serving capacity."""

    max_surge: IntOrPercent = 1
    max_unavailable: IntOrPercent = 0


class InferenceEndpointSpec(KModel):
    compiled_model_name: ObjectName = Field(description="The CompiledModel to serve, in this namespace.")
    hardware_target: ObjectName | None = Field(
        None, description="Serve on this HardwareTarget's pool instead of the one the model was compiled for."
    )
    replicas: int = Field(1, ge=0, le=1000, description="Replicas when autoscaling is not set.")
    autoscaling: Autoscaling | None = None
    resources: ResourceRequirements | None = Field(None, description="Default: the HardwareTarget's resources.")
    rollout: Rollout = Field(default_factory=Rollout)
    credentials_secret_name: ObjectName | None = Field(
        None, description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to fetch the artifact."
    )


class InferenceEndpointStatus(ObservedStatus):
    replicas: int | None = None
    ready_replicas: int | None = None
    url: str | None = Field(None, description="Base URL of the Open Inference Protocol (v2) API in the cluster.")
    served_digest: str | None = Field(None, description="sha256 of the artifact every ready replica serves.")
    deployment_name: str | None = None


INFERENCE_ENDPOINT = CustomResource(
    kind="InferenceEndpoint",
    plural="inferenceendpoints",
    short_names=("kie",),
    spec=InferenceEndpointSpec,
    status=InferenceEndpointStatus,
    description="Serves a CompiledModel over the Open Inference Protocol on its hardware's nodes.",
    columns=(
        PrinterColumn("Model", ".spec.compiledModelName"),
        PrinterColumn("Ready", ".status.readyReplicas", "integer"),
        PrinterColumn("Replicas", ".status.replicas", "integer"),
        PrinterColumn("URL", ".status.url"),
        PrinterColumn("Status", '.status.conditions[?(@.type=="Ready")].status'),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
)
