"""From measurements to the ranked table.

CostPerHour is the replicas times the pool's price per node-hour. MaxInvocations is the
highest rate, in successful requests per minute, that the endpoint sustained during its load
test (the load test stops raising load at the latency threshold). CostPerInference is what one
request costs at that rate: CostPerHour / (MaxInvocations x 60). Rows are ranked by it, cheapest
first, ties by latency; a row is Pareto-optimal when no other row is both at most as costly per
inference and at most as slow, and strictly better in one.
"""

from __future__ import annotations

from collections.abc import Iterable

from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.recommendation import LoadTest, Recommendation, Variant
from kompile.recommender.prometheus import EndpointFigures


def cost_per_hour(instance_count: int, price_per_node_hour: float | None) -> float | None:
    return None if price_per_node_hour is None else instance_count * price_per_node_hour


def cost_per_inference(cost_per_hour: float | None, max_invocations_per_minute: float) -> float | None:
    if cost_per_hour is None or max_invocations_per_minute <= 0:
        return None  # no price, or nothing served: no cost per inference to speak of
    return cost_per_hour / (max_invocations_per_minute * 60)


def _dominates(a: Recommendation, b: Recommendation) -> bool:
    if a.cost_per_inference is None or b.cost_per_inference is None:
        return False
    no_worse = a.cost_per_inference <= b.cost_per_inference and a.model_latency <= b.model_latency
    better = a.cost_per_inference < b.cost_per_inference or a.model_latency < b.model_latency
    return no_worse and better


def rank(rows: Iterable[Recommendation]) -> list[Recommendation]:
    """Cheapest per inference first (rows without a price last), each marked Pareto-optimal or not."""
    rows = list(rows)
    marked = [
        r.model_copy(
            update={"pareto_optimal": r.cost_per_inference is not None and not any(_dominates(o, r) for o in rows)}
        )
        for r in rows
    ]
    return sorted(
        marked,
        key=lambda r: (r.cost_per_inference is None, r.cost_per_inference or 0.0, r.model_latency, r.endpoint_name),
    )


def per_pod(resources: dict, name: str) -> float | None:
    """A container's limit for `name` (else its request), in cores or bytes."""
    from kubernetes.utils.quantity import parse_quantity

    for kind in ("limits", "requests"):
        if (value := (resources.get(kind) or {}).get(name)) is not None:
            return float(parse_quantity(value))
    return None


def measured_row(
    test: LoadTest, figures: EndpointFigures, target: HardwareTargetSpec, resources: dict
) -> Recommendation:
    """One test's row: its Prometheus figures, priced by its pool and its replica count.

    CPU and memory utilisation are against what the pods may use: their limit, else their request.
    """
    count = test.instance_count
    per_hour = cost_per_hour(count, target.cost_per_hour)
    cpu, memory = per_pod(resources, "cpu"), per_pod(resources, "memory")
    return Recommendation(
        endpoint_name=test.endpoint_name,
        hardware_target=test.hardware_target,
        instance_type=target.instance_type,
        initial_instance_count=count,
        cost_per_hour=per_hour,
        cost_per_inference=cost_per_inference(per_hour, figures.max_invocations),
        max_invocations=round(figures.max_invocations),
        model_latency=round(figures.latency_ms or 0.0, 3),
        inference_specification_name=None
        if test.variant is Variant.UNCOMPILED
        else test.compilation_job or test.compiled_model,
        cpu_utilization=_percent(figures.cpu_cores, cpu and cpu * count),
        memory_utilization=_percent(figures.memory_bytes, memory and memory * count),
        model_setup_time=None if figures.setup_seconds is None else round(figures.setup_seconds, 3),
    )


def _percent(used: float | None, available: float | None) -> float | None:
    return None if used is None or not available else round(100 * used / available, 2)
