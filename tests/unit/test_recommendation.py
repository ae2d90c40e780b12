"""InferenceRecommendation: the spec's rules, the plan it makes, a test's row, the report."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.inferenceendpoint import ContinuousRecommendation
from kompile.api.recommendation import InferenceRecommendationSpec, LoadTest, Variant
from kompile.recommender import live, plan
from kompile.recommender.cost import measured_row, rank
from kompile.recommender.prometheus import EndpointFigures
from kompile.recommender.report import ReportRequest, render
from tests.unit.test_recommender_cost import rows as seed_rows

SPEC = {
    "inputConfig": {
        "s3Uri": "s3://models/squeezenet.onnx",
        "framework": "ONNX",
        "dataInputConfig": {"data_0": [1, 3, 224, 224]},
    },
    "outputConfig": {"s3OutputLocation": "s3://kompile-artifacts/recommendations"},
    "endpointConfigurations": [
        {"hardwareTarget": "x86-avx2"},
        {"hardwareTarget": "x86-avx512", "instanceCounts": [1, 2]},
    ],
    "trafficPattern": {"phases": [{"initialNumberOfUsers": 1, "spawnRate": 30, "durationInSeconds": 60}]},
    "stoppingConditions": {"modelLatencyThresholds": [{"percentile": "P95", "valueInMilliseconds": 500}]},
    "credentialsSecretName": "kompile-s3",
}
REC = {
    "apiVersion": "kompile.dev/v1alpha1",
    "kind": "InferenceRecommendation",
    "metadata": {"name": "squeezenet", "namespace": "ml", "uid": "u-1"},
}


def spec(**changes) -> InferenceRecommendationSpec:
    return InferenceRecommendationSpec.model_validate({**SPEC, **changes})


def test_the_plan_tests_compiled_and_uncompiled_on_every_pool_and_count():
    tests = plan.plan("squeezenet", spec())
    assert [(t.variant.value, t.hardware_target, t.instance_count) for t in tests] == [
        ("compiled", "x86-avx2", 1),
        ("uncompiled", "x86-avx2", 1),
        ("compiled", "x86-avx512", 1),
        ("compiled", "x86-avx512", 2),
        ("uncompiled", "x86-avx512", 1),
        ("uncompiled", "x86-avx512", 2),
    ]
    assert tests[0].endpoint_name == "squeezenet-c-x86-avx2-1"
    assert tests[0].compilation_job == "squeezenet-compile-x86-avx2"
    assert {t.compilation_job for t in tests if t.variant is Variant.UNCOMPILED} == {"squeezenet-uncompiled"}
    assert plan.plan("squeezenet", spec(includeUncompiled=False)) == [t for t in tests if t.variant is Variant.COMPILED]


def test_names_stay_kubernetes_labels_for_long_recommendation_names():
    for test in plan.plan("r" * 80, spec()):
        assert len(test.endpoint_name) <= 63 and len(test.compilation_job) <= 63


def test_compilation_jobs_are_owned_and_one_packages_the_model_uncompiled():
    jobs = {j["metadata"]["name"]: j for j in plan.compilation_jobs(REC, spec())}
    assert set(jobs) == {"squeezenet-compile-x86-avx2", "squeezenet-compile-x86-avx512", "squeezenet-uncompiled"}
    uncompiled = jobs["squeezenet-uncompiled"]["spec"]
    assert uncompiled["outputConfig"]["uncompiled"] is True
    assert uncompiled["outputConfig"]["s3OutputLocation"] == (
        "s3://kompile-artifacts/recommendations/squeezenet/squeezenet-uncompiled/"
    )
    assert uncompiled["credentialsSecretName"] == "kompile-s3"
    for job in jobs.values():
        assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
        assert job["metadata"]["labels"]["kompile.dev/recommendation"] == "squeezenet"


def test_plans_beyond_the_spec_own_limits_are_refused_with_the_numbers():
    six = plan.plan("s", spec())
    assert plan.problem(spec(), six) is None
    reason, message = plan.problem(spec(resourceLimit={"maxNumberOfTests": 4}), six)
    assert (reason, message) == ("TooManyTests", "the plan has 6 load tests, resourceLimit.maxNumberOfTests allows 4")
    reason, message = plan.problem(spec(jobDurationInSeconds=600), six)
    assert reason == "JobDurationTooShort"
    assert message == "6 tests of 60 s of traffic, 1 at a time, need at least 720 s; jobDurationInSeconds is 600"


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"endpointConfigurations": [{"hardwareTarget": "a"}, {"hardwareTarget": "a"}]},
            "names a hardwareTarget twice",
        ),
        ({"endpointConfigurations": [{"hardwareTarget": "a", "instanceCounts": [0]}]}, "between 1 and 100"),
        ({"endpointConfigurations": [{"hardwareTarget": "a", "instanceCounts": [2, 2]}]}, "repeats a count"),
        ({"endpointConfigurations": []}, "at least 1 item"),
        ({"inputConfig": {**SPEC["inputConfig"], "framework": "PYTORCH"}}, "set includeUncompiled to false"),
        ({"stoppingConditions": {"modelLatencyThresholds": [{"percentile": "P42", "valueInMilliseconds": 5}]}}, "P95"),
        (
            {"stoppingConditions": {"modelLatencyThresholds": [{"valueInMilliseconds": 0}]}},
            "greater than or equal to 1",
        ),
        ({"trafficPattern": {"phases": []}}, "at least 1 item"),
    ],
)
def test_bad_specs_name_the_problem(changes, expected):
    with pytest.raises(ValidationError, match=expected):
        spec(**changes)


def test_a_row_prices_the_measured_rate_and_relates_usage_to_the_limits():
    test = LoadTest(
        endpoint_name="s-c-x86-avx512-2",
        variant=Variant.COMPILED,
        hardware_target="x86-avx512",
        instance_count=2,
        compilation_job="s-compile-x86-avx512",
    )
    target = HardwareTargetSpec.model_validate(
        {"platform": {"arch": "x86_64"}, "tvm": {"kind": "llvm"}, "instanceType": "c7i.large", "costPerHour": 0.09}
    )
    figures = EndpointFigures(
        max_invocations=1200.4,
        latency_ms=41.23456,
        cpu_cores=1.5,
        peak_cpu_cores=1.8,
        memory_bytes=2**30,
        setup_seconds=3.21,
    )
    resources = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    row = measured_row(test, figures, target, resources)
    assert row.cost_per_hour == pytest.approx(0.18)
    assert row.cost_per_inference == pytest.approx(0.18 / (1200.4 * 60))
    assert (row.max_invocations, row.model_latency, row.model_setup_time) == (1200, 41.235, 3.21)
    assert row.cpu_utilization == 75.0  # 1.5 cores of 2 x 1 core
    assert row.memory_utilization == 50.0  # 1 GiB of 2 x 1 GiB
    assert row.inference_specification_name == "s-compile-x86-avx512"
    uncompiled = measured_row(test.model_copy(update={"variant": Variant.UNCOMPILED}), figures, target, {})
    assert uncompiled.inference_specification_name is None and uncompiled.cpu_utilization is None


def test_the_report_plots_every_priced_row_and_joins_the_pareto_front():
    ranked = rank(seed_rows())
    page = render(ReportRequest(uri="s3://b/r/", title="squeezenet", percentile="P95", rows=ranked))
    assert page.count("<circle") == 4
    assert page.count('fill="#d62728"><title>') == 3  # the three Pareto-optimal rows
    assert "<polyline" in page
    assert page.index("ep-3</td>") < page.index("ep-0</td>")  # the table keeps the ranking
    assert "<th>CostPerInference</th>" in page and "<th>InferenceSpecificationName</th>" in page


def test_kompile_recommendations_prints_the_ranked_table(tmp_path, capsys):
    from kompile.cli import main

    ranked = rank(seed_rows())
    obj = {
        **REC,
        "status": {
            "phase": "Completed",
            "recommendations": [r.wire() for r in ranked],
            "reportUri": "s3://b/r/report.html",
        },
    }
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert main(["recommendations", "squeezenet", "-f", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "squeezenet: Completed"
    assert lines[1].split()[:2] == ["EndpointName", "InstanceType"]
    assert lines[2].split()[0] == "ep-3" and "neo-00011122" in lines[2]
    assert lines[-1] == "report: s3://b/r/report.html"


# --- continuous recommendations for a live endpoint ---------------------------------------

LIVE = ContinuousRecommendation(target_utilization_percentage=60)
POOL = HardwareTargetSpec.model_validate({"platform": {"arch": "x86_64"}, "tvm": {"kind": "llvm"}, "costPerHour": 0.2})
ONE_CPU = {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}


def live_figures(invocations: float, peak_cpu: float | None) -> EndpointFigures:
    return EndpointFigures(
        max_invocations=invocations,
        latency_ms=12.5,
        cpu_cores=None,
        peak_cpu_cores=peak_cpu,
        memory_bytes=None,
        setup_seconds=None,
    )


@pytest.mark.parametrize(
    "current, peak_cpu, replicas",
    [(4, 0.9, 2), (2, 1.8, 3), (3, 1.2, 2), (1, 0.6, 1), (1, 0.05, 1)],
)
def test_replicas_serve_the_peak_at_the_target_utilization(current, peak_cpu, replicas):
    found = live.recommend(live_figures(600, peak_cpu), current, ONE_CPU, POOL, LIVE, "2026-11-23T10:00:00Z")
    assert found.replicas == replicas
    assert found.peak_cpu_utilization == pytest.approx(100 * peak_cpu / current, abs=0.1)
    assert found.cost_per_hour == pytest.approx(0.2 * current)
    assert found.recommended_cost_per_hour == pytest.approx(0.2 * replicas)
    assert found.cost_per_inference == pytest.approx(0.2 * current / (600 * 60))


def test_an_idle_endpoint_needs_one_replica_and_no_cpu_figures_change_nothing():
    idle = live.recommend(live_figures(0, 0.01), 3, ONE_CPU, POOL, LIVE, "t")
    assert idle.replicas == 1 and "no successful request" in idle.reason and idle.cost_per_inference is None
    unsized = live.recommend(live_figures(600, 1.0), 3, {}, POOL, LIVE, "t")
    assert unsized.replicas == 3 and "no CPU figures" in unsized.reason


def test_a_cheaper_option_comes_from_a_finished_recommendation_of_the_same_model():
    ranked = [r.wire() for r in rank(seed_rows())]

    def rec(name, uri, phase):
        return {
            "metadata": {"name": name},
            "spec": {"inputConfig": {"s3Uri": uri}},
            "status": {"phase": phase, "recommendations": ranked},
        }

    recs = [
        rec("other", "s3://m/b.onnx", "Completed"),
        rec("running", "s3://m/a.onnx", "InProgress"),
        rec("done", "s3://m/a.onnx", "Completed"),
    ]
    best = live.cheaper_option(recs, "s3://m/a.onnx", current=1e-6)
    assert (best.recommendation, best.endpoint_name, best.cost_per_inference) == (
        "done",
        "ep-3",
        ranked[0]["costPerInference"],
    )
    assert live.cheaper_option(recs, "s3://m/a.onnx", current=1e-8) is None  # already cheaper than every row
    assert live.cheaper_option(recs, None, current=None) is None


def test_registered_models_are_tested_only_on_their_own_target():
    registered = spec(compiledModels=["resnet-avx512", "squeezenet-avx2"], includeUncompiled=False)
    tests = plan.plan("r", registered, {"resnet-avx512": "x86-avx512", "squeezenet-avx2": "x86-avx2"})
    mine = [(t.compiled_model, t.hardware_target, t.instance_count) for t in tests if t.variant is Variant.REGISTERED]
    assert mine == [
        ("squeezenet-avx2", "x86-avx2", 1),
        ("resnet-avx512", "x86-avx512", 1),
        ("resnet-avx512", "x86-avx512", 2),
    ]
    assert all(t.compilation_job is None for t in tests if t.variant is Variant.REGISTERED)
    only = InferenceRecommendationSpec.model_validate(
        {**{k: v for k, v in SPEC.items() if k != "inputConfig"}, "compiledModels": ["m"]}
    )
    assert plan.compilation_jobs(REC, only) == []
    assert [t.variant for t in plan.plan("r", only, {"m": "x86-avx2"})] == [Variant.REGISTERED]


def test_a_recommendation_needs_a_model_to_compile_or_to_test():
    without = {k: v for k, v in SPEC.items() if k != "inputConfig"}
    with pytest.raises(ValidationError, match="give inputConfig"):
        InferenceRecommendationSpec.model_validate(without)
    with pytest.raises(ValidationError, match="names a model twice"):
        InferenceRecommendationSpec.model_validate({**without, "compiledModels": ["m", "m"]})
