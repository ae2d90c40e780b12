"""InferenceRecommendation controller: compile the variants, load-test each on each candidate
pool, read the figures from Prometheus, rank by cost per inference, report, tear down.

Everything the recommendation creates is owned by it (CompilationJobs, their CompiledModels,
temporary InferenceEndpoints, locust Jobs), so deleting it deletes them. Each pass derives the
plan from the spec and moves every unfinished test one step; the status remembers the steps.
"""

from __future__ import annotations

import time

import kopf
from pydantic import ValidationError

from kompile.api import API_VERSION, COMPILATION_JOB, COMPILED_MODEL, HARDWARE_TARGET, INFERENCE_ENDPOINT
from kompile.api.common import TensorSpec
from kompile.api.compilationjob import Phase
from kompile.api.datainput import DataInputConfigError
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.recommendation import (
    INFERENCE_RECOMMENDATION,
    InferenceRecommendationSpec,
    LoadTest,
    LoadTestState,
    Recommendation,
)
from kompile.config import OperatorConfig
from kompile.controllers.conditions import iso, now, seconds_since, set_condition
from kompile.controllers.jobs import job_condition, terminated
from kompile.controllers.reconcile import Outcome, reconcile_on_changes, resync
from kompile.controllers.validation import describe
from kompile.kube import Kube, dig
from kompile.loadgen import LoadTestConfig, LoadTestSummary
from kompile.manifests import RECOMMENDATION_LABEL
from kompile.manifests.loadtest import (
    LOADGEN_CONTAINER,
    REPORT_CONTAINER,
    load_job_name,
    load_test_job,
    report_job,
    report_job_name,
)
from kompile.manifests.placement import container_resources
from kompile.manifests.serving import DEFAULT_SERVING_RESOURCES, serving_name
from kompile.recommender import cost, plan
from kompile.recommender.prometheus import Prometheus, PrometheusError, Window
from kompile.recommender.report import ReportRequest

PASS_SECONDS = 5  # how often an unfinished recommendation is moved on
# Prometheus scrapes every few seconds: the window's last samples land this long after it ends.
SCRAPE_SETTLE_SECONDS = 15


