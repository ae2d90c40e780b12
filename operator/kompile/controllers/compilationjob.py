"""CompilationJob controller: one compiler Job per CompilationJob, its outcome in the status.

The phase is derived from the compiler Job and its pod every time (level-triggered),
so a restarted operator, a repeated event or two handlers racing all reach the same
status and create nothing twice.
"""

from __future__ import annotations

import kopf
from pydantic import ValidationError

from kompile.api import API_VERSION, COMPILATION_JOB, COMPILED_MODEL, HARDWARE_TARGET
from kompile.api.compilationjob import CompilationJobSpec, Phase
from kompile.api.datainput import DataInputConfigError
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.recommendation import INFERENCE_RECOMMENDATION
from kompile.api.result import CompilerResult, parse_termination_message
from kompile.config import OperatorConfig
from kompile.controllers.conditions import now, set_condition
from kompile.controllers.jobs import job_condition, terminated
from kompile.controllers.reconcile import Outcome, reconcile_on_changes, resync
from kompile.controllers.validation import describe
from kompile.kube import Kube, dig
from kompile.manifests import COMPILATION_JOB_LABEL, MANAGED_BY, RECOMMENDATION_LABEL
from kompile.manifests.compiler import COMPILER_CONTAINER, compiler_job, compiler_job_name

TARGET_RETRY_SECONDS = 15
PROGRESS_SECONDS = 5  # how often a running compile's progress line is read into its status
PROGRESS_PREFIX = "[kompile] "  # kompile_compiler.pipeline.stderr_progress writes its steps so


