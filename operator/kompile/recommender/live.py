"""Continuous recommendations for a live InferenceEndpoint, from its own Prometheus figures.

Replicas: enough that the window's peak CPU use runs at the target utilisation of the pods'
CPU (limit, else request). No successful request in the window: one replica. A cheaper way
to serve the same model: the best row of a finished InferenceRecommendation of the same
source model, when it costs less per inference than this endpoint did at its peak.
"""

from __future__ import annotations

import math

from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.inferenceendpoint import CheaperOption, ContinuousRecommendation, LiveRecommendation
from kompile.recommender.cost import cost_per_hour, cost_per_inference, per_pod
from kompile.recommender.prometheus import EndpointFigures


def recommend(
    figures: EndpointFigures,
    current_replicas: int,
    resources: dict,
    target: HardwareTargetSpec,
    settings: ContinuousRecommendation,
    time: str,
) -> LiveRecommendation:
    cpu = per_pod(resources, "cpu")
    aim = settings.target_utilization_percentage
    peak_cpu = figures.peak_cpu_cores
    utilization = None
    if figures.max_invocations <= 0:
        replicas, reason = 1, "no successful request in the window: one replica keeps the endpoint served"
    elif peak_cpu is None or not cpu or not current_replicas:
        replicas, reason = current_replicas, "no CPU figures to size by (the pods set no CPU limit or request)"
    else:
        utilization = round(100 * peak_cpu / (current_replicas * cpu), 1)
        # A hair under a whole replica is still that replica: no flapping on rounding.
        replicas = max(1, math.ceil(peak_cpu / (cpu * aim / 100) - 1e-6))
        reason = (
            f"the peak used {peak_cpu:.2f} cores, {utilization}% of {current_replicas} x {cpu:g} CPU; "
            f"{replicas} replica(s) serve it at or below {aim}%"
        )
    now_per_hour = cost_per_hour(current_replicas, target.cost_per_hour)
    return LiveRecommendation(
        time=time,
        window_seconds=settings.window_seconds,
        current_replicas=current_replicas,
        replicas=replicas,
        reason=reason,
        peak_invocations=round(figures.max_invocations, 3),
        model_latency=None if figures.latency_ms is None else round(figures.latency_ms, 3),
        peak_cpu_utilization=utilization,
        cost_per_hour=now_per_hour,
        recommended_cost_per_hour=cost_per_hour(replicas, target.cost_per_hour),
        cost_per_inference=cost_per_inference(now_per_hour, figures.max_invocations),
    )


def cheaper_option(recommendations: list[dict], source_uri: str | None, current: float | None) -> CheaperOption | None:
    """The cheapest measured row, among finished recommendations of the same source model,
    that beats the endpoint's own cost per inference (any row does when that is unknown)."""
    best: CheaperOption | None = None
    for rec in recommendations:
        status = rec.get("status") or {}
        if not source_uri or (rec.get("spec") or {}).get("inputConfig", {}).get("s3Uri") != source_uri:
            continue
        if status.get("phase") != "Completed":
            continue
        for row in status.get("recommendations") or []:
            cpi = row.get("costPerInference")
            if cpi is None or (current is not None and cpi >= current) or (best and cpi >= best.cost_per_inference):
                continue
            best = CheaperOption(
                recommendation=rec["metadata"]["name"],
                endpoint_name=row["endpointName"],
                hardware_target=row["hardwareTarget"],
                inference_specification_name=row.get("inferenceSpecificationName"),
                cost_per_inference=cpi,
            )
    return best
