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

from kompile.api.recommendation import Recommendation


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
