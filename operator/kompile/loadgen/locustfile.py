"""The locustfile of a recommendation's load test (run by `python -m kompile.loadgen`).

Users call the endpoint back to back (a closed loop, as Inference Recommender's users do);
the load shape follows the traffic phases: each phase starts at initialNumberOfUsers and
adds spawnRate users a minute. Locust's sliding ten-second window decides the stopping
conditions; the figures reported come from Prometheus.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, constant, events, task

from kompile.loadgen import CONFIG_ENV, LoadTestConfig, LoadTestSummary
from kompile.loadgen.payloads import binary_request, npz_feeds, random_feeds

CONFIG = LoadTestConfig.model_validate_json(os.environ[CONFIG_ENV])
PAYLOAD = os.environ.get("KOMPILE_LOADTEST_PAYLOAD")
FEEDS = npz_feeds(Path(PAYLOAD), CONFIG.inputs) if PAYLOAD else random_feeds(CONFIG.inputs)
REQUESTS = itertools.cycle([binary_request(feed, CONFIG.inputs) for feed in FEEDS])
# Stopping conditions are judged only once locust's ten-second window holds enough of this test.
SETTLE_SECONDS = 10


class State:
    start: float | None = None
    stop_reason = "TrafficEnded"
    max_users = 0


class V2User(FastHttpUser):
    wait_time = constant(0)

    @task
    def infer(self) -> None:
        body, headers = next(REQUESTS)
        self.client.post(f"/v2/models/{CONFIG.model_name}/infer", data=body, headers=headers, name="infer")


class Phases(LoadTestShape):
    def tick(self):
        elapsed = self.get_run_time()
        if (reason := self._stop(elapsed)) is not None:
            State.stop_reason = reason
            return None
        begin = 0.0
        for phase in CONFIG.phases:
            if elapsed < begin + phase.duration_in_seconds:
                users = phase.initial_number_of_users + int(phase.spawn_rate * (elapsed - begin) / 60)
                State.max_users = max(State.max_users, users)
                return users, users  # reach the phase's count at once, as Inference Recommender does
            begin += phase.duration_in_seconds
        return None

    def _stop(self, elapsed: float) -> str | None:
        if elapsed < SETTLE_SECONDS:
            return None
        total = self.runner.stats.total
        stop = CONFIG.stopping_conditions
        if (threshold := stop.threshold) is not None and total.num_requests >= CONFIG.min_requests:
            latency = total.get_current_response_time_percentile(threshold.percentile.quantile)
            if latency is not None and latency > threshold.value_in_milliseconds:
                return "ModelLatencyThreshold"
        if stop.max_invocations is not None and total.current_rps * 60 >= stop.max_invocations:
            return "MaxInvocations"
        return None


@events.test_start.add_listener
def _started(**_) -> None:
    State.start = time.time()


@events.quitting.add_listener
def _summarise(environment, **_) -> None:
    total = environment.stats.total
    summary = LoadTestSummary(
        start=State.start or time.time(),
        end=time.time(),
        stop_reason=State.stop_reason,
        requests=total.num_requests,
        failures=total.num_failures,
        max_users=State.max_users,
        client_p50_ms=total.get_response_time_percentile(0.5) if total.num_requests else None,
        client_rps=round(total.total_rps, 3),
    )
    Path(os.environ["KOMPILE_LOADTEST_SUMMARY"]).write_text(json.dumps(summary.wire()))