def sync(rec: dict, kube: Kube, cfg: OperatorConfig) -> Outcome:
    status = rec.get("status") or {}
    meta = rec["metadata"]
    if status.get("phase") and Phase(status["phase"]).terminal:
        return Outcome()  # a finished recommendation is a record
    generation = meta.get("generation")
    out = Outcome()
    started = status.get("startTime") or now()

    def move(phase: Phase, **fields) -> Outcome:
        out.status.update(fields, phase=phase.value, observedGeneration=generation, startTime=started)
        if phase.terminal:
            out.status.setdefault("endTime", now())
            out.status.setdefault("progress", None)
            reason = fields.get("failureReason", "")
            out.status["conditions"] = set_condition(
                status.get("conditions"), "Succeeded", phase is Phase.COMPLETED, phase.value, reason, generation
            )
        if status.get("phase") != phase.value:
            out.event(phase.value, fields.get("failureReason") or f"phase {phase.value}", phase is Phase.FAILED)
        return out

    def fail(reason: str, message: str) -> Outcome:
        teardown(rec, kube)
        return move(Phase.FAILED, failureReason=f"{reason}: {message}")

    try:
        spec = InferenceRecommendationSpec.model_validate(rec.get("spec") or {})
        if spec.input_config is not None:
            spec.input_config.parsed_inputs()
    except ValidationError as err:
        return fail("InvalidSpec", describe(err))
    except DataInputConfigError as err:
        return fail(err.reason, str(err))
    if not cfg.prometheus_url:
        return fail(
            "PrometheusNotConfigured",
            "the operator has no Prometheus to read load tests from (Helm value prometheus.url)",
        )
    targets = {}
    for candidate in spec.endpoint_configurations:
        name = candidate.hardware_target
        obj = kube.get(HARDWARE_TARGET.api_version, HARDWARE_TARGET.kind, name)
        if obj is None:
            return fail(
                "HardwareTargetNotFound", f"endpointConfigurations names HardwareTarget '{name}', which does not exist"
            )
        try:
            targets[name] = HardwareTargetSpec.model_validate(obj.get("spec") or {})
        except ValidationError as err:
            return fail("InvalidHardwareTarget", f"HardwareTarget '{name}': {describe(err)}")
    model_targets = {}
    for model in spec.compiled_models or []:
        obj = kube.get(API_VERSION, COMPILED_MODEL.kind, model, meta["namespace"])
        if obj is None:
            return fail("CompiledModelNotFound", f"compiledModels names CompiledModel '{model}', which does not exist")
        model_targets[model] = dig(obj, "spec", "target")
        if model_targets[model] not in targets:
            return fail(
                "NoCandidateForModel",
                f"CompiledModel '{model}' was compiled for '{model_targets[model]}', which no endpointConfiguration "
                "names; add that HardwareTarget as a candidate",
            )
    planned = plan.plan(meta["name"], spec, model_targets)
    if problem := plan.problem(spec, planned):
        return fail(*problem)

    if spec.stop:
        if teardown(rec, kube):
            return move(Phase.STOPPING)
        return move(Phase.STOPPED)
    if seconds_since(started) > spec.job_duration_in_seconds:
        limit = spec.job_duration_in_seconds
        return fail("JobDurationExceeded", f"not finished within jobDurationInSeconds ({limit} s)")

    jobs = {
        j["metadata"]["name"]: j
        for j in kube.list(API_VERSION, COMPILATION_JOB.kind, meta["namespace"], {RECOMMENDATION_LABEL: meta["name"]})
    }
    for job in plan.compilation_jobs(rec, spec):
        if job["metadata"]["name"] not in jobs:
            jobs[job["metadata"]["name"]] = kube.create(job)[0]
    known = {t["endpointName"]: LoadTest.model_validate(t) for t in status.get("tests") or []}
    tests = [known.get(t.endpoint_name, t) for t in planned]
    rows = {r["endpointName"]: Recommendation.model_validate(r) for r in status.get("recommendations") or []}
    step = Step(rec, spec, targets, jobs, kube, cfg)
    step.active = sum(t.state in (LoadTestState.DEPLOYING, LoadTestState.LOADING) for t in tests)
    for i, test in enumerate(tests):
        if test.state.finished:
            # Deleted once the status says it finished, so a pass that loses its status write
            # (and runs again) never finds a test's endpoint gone before its outcome is kept.
            step.remove(test)
        else:
            tests[i], row = step.advance(test)
            if row is not None:
                rows[row.endpoint_name] = row
    fields = {
        "tests": [t.wire() for t in tests],
        "recommendations": [r.wire() for r in cost.rank(rows.values())],
    }
    if not all(t.state.finished for t in tests):
        return move(Phase.IN_PROGRESS, progress="; ".join([_progress(tests), *step.warnings])[:512], **fields)
    if not rows:
        first = next(t for t in tests if t.state is LoadTestState.FAILED)
        return fail("NoTestSucceeded", f"{first.endpoint_name}: {first.failure_reason}")
    return _report(rec, spec, cost.rank(rows.values()), kube, cfg, move, fields)


