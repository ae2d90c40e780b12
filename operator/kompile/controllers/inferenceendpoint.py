"""InferenceEndpoint controller: a Deployment, Service and (optional) HPA on the model's pool."""

from __future__ import annotations

import time

import kopf
from pydantic import ValidationError

from kompile.api import API_VERSION, COMPILATION_JOB, COMPILED_MODEL, HARDWARE_TARGET, INFERENCE_ENDPOINT
from kompile.api.compiledmodel import CompiledModelSpec
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.inferenceendpoint import InferenceEndpointSpec
from kompile.api.recommendation import INFERENCE_RECOMMENDATION
from kompile.config import OperatorConfig
from kompile.controllers.conditions import now, seconds_since, set_condition
from kompile.controllers.reconcile import Outcome, reconcile_on_changes, resync
from kompile.controllers.validation import describe
from kompile.kube import Kube, dig
from kompile.manifests import DIGEST_ANNOTATION, INFERENCE_ENDPOINT_LABEL
from kompile.manifests.serving import autoscaler, deployment, endpoint_url, service, serving_name
from kompile.recommender import live
from kompile.recommender.prometheus import Prometheus, PrometheusError, Window

RETRY_SECONDS = 15
# autoscaling/v2 from Kubernetes 1.23; v2beta2 before (and until 1.26).
HPA_VERSIONS = ("v2", "v2beta2")


def sync(ie: dict, kube: Kube, cfg: OperatorConfig) -> Outcome:
    meta = ie["metadata"]
    generation = meta.get("generation")
    status = ie.get("status") or {}
    out = Outcome()

    def not_ready(reason: str, message: str, retry: bool) -> Outcome:
        out.status = {
            "observedGeneration": generation,
            "conditions": set_condition(status.get("conditions"), "Ready", False, reason, message, generation),
        }
        if _ready_reason(status) != reason:
            out.event(reason, message, warning=True)
        if retry:
            out.retry_after, out.retry_reason = RETRY_SECONDS, message
        return out

    try:
        spec = InferenceEndpointSpec.model_validate(ie.get("spec") or {})
    except ValidationError as err:
        return not_ready("InvalidSpec", describe(err), retry=False)

    model_obj = kube.get(API_VERSION, COMPILED_MODEL.kind, spec.compiled_model_name, meta["namespace"])
    if model_obj is None:
        return not_ready(
            "CompiledModelNotFound", f"CompiledModel '{spec.compiled_model_name}' does not exist (yet)", True
        )
    try:
        model = CompiledModelSpec.model_validate(model_obj.get("spec") or {})
    except ValidationError as err:
        return not_ready("InvalidCompiledModel", describe(err), retry=False)

    target_name = spec.hardware_target or model.target
    target_obj = kube.get(HARDWARE_TARGET.api_version, HARDWARE_TARGET.kind, target_name)
    if target_obj is None:
        return not_ready("HardwareTargetNotFound", f"HardwareTarget '{target_name}' does not exist (yet)", True)
    try:
        target = HardwareTargetSpec.model_validate(target_obj.get("spec") or {})
    except ValidationError as err:
        return not_ready("InvalidHardwareTarget", f"HardwareTarget '{target_name}': {describe(err)}", False)

    # Clients call /v2/models/<endpoint name>: the URL outlives every CompiledModel it serves.
    live = kube.apply(deployment(ie, spec, ie["metadata"]["name"], model, target, cfg))
    kube.apply(service(ie, cfg))
    hpa_version = kube.served_version("autoscaling", "HorizontalPodAutoscaler", HPA_VERSIONS)
    if (hpa := autoscaler(ie, spec, hpa_version)) is not None:
        kube.apply(hpa)
    else:
        kube.delete(hpa_version, "HorizontalPodAutoscaler", serving_name(meta["name"]), meta["namespace"])
    out.status = endpoint_status(ie, live, cfg)
    return out


def _ready_reason(status: dict) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("reason")
    return None


def endpoint_status(ie: dict, dep: dict, cfg: OperatorConfig) -> dict:
    """The endpoint's status, read off its Deployment."""
    generation = ie["metadata"].get("generation")
    conditions = (ie.get("status") or {}).get("conditions")
    desired = dig(dep, "spec", "replicas", default=0)
    ready = dig(dep, "status", "readyReplicas", default=0) or 0
    updated = dig(dep, "status", "updatedReplicas", default=0) or 0
    total = dig(dep, "status", "replicas", default=0) or 0
    rolled_out = (
        dig(dep, "status", "observedGeneration", default=0) >= dig(dep, "metadata", "generation", default=0)
        and updated == desired
        and total == desired
        and ready == desired
    )
    digest = dig(dep, "spec", "template", "metadata", "annotations", DIGEST_ANNOTATION)
    status = {
        "observedGeneration": generation,
        "deploymentName": dep["metadata"]["name"],
        "replicas": total,
        "readyReplicas": ready,
        "url": endpoint_url(ie, cfg),
    }
    if rolled_out and ready > 0:
        # Only when every replica runs the new template is its digest the one served.
        status["servedDigest"] = digest
    conditions = set_condition(
        conditions,
        "RolloutComplete",
        rolled_out,
        "RolloutComplete" if rolled_out else "RollingOut",
        f"{updated}/{desired} replicas updated, {ready} ready",
        generation,
    )
    conditions = set_condition(
        conditions,
        "Ready",
        ready > 0,
        "MinimumReplicasAvailable" if ready > 0 else "NoReadyReplicas",
        f"{ready} of {desired} replicas ready",
        generation,
    )
    status["conditions"] = conditions
    return status