def sync(cj: dict, kube: Kube, cfg: OperatorConfig) -> Outcome:
    status = cj.get("status") or {}
    meta = cj["metadata"]
    if status.get("phase") and Phase(status["phase"]).terminal:
        return Outcome()  # a finished job is a record: nothing changes it
    generation = meta.get("generation")
    out = Outcome()

    def move(phase: Phase, **fields) -> Outcome:
        out.status.update(fields)
        out.status["phase"] = phase.value
        out.status["observedGeneration"] = generation
        if phase.terminal:
            out.status.setdefault("compilationEndTime", now())
            out.status["progress"] = None  # the last step's line would read as if it were still running
            ok = phase is Phase.COMPLETED
            reason = {Phase.COMPLETED: "Completed", Phase.FAILED: "Failed", Phase.STOPPED: "Stopped"}[phase]
            out.status["conditions"] = set_condition(
                out.status.get("conditions", status.get("conditions")),
                "Succeeded",
                ok,
                reason,
                fields.get("failureReason", ""),
                generation,
            )
        if status.get("phase") != phase.value:
            message = fields.get("failureReason") or f"phase {phase.value}"
            out.event(phase.value, message, warning=phase is Phase.FAILED)
        return out

    try:
        spec = CompilationJobSpec.model_validate(cj.get("spec") or {})
        inputs = spec.input_config.parsed_inputs()
    except ValidationError as err:
        return move(Phase.FAILED, failureReason=f"InvalidSpec: {describe(err)}")
    except DataInputConfigError as err:
        return move(Phase.FAILED, failureReason=f"{err.reason}: {err}")

    conditions = set_condition(
        status.get("conditions"), "Validated", True, "SpecValid", "; ".join(inputs.warnings), generation
    )
    job_name = compiler_job_name(meta["name"])
    job = kube.get("batch/v1", "Job", job_name, meta["namespace"])
    if job is not None and not _owned_by(job, meta["uid"]):
        owners = dig(job, "metadata", "ownerReferences", default=[]) or []
        if any(o.get("kind") == "CompilationJob" for o in owners):
            # A CompilationJob deleted and applied again under the same name: its old Job is
            # still being garbage-collected. Never read that Job's outcome as this one's.
            out.status.update(phase=Phase.STARTING.value, observedGeneration=generation, conditions=conditions)
            out.retry_after, out.retry_reason = 5, f"Job {job_name} of an earlier CompilationJob is being deleted"
            return out
        return move(Phase.FAILED, failureReason=f"JobNameTaken: Job {job_name} exists and is not this job's")

    if job is None:
        if spec.stop:
            return move(Phase.STOPPED, conditions=conditions)
        target_name, target, problem = _resolve_target(spec, kube)
        if problem:
            reason, message, retry = problem
            out.status.update(
                conditions=set_condition(conditions, "Validated", False, reason, message, generation),
                observedGeneration=generation,
                phase=Phase.STARTING.value,
            )
            if retry:
                out.retry_after, out.retry_reason = TARGET_RETRY_SECONDS, message
                return out
            return move(Phase.FAILED, failureReason=f"{reason}: {message}")
        _, created = kube.create(compiler_job(cj, spec, target_name, target, cfg))
        if created:
            out.event("CompilerJobCreated", f"created Job {job_name}")
        return move(
            Phase.STARTING,
            conditions=conditions,
            compilerJobName=job_name,
            compilationStartTime=status.get("compilationStartTime") or now(),
        )

    finished = job_condition(job, "Complete") or job_condition(job, "Failed")
    if spec.stop and not finished:
        if not dig(job, "metadata", "deletionTimestamp"):
            # Foreground: the Job stays (being deleted) until its pods are gone, so
            # Stopped is only reported once nothing runs any more.
            kube.delete("batch/v1", "Job", job_name, meta["namespace"], propagation="Foreground")
        return move(Phase.STOPPING, conditions=conditions)

    pods = [
        p
        for p in kube.list("v1", "Pod", meta["namespace"], {COMPILATION_JOB_LABEL: meta["name"]})
        if _owned_by(p, dig(job, "metadata", "uid"))
    ]
    pods.sort(key=lambda p: dig(p, "metadata", "creationTimestamp", default=""))
    if job_condition(job, "Complete"):
        result = _result(pods)
        if not isinstance(result, CompilerResult):
            reason = result or "ResultMissing: the compiler finished without reporting an artifact"
            return move(Phase.FAILED, conditions=conditions, failureReason=reason)
        model_name = _publish_model(cj, spec, result, kube)
        out.event("CompiledModelReady", f"CompiledModel {model_name} points at {result.artifact.uri}")
        # Never a slower model unannounced: say how it compares with the framework's own runtime.
        if result.latency and (verdict := result.latency.versus_reference()):
            faster, message = verdict
            reason = "FasterThanReference" if faster else "SlowerThanReference"
            conditions = set_condition(conditions, "FasterThanReference", faster, reason, message, generation)
            if not faster:
                out.event(reason, message, warning=True)
        return move(
            Phase.COMPLETED, conditions=conditions, artifact=result.artifact.wire(), compiledModelName=model_name
        )
    if failed := job_condition(job, "Failed"):
        return move(Phase.FAILED, conditions=conditions, failureReason=_failure_reason(failed, pods, spec))
    # Once a compiler pod has started, the job is in progress until its Job ends: a pod that
    # has finished before the Job controller has counted it, or a retry's pod still
    # pending, does not take the phase back to Starting.
    started = any(dig(p, "status", "phase") in ("Running", "Succeeded", "Failed") for p in pods)
    if started or status.get("phase") == Phase.IN_PROGRESS.value:
        running = [p for p in pods if dig(p, "status", "phase") == "Running"]
        if running and (line := _progress(kube, running[-1])):
            return move(Phase.IN_PROGRESS, conditions=conditions, progress=line)
        return move(Phase.IN_PROGRESS, conditions=conditions)
    return move(Phase.STARTING, conditions=conditions, compilerJobName=job_name)


def _resolve_target(spec: CompilationJobSpec, kube: Kube):
    """(name, spec, None), or (None, None, (reason, message, retry)) when it cannot be used."""
    name = spec.output_config.target_device
    if name is None:
        return None, None, None  # an inline platform: any node compiles it
    obj = kube.get(HARDWARE_TARGET.api_version, HARDWARE_TARGET.kind, name)
    if obj is None:
        # GitOps tools apply objects in any order: wait for the target instead of failing.
        return None, None, ("HardwareTargetNotFound", f"HardwareTarget '{name}' does not exist (yet)", True)
    try:
        return name, HardwareTargetSpec.model_validate(obj.get("spec") or {}), None
    except ValidationError as err:
        return None, None, ("InvalidHardwareTarget", f"HardwareTarget '{name}': {describe(err)}", False)


