"""The recommender's arithmetic, checked against the seed's own table (Inference Recommender with Neo)."""

import pytest

from kompile.api.recommendation import Recommendation
from kompile.recommender.cost import cost_per_hour, cost_per_inference, rank

# The seed's example rows: instance type, price per hour, MaxInvocations, ModelLatency, compiled by,
# and the CostPerInference it prints.
SEED = [
    ("ml.c5.9xlarge", 1.836, 33456, 7, None, 9.15e-07),
    ("ml.c5.2xlarge", 0.408, 32211, 21, None, 2.11e-07),
    ("ml.c5.xlarge", 0.204, 18276, 92, None, 1.86e-07),
    ("ml.c5.xlarge", 0.204, 21286, 42, "neo-00011122-2333-4445-5566-677788899900", 1.60e-07),
]


def rows():
    return [
        Recommendation(
            endpoint_name=f"ep-{i}",
            hardware_target=kind,
            instance_type=kind,
            initial_instance_count=1,
            cost_per_hour=cost_per_hour(1, price),
            cost_per_inference=cost_per_inference(cost_per_hour(1, price), invocations),
            max_invocations=invocations,
            model_latency=latency,
            inference_specification_name=compiled,
        )
        for i, (kind, price, invocations, latency, compiled, _) in enumerate(SEED)
    ]


@pytest.mark.parametrize("kind, price, invocations, latency, compiled, printed", SEED)
def test_cost_per_inference_reproduces_the_seed(kind, price, invocations, latency, compiled, printed):
    assert cost_per_inference(price, invocations) == pytest.approx(printed, rel=5e-3)


def test_ranked_by_cost_per_inference_the_compiled_row_first():
    ranked = rank(rows())
    assert [r.endpoint_name for r in ranked] == ["ep-3", "ep-2", "ep-1", "ep-0"]
    assert ranked[0].inference_specification_name.startswith("neo-")


def test_pareto_front_keeps_the_rows_no_other_beats_on_both():
    front = {r.endpoint_name for r in rank(rows()) if r.pareto_optimal}
    # ep-2 (uncompiled c5.xlarge) is both dearer and slower than the compiled one on the same type.
    assert front == {"ep-0", "ep-1", "ep-3"}


def test_no_price_or_no_traffic_gives_no_cost_and_ranks_last():
    assert cost_per_hour(3, None) is None
    assert cost_per_inference(0.2, 0) is None
    unpriced = Recommendation(
        endpoint_name="ep-free", hardware_target="x", initial_instance_count=2, max_invocations=100, model_latency=5
    )
    ranked = rank([unpriced, *rows()])
    assert ranked[-1].endpoint_name == "ep-free" and not ranked[-1].pareto_optimal
    assert cost_per_hour(3, 0.154) == pytest.approx(0.462)
