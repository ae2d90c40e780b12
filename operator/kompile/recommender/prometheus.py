"""A load test's figures, read with PromQL over Prometheus's HTTP API.

The runtime pods export `kompile_requests_total{model,code}`, the `kompile_request_seconds`
histogram, `kompile_model_load_seconds` and prometheus_client's own `process_*` metrics;
Prometheus adds `namespace`, `pod` and `endpoint` (the InferenceEndpoint) as target labels.
Every query here selects one endpoint's pods and a time window, and is evaluated at the
window's end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx


class PrometheusError(Exception):
    """Prometheus could not be reached or refused a query; the message says which."""


@dataclass(frozen=True)
class Window:
    """The load test's span, in Unix seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> int:
        return max(1, math.ceil(self.end - self.start))


@dataclass(frozen=True)
class EndpointFigures:
    max_invocations: float  # successful requests per minute, the highest rate sustained
    latency_ms: float | None  # request latency at the percentile asked for
    cpu_cores: float | None  # CPU seconds per second the pods used, averaged over the window
    peak_cpu_cores: float | None  # the same, at its highest rate over the window
    memory_bytes: float | None  # the pods' peak resident memory, summed
    setup_seconds: float | None  # the slowest pod's fetch + verify + load + warm-up


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def query(self, promql: str, at: float | None = None) -> list[tuple[dict, float]]:
        """An instant query: (labels, value) per series."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = self.client.get(f"{self.url}/api/v1/query", params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as err:
            raise PrometheusError(f"Prometheus at {self.url}: {err}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {promql!r}: {body.get('error', response.text[:300])}")
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [({}, float(result[1]))]
        return [(series["metric"], float(series["value"][1])) for series in result]

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The single value a query aggregates to; None when it selects nothing (or NaN)."""
        found = [v for _, v in self.query(promql, at) if not math.isnan(v)]
        return found[0] if found else None

    def endpoint_figures(
        self, namespace: str, endpoint: str, window: Window, percentile: float = 0.99, rate_window: str = "1m"
    ) -> EndpointFigures:
        """What one endpoint's pods did during `window`.

        `rate_window` is the span each rate is taken over (at least four scrape intervals);
        the highest of those rates over the window is the sustained maximum.
        """
        pods = f'namespace="{_quote(namespace)}",endpoint="{_quote(endpoint)}"'
        span = f"{window.seconds}s"
        per_minute = f'sum(rate(kompile_requests_total{{{pods},code="200"}}[{rate_window}])) * 60'
        at = window.end
        return EndpointFigures(
            max_invocations=self.value(f"max_over_time(({per_minute})[{span}:])", at) or 0.0,
            latency_ms=_ms(
                self.value(
                    f"histogram_quantile({percentile}, "
                    f"sum by (le) (increase(kompile_request_seconds_bucket{{{pods}}}[{span}])))",
                    at,
                )
            ),
            cpu_cores=self.value(f"sum(increase(process_cpu_seconds_total{{{pods}}}[{span}])) / {window.seconds}", at),
            peak_cpu_cores=self.value(
                f"max_over_time(sum(rate(process_cpu_seconds_total{{{pods}}}[{rate_window}]))[{span}:])", at
            ),
            memory_bytes=self.value(f"max_over_time(sum(process_resident_memory_bytes{{{pods}}})[{span}:])", at),
            setup_seconds=self.value(f"max(max_over_time(kompile_model_load_seconds{{{pods}}}[{span}]))", at),
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