def _owned_by(obj: dict, uid: str | None) -> bool:
    return any(o.get("uid") == uid for o in dig(obj, "metadata", "ownerReferences", default=[]) or [])


def _result(pods: list[dict]) -> CompilerResult | str | None:
    for pod in reversed(pods):
        if dig(pod, "status", "phase") == "Succeeded":
            return parse_termination_message(terminated(pod, COMPILER_CONTAINER).get("message"))
    return None


def _failure_reason(failed: dict, pods: list[dict], spec: CompilationJobSpec) -> str:
    if failed.get("reason") == "DeadlineExceeded":
        limit = spec.stopping_condition.max_runtime_in_seconds
        return f"MaxRuntimeExceeded: compilation ran longer than stoppingCondition.maxRuntimeInSeconds ({limit} s)"
    for pod in reversed(pods):
        term = terminated(pod, COMPILER_CONTAINER)
        if not term:
            continue
        message = parse_termination_message(term.get("message"))
        if isinstance(message, str):
            return message
        return (
            f"CompilerPodFailed: the compiler container ended with {term.get('reason') or 'an error'} "
            f"(exit code {term.get('exitCode')})"
        )
    return f"CompilerPodFailed: {failed.get('reason', 'Failed')}: {failed.get('message', 'the compiler Job failed')}"


def _progress(kube: Kube, pod: dict) -> str | None:
    """The compiler's latest step, from the progress lines it writes to its log."""
    log = kube.pod_log(pod["metadata"]["name"], pod["metadata"]["namespace"], COMPILER_CONTAINER)
    steps = [ln.removeprefix(PROGRESS_PREFIX) for ln in (log or "").splitlines() if ln.startswith(PROGRESS_PREFIX)]
    return steps[-1].strip()[:512] if steps else None


def _publish_model(cj: dict, spec: CompilationJobSpec, result: CompilerResult, kube: Kube) -> str:
    """Create or update the CompiledModel. Not owned by the job: it outlives it."""
    meta = cj["metadata"]
    name = spec.output_config.compiled_model_name or meta["name"]
    target = spec.output_config.target_device or spec.output_config.target_platform.name
    model_spec = {
        "artifact": {
            "uri": result.artifact.uri,
            "sha256": result.artifact.sha256,
            "sizeBytes": result.artifact.size_bytes,
        },
        "target": target,
        "framework": spec.input_config.framework.value,
        "precision": result.precision.value,
        "inputs": [t.wire() for t in result.inputs],
        "outputs": [t.wire() for t in result.outputs],
        "sourceJob": meta["name"],
    }
    if result.latency:
        model_spec["latency"] = result.latency.wire()
    model_meta = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {
            **MANAGED_BY,
            COMPILATION_JOB_LABEL: meta["name"],
            **{k: v for k, v in (meta.get("labels") or {}).items() if k == RECOMMENDATION_LABEL},
        },
    }
    # A job a recommendation made compiles a variant for it: the model goes when the recommendation does.
    if owners := [o for o in meta.get("ownerReferences") or [] if o.get("kind") == INFERENCE_RECOMMENDATION.kind]:
        model_meta["ownerReferences"] = owners
    kube.apply({"apiVersion": API_VERSION, "kind": COMPILED_MODEL.kind, "metadata": model_meta, "spec": model_spec})
    return name


# --- kopf wiring -------------------------------------------------------------------------

reconcile_on_changes(COMPILATION_JOB.crd_name, sync)


@kopf.on.event("batch", "v1", "jobs", labels={COMPILATION_JOB_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={COMPILATION_JOB_LABEL: kopf.PRESENT})
def compiler_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A compiler Job or pod moved: bring its CompilationJob's status along."""
    meta = body["metadata"]
    cj = memo.kube.get(API_VERSION, COMPILATION_JOB.kind, meta["labels"][COMPILATION_JOB_LABEL], meta["namespace"])
    if cj is not None:
        resync(cj, memo, sync)


def _running(status: kopf.Status, **_) -> bool:
    return status.get("phase") == Phase.IN_PROGRESS.value


@kopf.timer(COMPILATION_JOB.crd_name, interval=PROGRESS_SECONDS, when=_running)
def follow_progress(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A compile's log moves on without any event: read it every few seconds while it runs."""
    resync(dict(body), memo, sync)
