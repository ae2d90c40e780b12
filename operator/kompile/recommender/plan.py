"""What a recommendation runs: its CompilationJobs and its load tests, derived from the spec alone.

The plan is a pure function of the spec, so every reconcile derives the same names and the
status only has to remember how far each test got.
"""

from __future__ import annotations

from kompile.api import API_VERSION, COMPILATION_JOB, INFERENCE_ENDPOINT
from kompile.api.recommendation import InferenceRecommendationSpec, LoadTest, Variant
from kompile.kube import child_name, owner_reference
from kompile.manifests import MANAGED_BY, RECOMMENDATION_LABEL

# A test's endpoint must come up within this long (fetch, verify, load, warm up, schedule).
SETUP_SECONDS = 600
# Locust's start and Prometheus's last scrape, added to each test's traffic for the budget.
TEST_OVERHEAD_SECONDS = 60


def compiled_job_name(rec: str, target: str) -> str:
    return child_name(rec, f"compile-{target}")


def uncompiled_job_name(rec: str) -> str:
    return child_name(rec, "uncompiled")


def plan(rec: str, spec: InferenceRecommendationSpec, model_targets: dict[str, str] | None = None) -> list[LoadTest]:
    """Every (variant, candidate pool, replica count) to test: compiled, uncompiled, then the named
    CompiledModels, each on the candidates of its own target (`model_targets`: model -> target)."""
    tests = []
    variants = []
    if spec.input_config is not None:
        variants = [Variant.COMPILED] + ([Variant.UNCOMPILED] if spec.include_uncompiled else [])
    for candidate in spec.endpoint_configurations:
        for index, model in enumerate(spec.compiled_models or []):
            if (model_targets or {}).get(model) != candidate.hardware_target:
                continue
            for count in candidate.instance_counts:
                tests.append(
                    LoadTest(
                        endpoint_name=child_name(rec, f"r{index}-{candidate.hardware_target}-{count}"),
                        variant=Variant.REGISTERED,
                        hardware_target=candidate.hardware_target,
                        instance_count=count,
                        compiled_model=model,
                    )
                )
        for variant in variants:
            for count in candidate.instance_counts:
                short = "c" if variant is Variant.COMPILED else "u"
                tests.append(
                    LoadTest(
                        endpoint_name=child_name(rec, f"{short}-{candidate.hardware_target}-{count}"),
                        variant=variant,
                        hardware_target=candidate.hardware_target,
                        instance_count=count,
                        compilation_job=compiled_job_name(rec, candidate.hardware_target)
                        if variant is Variant.COMPILED
                        else uncompiled_job_name(rec),
                    )
                )
    return tests


def problem(spec: InferenceRecommendationSpec, tests: list[LoadTest]) -> tuple[str, str] | None:
    """(reason, message) when the plan cannot run within the spec's own limits."""
    limit = spec.resource_limit.max_number_of_tests
    if len(tests) > limit:
        return "TooManyTests", f"the plan has {len(tests)} load tests, resourceLimit.maxNumberOfTests allows {limit}"
    rounds = -(-len(tests) // spec.resource_limit.max_parallel_of_tests)
    least = rounds * (spec.traffic_pattern.seconds + TEST_OVERHEAD_SECONDS)
    if least > spec.job_duration_in_seconds:
        return (
            "JobDurationTooShort",
            f"{len(tests)} tests of {spec.traffic_pattern.seconds} s of traffic, "
            f"{spec.resource_limit.max_parallel_of_tests} at a time, need at least {least} s; "
            f"jobDurationInSeconds is {spec.job_duration_in_seconds}",
        )
    return None


def compilation_jobs(rec: dict, spec: InferenceRecommendationSpec) -> list[dict]:
    """One CompilationJob per candidate target, and one packaging the model uncompiled."""
    if spec.input_config is None:
        return []
    meta = rec["metadata"]
    prefix = spec.output_config.s3_output_location.rstrip("/")
    wanted = [
        (compiled_job_name(meta["name"], c.hardware_target), c.hardware_target, False)
        for c in spec.endpoint_configurations
    ]
    if spec.include_uncompiled:
        # The uncompiled model runs anywhere; its job names the first candidate for the record.
        wanted.append((uncompiled_job_name(meta["name"]), spec.endpoint_configurations[0].hardware_target, True))
    jobs = []
    for name, target, uncompiled in wanted:
        output = {
            "s3OutputLocation": f"{prefix}/{meta['name']}/{name}/",
            "targetDevice": target,
            "precision": spec.compilation.precision.value if not uncompiled else "FP32",
            "compiledModelName": name,
        }
        if uncompiled:
            output["uncompiled"] = True
        job_spec = {
            "inputConfig": spec.input_config.wire(),
            "outputConfig": output,
            "stoppingCondition": {"maxRuntimeInSeconds": spec.compilation.max_runtime_in_seconds},
        }
        if spec.compilation.tuning is not None and not uncompiled:
            job_spec["tuning"] = spec.compilation.tuning.wire()
        if spec.credentials_secret_name:
            job_spec["credentialsSecretName"] = spec.credentials_secret_name
        jobs.append(
            {
                "apiVersion": API_VERSION,
                "kind": COMPILATION_JOB.kind,
                "metadata": _child_meta(rec, name),
                "spec": job_spec,
            }
        )
    return jobs


def endpoint(rec: dict, spec: InferenceRecommendationSpec, test: LoadTest, compiled_model: str) -> dict:
    """The temporary InferenceEndpoint a test loads."""
    candidate = next(c for c in spec.endpoint_configurations if c.hardware_target == test.hardware_target)
    ie_spec = {
        "compiledModelName": compiled_model,
        "hardwareTarget": test.hardware_target,
        "replicas": test.instance_count,
    }
    if candidate.resources is not None:
        ie_spec["resources"] = candidate.resources.wire()
    if spec.credentials_secret_name:
        ie_spec["credentialsSecretName"] = spec.credentials_secret_name
    return {
        "apiVersion": API_VERSION,
        "kind": INFERENCE_ENDPOINT.kind,
        "metadata": _child_meta(rec, test.endpoint_name),
        "spec": ie_spec,
    }


def _child_meta(rec: dict, name: str) -> dict:
    meta = rec["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {**MANAGED_BY, RECOMMENDATION_LABEL: meta["name"]},
        "ownerReferences": [owner_reference(rec)],
    }
