"""The batch/v1 Job that compiles one CompilationJob."""

from __future__ import annotations

from kompile.api.compilationjob import CompilationJobSpec
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.result import TERMINATION_LOG, CompilerJob, NamedTarget
from kompile.config import OperatorConfig
from kompile.kube import child_name, owner_reference
from kompile.manifests import COMPILATION_JOB_LABEL, CONTAINER_SECURITY, MANAGED_BY, POD_SECURITY
from kompile.manifests.placement import container_resources, pool_placement, s3_env

COMPILER_CONTAINER = "compiler"
DEFAULT_COMPILER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}}


def compiler_job_name(cj_name: str) -> str:
    return child_name(cj_name, "compile")


def compiles_natively(spec: CompilationJobSpec, target: HardwareTargetSpec | None) -> bool:
    """Compile on the target's own pool when it asks to, or when tuning must measure on it."""
    if target is None:
        return False
    return target.compile_natively or bool(spec.tuning and spec.tuning.trials > 0)


def compiler_job(
    cj: dict, spec: CompilationJobSpec, target_name: str | None, target: HardwareTargetSpec | None, cfg: OperatorConfig
) -> dict:
    meta = cj["metadata"]
    labels = {**MANAGED_BY, COMPILATION_JOB_LABEL: meta["name"]}
    # Everything the compiler needs travels in the pod: it needs no access to the API server.
    job_input = CompilerJob(
        name=meta["name"],
        namespace=meta["namespace"],
        spec=spec,
        target=NamedTarget(name=target_name, spec=target) if target else None,
    )
    pod_spec = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY,
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": COMPILER_CONTAINER,
                "image": cfg.compiler_image,
                "imagePullPolicy": cfg.image_pull_policy,
                "env": [
                    {"name": "KOMPILE_JOB", "value": job_input.model_dump_json(by_alias=True, exclude_none=True)},
                    *s3_env(cfg.s3_endpoint, cfg.s3_region, spec.credentials_secret_name),
                    *([{"name": "KOMPILE_TUNING_CACHE", "value": cfg.tuning_cache}] if cfg.tuning_cache else []),
                ],
                "resources": container_resources(spec.resources, default=DEFAULT_COMPILER_RESOURCES),
                "securityContext": CONTAINER_SECURITY,
                "terminationMessagePath": TERMINATION_LOG,
                # A crash that writes no message still leaves its last log lines as the reason.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "work", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "work", "emptyDir": {}}],
    }
    if compiles_natively(spec, target):
        pod_spec.update(pool_placement(target))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": compiler_job_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(cj)],
        },
        "spec": {
            "backoffLimit": cfg.compiler_backoff_limit,
            "activeDeadlineSeconds": spec.stopping_condition.max_runtime_in_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