class Step:
    """One pass over the unfinished tests; `active` counts the tests holding an endpoint."""

    def __init__(self, rec: dict, spec: InferenceRecommendationSpec, targets: dict, jobs: dict, kube: Kube, cfg):
        self.rec, self.spec, self.targets, self.jobs, self.kube, self.cfg = rec, spec, targets, jobs, kube, cfg
        self.namespace = rec["metadata"]["namespace"]
        self.prometheus = Prometheus(cfg.prometheus_url)
        self.active = 0
        self.warnings: list[str] = []

    def advance(self, test: LoadTest) -> tuple[LoadTest, Recommendation | None]:
        if test.state is LoadTestState.PENDING:
            return self._deploy(test), None
        if test.state is LoadTestState.DEPLOYING:
            return self._load(test), None
        return self._measure(test)

    def _failed(self, test: LoadTest, reason: str) -> LoadTest:
        return test.model_copy(update={"state": LoadTestState.FAILED, "failure_reason": reason, "end_time": now()})

    def _deploy(self, test: LoadTest) -> LoadTest:
        model = test.compiled_model
        if test.compilation_job is not None:
            cj = self.jobs.get(test.compilation_job) or {}
            phase = dig(cj, "status", "phase")
            if phase in (Phase.FAILED.value, Phase.STOPPED.value):
                reason = dig(cj, "status", "failureReason") or phase
                return self._failed(test, f"CompilationFailed: CompilationJob {test.compilation_job}: {reason}")
            if phase != Phase.COMPLETED.value:
                return test
            model = dig(cj, "status", "compiledModelName")
        if self.active >= self.spec.resource_limit.max_parallel_of_tests:
            return test
        self.kube.apply(plan.endpoint(self.rec, self.spec, test, model))
        self.active += 1
        return test.model_copy(update={"state": LoadTestState.DEPLOYING, "deploy_start_time": now()})

    def _load(self, test: LoadTest) -> LoadTest:
        ie = self.kube.get(API_VERSION, INFERENCE_ENDPOINT.kind, test.endpoint_name, self.namespace)
        if dig(ie, "status", "readyReplicas", default=0) != test.instance_count:
            if seconds_since(test.deploy_start_time) > plan.SETUP_SECONDS:
                ready = next((c for c in dig(ie, "status", "conditions", default=[]) or [] if c["type"] == "Ready"), {})
                return self._failed(
                    test,
                    f"EndpointNotReady: {test.instance_count} replicas not ready within "
                    f"{plan.SETUP_SECONDS} s ({ready.get('message', 'no status')})",
                )
            return test
        if not self._scraped(test):
            return test  # load before Prometheus's first sample would go uncounted
        service = self.kube.get("v1", "Service", serving_name(test.endpoint_name), self.namespace)
        model_name = dig(ie, "spec", "compiledModelName")
        model = self.kube.get(API_VERSION, COMPILED_MODEL.kind, model_name, self.namespace)
        if not dig(service, "spec", "clusterIP") or model is None:
            return test
        config = LoadTestConfig(
            # The Service's address, not its DNS name: a cluster without DNS works too.
            url=f"http://{service['spec']['clusterIP']}:{self.cfg.serving_port}",
            model_name=test.endpoint_name,
            inputs=[TensorSpec.model_validate(t) for t in dig(model, "spec", "inputs", default=[])],
            phases=self.spec.traffic_pattern.phases,
            stopping_conditions=self.spec.stopping_conditions,
            sample_payload_s3_uri=self.spec.sample_payload_s3_uri,
        )
        deadline = self.spec.traffic_pattern.seconds + plan.TEST_OVERHEAD_SECONDS
        self.kube.create(
            load_test_job(self.rec, test.endpoint_name, config, deadline, self.cfg, self.spec.credentials_secret_name)
        )
        return test.model_copy(update={"state": LoadTestState.LOADING})

    def _scraped(self, test: LoadTest) -> bool:
        """Whether Prometheus scrapes every replica of the test's endpoint already."""
        pods = f'namespace="{self.namespace}",endpoint="{test.endpoint_name}"'
        try:
            up = self.prometheus.value(f"count(up{{{pods}}} == 1)")
        except PrometheusError as err:
            self.warnings.append(f"{test.endpoint_name}: {err}")
            return False
        return (up or 0) >= test.instance_count

    def _measure(self, test: LoadTest) -> tuple[LoadTest, Recommendation | None]:
        name = load_job_name(test.endpoint_name)
        job = self.kube.get("batch/v1", "Job", name, self.namespace)
        if job is None:
            return test.model_copy(update={"state": LoadTestState.DEPLOYING}), None  # created again next pass
        message = _termination_message(self.kube, self.namespace, name, LOADGEN_CONTAINER)
        if job_condition(job, "Failed"):
            return self._failed(test, message or f"LoadTestFailed: Job {name} failed"), None
        if not job_condition(job, "Complete"):
            return test, None
        try:
            summary = LoadTestSummary.model_validate_json(message or "")
        except ValidationError:
            return self._failed(test, f"LoadTestFailed: Job {name} ended without a summary ({message!r})"), None
        if time.time() < summary.end + SCRAPE_SETTLE_SECONDS:
            return test, None
        percentile = self.spec.stopping_conditions.percentile
        rate_window = f"{max(20, min(60, self.spec.traffic_pattern.seconds // 2))}s"
        try:
            figures = self.prometheus.endpoint_figures(
                self.namespace, test.endpoint_name, Window(summary.start, summary.end), percentile.quantile, rate_window
            )
        except PrometheusError as err:
            self.warnings.append(f"{test.endpoint_name}: {err}")
            return test, None
        candidate = next(c for c in self.spec.endpoint_configurations if c.hardware_target == test.hardware_target)
        target = self.targets[test.hardware_target]
        resources = container_resources(candidate.resources, target.resources, default=DEFAULT_SERVING_RESOURCES)
        row = cost.measured_row(test, figures, target, resources)
        done = test.model_copy(
            update={
                "state": LoadTestState.COMPLETED,
                "start_time": iso(summary.start),
                "end_time": iso(summary.end),
                "stop_reason": summary.stop_reason,
            }
        )
        return done, row

    def remove(self, test: LoadTest) -> None:
        """A finished test frees its pool for the next one."""
        self.kube.delete("batch/v1", "Job", load_job_name(test.endpoint_name), self.namespace)
        self.kube.delete(API_VERSION, INFERENCE_ENDPOINT.kind, test.endpoint_name, self.namespace)


