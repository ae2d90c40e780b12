"""The load generator of a recommendation's tests: locust, in a Job, against one endpoint.

The operator writes a `LoadTestConfig` into the Job's environment; `python -m kompile.loadgen`
(in the operator image, with the `loadgen` extra) runs locust headless with a load shape
built from the traffic phases, stops at the stopping conditions, and leaves a one-line JSON
`LoadTestSummary` as the pod's termination message. The figures a recommendation reports come
from Prometheus over the summary's window, not from here; locust's own view only decides when
to stop.
"""

from __future__ import annotations

from pydantic import Field

from kompile.api.common import KModel, TensorSpec
from kompile.api.recommendation import StoppingConditions, TrafficPhase

CONFIG_ENV = "KOMPILE_LOADTEST"


class LoadTestConfig(KModel):
    url: str = Field(description="Base URL of the endpoint's v2 API, e.g. http://10.96.0.12:8080.")
    model_name: str
    inputs: list[TensorSpec] = Field(min_length=1)
    phases: list[TrafficPhase] = Field(min_length=1)
    stopping_conditions: StoppingConditions = Field(default_factory=StoppingConditions)
    sample_payload_s3_uri: str | None = None
    # Requests locust must have seen in its window before a latency percentile is trusted.
    min_requests: int = Field(20, ge=1)


class LoadTestSummary(KModel):
    start: float = Field(description="Unix time the first user started.")
    end: float
    stop_reason: str
    requests: int
    failures: int
    max_users: int
    client_p50_ms: float | None = None
    client_rps: float | None = None
