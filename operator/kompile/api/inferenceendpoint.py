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


class ContinuousRecommendation(KModel):
    """A periodic right-sizing from the endpoint's own Prometheus metrics (Inference Recommender's
    recommendations for a live endpoint): replicas for the window's peak load, and a cheaper
    pool or variant where a finished InferenceRecommendation for the same model found one."""

    interval_seconds: int = Field(3600, ge=30, le=604800, description="How often to recommend.")
    window_seconds: int = Field(3600, ge=60, le=2592000, description="The traffic each recommendation looks back on.")
    target_utilization_percentage: int = Field(
        60, ge=10, le=95, description="CPU utilisation the replicas should run at under the window's peak load."
    )
    apply: bool = Field(
        False,
        description="Set spec.replicas to the recommendation (opt in; never with autoscaling, whose HPA decides).",
    )


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
    recommendation: ContinuousRecommendation | None = Field(
        None, description="Recommend replicas (and a cheaper pool) from live metrics, into status.recommendation."
    )


class CheaperOption(KModel):
    recommendation: str = Field(description="The InferenceRecommendation that measured it.")
    endpoint_name: str
    hardware_target: str
    inference_specification_name: str | None = None
    cost_per_inference: float


class LiveRecommendation(KModel):
    """What the endpoint's recent traffic says it needs."""

    time: str = Field(json_schema_extra={"format": "date-time"})
    window_seconds: int
    current_replicas: int
    replicas: int = Field(description="Replicas that serve the window's peak at the target CPU utilisation.")
    reason: str
    peak_invocations: float | None = Field(None, description="Highest successful requests per minute in the window.")
    model_latency: float | None = Field(None, description="p95 request latency over the window, ms.")
    peak_cpu_utilization: float | None = Field(None, description="Percent of the replicas' CPU at the peak.")
    cost_per_hour: float | None = None
    recommended_cost_per_hour: float | None = None
    cost_per_inference: float | None = Field(None, description="costPerHour / (peakInvocations x 60).")
    cheaper_option: CheaperOption | None = None
    applied: bool = False


class InferenceEndpointStatus(ObservedStatus):
    replicas: int | None = None
    ready_replicas: int | None = None
    url: str | None = Field(None, description="Base URL of the Open Inference Protocol (v2) API in the cluster.")
    served_digest: str | None = Field(None, description="sha256 of the artifact every ready replica serves.")
    deployment_name: str | None = None
    recommendation: LiveRecommendation | None = None


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
        PrinterColumn("Recommended", ".status.recommendation.replicas", "integer", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
)