# --- kopf wiring -------------------------------------------------------------------------

reconcile_on_changes(INFERENCE_ENDPOINT.crd_name, sync)


@kopf.on.event("apps", "v1", "deployments", labels={INFERENCE_ENDPOINT_LABEL: kopf.PRESENT})
def deployment_changed(body: kopf.Body, memo: kopf.Memo, type: str | None, **_) -> None:
    meta = body["metadata"]
    ie = memo.kube.get(
        API_VERSION, INFERENCE_ENDPOINT.kind, meta["labels"][INFERENCE_ENDPOINT_LABEL], meta["namespace"]
    )
    if ie is None or type == "DELETED":
        return
    memo.kube.patch_status(
        API_VERSION,
        INFERENCE_ENDPOINT.kind,
        ie["metadata"]["name"],
        meta["namespace"],
        endpoint_status(ie, dict(body), memo.config),
    )


@kopf.on.update(COMPILED_MODEL.crd_name, field="spec")
@kopf.on.create(COMPILED_MODEL.crd_name)
def model_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A new artifact (or a model that endpoints were waiting for): re-reconcile its endpoints."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for ie in memo.kube.list(API_VERSION, INFERENCE_ENDPOINT.kind, ns):
        if dig(ie, "spec", "compiledModelName") == name:
            resync(ie, memo, sync)


# --- continuous recommendations ------------------------------------------------------------

RECOMMEND_CHECK_SECONDS = 15  # how often endpoints are checked for a recommendation that is due


def _recommending(spec: kopf.Spec, **_) -> bool:
    return bool(spec.get("recommendation"))


@kopf.timer(INFERENCE_ENDPOINT.crd_name, interval=RECOMMEND_CHECK_SECONDS, when=_recommending)
def recommend_live(body: kopf.Body, memo: kopf.Memo, logger, **_) -> None:
    """Every spec.recommendation.intervalSeconds: right-size from the endpoint's own metrics."""
    ie = dict(body)
    try:
        spec = InferenceEndpointSpec.model_validate(ie.get("spec") or {})
    except ValidationError:
        return  # the endpoint's own reconcile reports an invalid spec
    settings = spec.recommendation
    last = dig(ie, "status", "recommendation", "time")
    if last and seconds_since(last) < settings.interval_seconds:
        return
    if not memo.config.prometheus_url:
        logger.warning("no Prometheus configured (Helm value prometheus.url): no recommendation for this endpoint")
        return
    kube, meta = memo.kube, ie["metadata"]
    model = kube.get(API_VERSION, COMPILED_MODEL.kind, spec.compiled_model_name, meta["namespace"])
    dep = kube.get("apps/v1", "Deployment", serving_name(meta["name"]), meta["namespace"])
    if model is None or dep is None:
        return
    target_name = spec.hardware_target or dig(model, "spec", "target")
    target_obj = kube.get(HARDWARE_TARGET.api_version, HARDWARE_TARGET.kind, target_name)
    if target_obj is None:
        return
    end = time.time()
    try:
        figures = Prometheus(memo.config.prometheus_url).endpoint_figures(
            meta["namespace"], meta["name"], Window(end - settings.window_seconds, end), 0.95
        )
    except PrometheusError as err:
        logger.warning("no recommendation: %s", err)
        return
    containers = dig(dep, "spec", "template", "spec", "containers", default=[]) or [{}]
    current = dig(dep, "spec", "replicas", default=0) or 0
    found = live.recommend(
        figures,
        current,
        containers[0].get("resources") or {},
        HardwareTargetSpec.model_validate(target_obj.get("spec") or {}),
        settings,
        now(),
    )
    source_job = kube.get(API_VERSION, COMPILATION_JOB.kind, dig(model, "spec", "sourceJob") or "-", meta["namespace"])
    found.cheaper_option = live.cheaper_option(
        kube.list(API_VERSION, INFERENCE_RECOMMENDATION.kind, meta["namespace"]),
        dig(source_job, "spec", "inputConfig", "s3Uri"),
        found.cost_per_inference,
    )
    if settings.apply and spec.autoscaling is None and found.replicas != spec.replicas:
        # The user opted in: the spec changes, and the endpoint's own reconcile scales the Deployment.
        kube.patch(
            API_VERSION,
            INFERENCE_ENDPOINT.kind,
            meta["name"],
            meta["namespace"],
            {"spec": {"replicas": found.replicas}},
        )
        found.applied = True
        kopf.event(
            ie,
            type="Normal",
            reason="ReplicasRightSized",
            message=f"replicas {spec.replicas} -> {found.replicas}: {found.reason}",
        )
    kube.patch_status(
        API_VERSION, INFERENCE_ENDPOINT.kind, meta["name"], meta["namespace"], {"recommendation": found.wire()}
    )
