"""InferenceRecommendation: which hardware, compiled or not, how many replicas, at what cost.

Field names follow Inference Recommender's CreateInferenceRecommendationsJob in camelCase
(trafficPattern.phases with initialNumberOfUsers, spawnRate and durationInSeconds;
stoppingConditions with maxInvocations and modelLatencyThresholds; resourceLimit;
jobDurationInSeconds), the model block is a CompilationJob's inputConfig, and each result
row carries the columns of Inference Recommender's table.
"""

from __future__ import annotations

import enum

from pydantic import Field, model_validator

from kompile.api.common import Framework, KModel, ObjectName, ObservedStatus, Precision, ResourceRequirements, S3Uri
from kompile.api.compilationjob import InputConfig, Phase, Tuning
from kompile.api.resource import CustomResource, PrinterColumn


class Percentile(enum.StrEnum):
    P50 = "P50"
    P90 = "P90"
    P95 = "P95"
    P99 = "P99"

    @property
    def quantile(self) -> float:
        return int(self.value[1:]) / 100


class ModelLatencyThreshold(KModel):
    percentile: Percentile = Percentile.P95
    value_in_milliseconds: int = Field(ge=1, le=600_000)


class StoppingConditions(KModel):
    """When a load test stops raising load; the rate it sustained until then is its MaxInvocations."""

    max_invocations: int | None = Field(
        None, ge=1, le=10_000_000, description="Requests per minute at which a test has seen enough."
    )
    model_latency_thresholds: list[ModelLatencyThreshold] = Field(
        default_factory=list,
        max_length=1,
        description="Stop when the server's request latency at the percentile exceeds the value.",
    )

    @property
    def threshold(self) -> ModelLatencyThreshold | None:
        return self.model_latency_thresholds[0] if self.model_latency_thresholds else None

    @property
    def percentile(self) -> Percentile:
        """The percentile ModelLatency is reported at: the threshold's, else P95."""
        return self.threshold.percentile if self.threshold else Percentile.P95


class TrafficPhase(KModel):
    initial_number_of_users: int = Field(1, ge=1, le=1000, description="Concurrent users when the phase starts.")
    spawn_rate: int = Field(0, ge=0, le=6000, description="Users added per minute while the phase lasts.")
    duration_in_seconds: int = Field(ge=5, le=3600)


class TrafficPattern(KModel):
    """Users calling the endpoint back to back, phase after phase (locust's user model)."""

    phases: list[TrafficPhase] = Field(min_length=1, max_length=10)

    @property
    def seconds(self) -> int:
        return sum(p.duration_in_seconds for p in self.phases)


def _default_traffic() -> TrafficPattern:
    return TrafficPattern(phases=[TrafficPhase(initial_number_of_users=1, spawn_rate=2, duration_in_seconds=120)])


class EndpointConfiguration(KModel):
    """A candidate: a HardwareTarget's node pool and the replica counts to try on it."""

    hardware_target: ObjectName
    instance_counts: list[int] = Field(default_factory=lambda: [1], min_length=1, max_length=5)
    resources: ResourceRequirements | None = Field(None, description="Serving pods' resources (default: the target's).")

    @model_validator(mode="after")
    def _counts(self) -> EndpointConfiguration:
        if any(not 1 <= n <= 100 for n in self.instance_counts):
            raise ValueError("every instanceCounts entry is between 1 and 100")
        if len(set(self.instance_counts)) != len(self.instance_counts):
            raise ValueError(f"instanceCounts repeats a count: {self.instance_counts}")
        return self


class Compilation(KModel):
    """How the compiled variants are compiled (one CompilationJob per candidate target)."""

    precision: Precision = Precision.FP32
    tuning: Tuning | None = None
    max_runtime_in_seconds: int = Field(900, ge=60, le=86400)


class RecommendationOutputConfig(KModel):
    s3_output_location: S3Uri = Field(description="Prefix for the variants' artifacts and the HTML report.")


class ResourceLimit(KModel):
    max_number_of_tests: int = Field(20, ge=1, le=200, description="Refuse a plan with more load tests than this.")
    max_parallel_of_tests: int = Field(
        1, ge=1, le=20, description="Load tests at once; tests that share a machine disturb each other's figures."
    )