def _report(rec, spec, rows: list[Recommendation], kube: Kube, cfg: OperatorConfig, move, fields: dict) -> Outcome:
    """Every test done: write the report from a Job (it holds the credentials), then complete."""
    meta = rec["metadata"]
    name = report_job_name(meta["name"])
    job = kube.get("batch/v1", "Job", name, meta["namespace"])
    if job is None:
        request = ReportRequest(
            uri=f"{spec.output_config.s3_output_location.rstrip('/')}/{meta['name']}/",
            title=f"InferenceRecommendation {meta['namespace']}/{meta['name']}",
            percentile=spec.stopping_conditions.percentile.value,
            rows=rows,
        )
        kube.create(
            report_job(
                rec, request.model_dump_json(by_alias=True, exclude_none=True), cfg, spec.credentials_secret_name
            )
        )
        return move(Phase.IN_PROGRESS, progress="writing the report", **fields)
    message = _termination_message(kube, meta["namespace"], name, REPORT_CONTAINER)
    if job_condition(job, "Complete") or job_condition(job, "Failed"):
        teardown(rec, kube)
    if job_condition(job, "Complete"):
        out = move(Phase.COMPLETED, reportUri=message, progress=None, **fields)
        out.status["conditions"] = set_condition(
            out.status["conditions"], "ReportWritten", True, "ReportWritten", message or ""
        )
        return out
    if job_condition(job, "Failed"):
        # The ranked table is in the status either way; a report that could not be written is a warning.
        message = message or f"Job {name} failed"
        out = move(Phase.COMPLETED, progress=None, **fields)
        out.status["conditions"] = set_condition(
            out.status["conditions"], "ReportWritten", False, "ReportNotWritten", message
        )
        out.event("ReportNotWritten", message, warning=True)
        return out
    return move(Phase.IN_PROGRESS, progress="writing the report", **fields)


def teardown(rec: dict, kube: Kube) -> bool:
    """Delete the temporary endpoints and load Jobs; True while some are still there. The report
    Job stays: its termination message is the report's address (it goes with the recommendation)."""
    meta = rec["metadata"]
    labels = {RECOMMENDATION_LABEL: meta["name"]}
    left = False
    for api_version, kind in ((API_VERSION, INFERENCE_ENDPOINT.kind), ("batch/v1", "Job")):
        for obj in kube.list(api_version, kind, meta["namespace"], labels):
            if obj["metadata"]["name"] == report_job_name(meta["name"]):
                continue
            left = True
            if not dig(obj, "metadata", "deletionTimestamp"):
                kube.delete(api_version, kind, obj["metadata"]["name"], meta["namespace"])
    return left


def _progress(tests: list[LoadTest]) -> str:
    done = sum(t.state.finished for t in tests)
    running = [
        f"{t.endpoint_name} {t.state.value.lower()}"
        for t in tests
        if t.state in (LoadTestState.DEPLOYING, LoadTestState.LOADING)
    ]
    pending = [t.endpoint_name for t in tests if t.state is LoadTestState.PENDING]
    waiting = "; ".join(running) or (f"next: {pending[0]}" if pending else "")
    return f"{done} of {len(tests)} tests done; {waiting}"[:512]


def _termination_message(kube: Kube, namespace: str, job_name: str, container: str) -> str | None:
    for pod in kube.list("v1", "Pod", namespace, {"job-name": job_name}):
        if message := terminated(pod, container).get("message"):
            return message.strip()
    return None


# --- kopf wiring -------------------------------------------------------------------------

reconcile_on_changes(INFERENCE_RECOMMENDATION.crd_name, sync)


def _unfinished(status: kopf.Status, **_) -> bool:
    return not (status.get("phase") and Phase(status["phase"]).terminal)


@kopf.timer(INFERENCE_RECOMMENDATION.crd_name, interval=PASS_SECONDS, when=_unfinished)
def move_on(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Compiles, rollouts, load tests and scrapes finish without an event on the recommendation."""
    resync(dict(body), memo, sync)
