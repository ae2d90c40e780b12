"""The recommender's result row: Inference Recommender's columns, as Kubernetes status fields."""

from __future__ import annotations

from pydantic import Field

from kompile.api.common import KModel


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
