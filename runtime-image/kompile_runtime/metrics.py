"""Prometheus metrics of the serving pod, beside the ones kserve exports itself.

kserve's /metrics serves the default registry, so everything registered here appears there.
Names carry the `kompile_` prefix; the recommender's PromQL reads them by these names.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, Info

# Buckets from 0.5 ms to 10 s: compiled CNNs answer in milliseconds, untuned ones in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("kompile_requests", "Inference requests by model and HTTP status code.", ["model", "code"])
REQUEST_SECONDS = Histogram(
    "kompile_request_seconds",
    "Time from request to response of an inference call, decoding and encoding included.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "kompile_inference_seconds", "Time the compiled model itself runs per request.", ["model"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "kompile_batch_size",
    "Leading dimension of the first input of each request.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
LOAD_SECONDS = Gauge("kompile_model_load_seconds", "Seconds to fetch, verify, load and warm up the model.", ["model"])
IN_FLIGHT = Gauge("kompile_requests_in_flight", "Inference requests being served now.", ["model"])
MODEL = Info("kompile_model", "The artifact this pod serves.")


class RequestMetrics:
    """ASGI middleware: counts and times every call to /v2/models/{name}/infer by status code."""

    def __init__(self, app, model_name: str):
        self.app, self.model = app, model_name
        IN_FLIGHT.labels(model_name).set(0)  # the series exists before the first request
        # So do those a rate is taken on, at 0: a counter whose first scrape already holds
        # every request shows Prometheus no increase, and a short load read 0 invocations/min.
        REQUESTS.labels(model_name, "200")
        REQUEST_SECONDS.labels(model_name)
        INFERENCE_SECONDS.labels(model_name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/infer"):
            return await self.app(scope, receive, send)
        code = 500
        start = time.perf_counter()

        async def send_and_record(message):
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        IN_FLIGHT.labels(self.model).inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            IN_FLIGHT.labels(self.model).dec()
            REQUEST_SECONDS.labels(self.model).observe(time.perf_counter() - start)
            REQUESTS.labels(self.model, str(code)).inc()