class InferenceRecommendationSpec(KModel):
    input_config: InputConfig | None = Field(
        None, description="The model, as a CompilationJob takes it: compiled for each candidate (and uncompiled)."
    )
    compiled_models: list[ObjectName] | None = Field(
        None,
        max_length=10,
        description="CompiledModels in this namespace to test as they are, each on the candidates of the target "
        "it was compiled for.",
    )
    output_config: RecommendationOutputConfig
    endpoint_configurations: list[EndpointConfiguration] = Field(min_length=1, max_length=10)
    include_uncompiled: bool = Field(
        True, description="Also test the source model served uncompiled (onnxruntime in the same server)."
    )
    compilation: Compilation = Field(default_factory=Compilation)
    traffic_pattern: TrafficPattern = Field(default_factory=_default_traffic)
    stopping_conditions: StoppingConditions = Field(default_factory=StoppingConditions)
    sample_payload_s3_uri: S3Uri | None = Field(
        None,
        description="Request payloads: an .npz of arrays named like the model's inputs, each [k, ...shape]; "
        "random inputs of the declared shapes where absent.",
    )
    resource_limit: ResourceLimit = Field(default_factory=ResourceLimit)
    job_duration_in_seconds: int = Field(
        7200, ge=60, le=86400, description="The whole recommendation fails with JobDurationExceeded after this."
    )
    credentials_secret_name: ObjectName | None = Field(
        None, description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the object store."
    )
    stop: bool = Field(False, description="Set to true to stop: running tests end and their endpoints go.")

    @model_validator(mode="after")
    def _targets(self) -> InferenceRecommendationSpec:
        names = [c.hardware_target for c in self.endpoint_configurations]
        if len(set(names)) != len(names):
            raise ValueError(f"endpointConfigurations names a hardwareTarget twice: {names}")
        if self.input_config is None and not self.compiled_models:
            raise ValueError("give inputConfig (a model to compile), compiledModels (models to test), or both")
        if self.compiled_models and len(set(self.compiled_models)) != len(self.compiled_models):
            raise ValueError(f"compiledModels names a model twice: {self.compiled_models}")
        if self.input_config is None:
            return self
        if self.include_uncompiled and self.input_config.framework is not Framework.ONNX:
            raise ValueError(
                f"the uncompiled variant serves ONNX models with onnxruntime; a {self.input_config.framework.value} "
                "model has none: set includeUncompiled to false"
            )
        return self


class Variant(enum.StrEnum):
    COMPILED = "compiled"  # compiled from inputConfig for the candidate's target
    UNCOMPILED = "uncompiled"  # inputConfig's model packaged for onnxruntime
    REGISTERED = "registered"  # a CompiledModel named in compiledModels


class LoadTestState(enum.StrEnum):
    PENDING = "Pending"  # waiting for its model or for a free test slot
    DEPLOYING = "Deploying"  # its temporary InferenceEndpoint is rolling out
    LOADING = "Loading"  # the load generator is running
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (LoadTestState.COMPLETED, LoadTestState.FAILED)


class LoadTest(KModel):
    """One planned test: a variant on a candidate pool at one replica count."""

    endpoint_name: str
    variant: Variant
    hardware_target: str
    instance_count: int
    compilation_job: str | None = Field(None, description="The CompilationJob that makes its model.")
    compiled_model: str | None = Field(None, description="The CompiledModel it serves, when it names one.")
    state: LoadTestState = LoadTestState.PENDING
    deploy_start_time: str | None = Field(None, description="When its InferenceEndpoint was created.")
    start_time: str | None = Field(None, description="When load started (the Prometheus window's start).")
    end_time: str | None = None
    stop_reason: str | None = Field(None, description="MaxInvocations, ModelLatencyThreshold or TrafficEnded.")
    failure_reason: str | None = Field(None, max_length=4096)


class Recommendation(KModel):
    """One variant (compiled or not) on one candidate pool at one replica count, as measured."""

    endpoint_name: str = Field(description="The temporary InferenceEndpoint the variant was tested on.")
    hardware_target: str
    instance_type: str | None = None
    initial_instance_count: int = Field(ge=1)
    cost_per_hour: float | None = Field(None, ge=0, description="initialInstanceCount x the pool's costPerHour.")
    cost_per_inference: float | None = Field(
        None, ge=0, description="costPerHour / (maxInvocations x 60): the price of one request at the sustained rate."
    )
    max_invocations: int = Field(
        ge=0, description="Most successful requests per minute the endpoint sustained within the latency threshold."
    )
    model_latency: float = Field(ge=0, description="Request latency at the threshold's percentile, milliseconds.")
    inference_specification_name: str | None = Field(
        None, description="The CompilationJob that compiled the variant; empty for the uncompiled model."
    )
    cpu_utilization: float | None = Field(None, ge=0, description="Percent of the pods' CPU limit, under load.")
    memory_utilization: float | None = Field(None, ge=0, description="Percent of the pods' memory limit, at peak.")
    model_setup_time: float | None = Field(None, ge=0, description="Seconds to fetch, verify, load and warm the model.")
    pareto_optimal: bool = Field(False, description="No other row is both cheaper per inference and faster.")


class InferenceRecommendationStatus(ObservedStatus):
    phase: Phase | None = None
    failure_reason: str | None = Field(None, max_length=4096)
    progress: str | None = Field(None, max_length=512)
    start_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    end_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    tests: list[LoadTest] | None = None
    recommendations: list[Recommendation] | None = Field(None, description="Cheapest per inference first.")
    report_uri: str | None = Field(None, description="The HTML report: latency against cost, Pareto front marked.")


INFERENCE_RECOMMENDATION = CustomResource(
    kind="InferenceRecommendation",
    plural="inferencerecommendations",
    short_names=("kir",),
    spec=InferenceRecommendationSpec,
    status=InferenceRecommendationStatus,
    description="Load-tests a model compiled and uncompiled on candidate node pools and ranks them by cost "
    "per inference.",
    columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Best", ".status.recommendations[0].endpointName"),
        PrinterColumn("Cost/Inference", ".status.recommendations[0].costPerInference", "number"),
        PrinterColumn("Reason", ".status.failureReason"),
        PrinterColumn("Progress", ".status.progress", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
)
