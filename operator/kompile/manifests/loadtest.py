"""The batch/v1 Jobs of a recommendation: one locust load test per test, and the report writer."""

from __future__ import annotations

from kompile.api.result import TERMINATION_LOG
from kompile.config import OperatorConfig
from kompile.kube import child_name, owner_reference
from kompile.loadgen import CONFIG_ENV, LoadTestConfig
from kompile.manifests import CONTAINER_SECURITY, MANAGED_BY, POD_SECURITY, RECOMMENDATION_LABEL
from kompile.manifests.placement import s3_env

LOADGEN_CONTAINER = "loadgen"
REPORT_CONTAINER = "report"
REPORT_ENV = "KOMPILE_REPORT"
LOADGEN_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def load_job_name(endpoint_name: str) -> str:
    return child_name(endpoint_name, "load")


def report_job_name(rec_name: str) -> str:
    return child_name(rec_name, "report")


def load_test_job(
    rec: dict, endpoint_name: str, config: LoadTestConfig, deadline: int, cfg: OperatorConfig, secret: str | None
) -> dict:
    env = [{"name": CONFIG_ENV, "value": config.model_dump_json(by_alias=True, exclude_none=True)}]
    if config.sample_payload_s3_uri:
        env += s3_env(cfg.s3_endpoint, cfg.s3_region, secret)
    command = ["python", "-m", "kompile.loadgen"]
    return _job(rec, load_job_name(endpoint_name), LOADGEN_CONTAINER, command, env, deadline, cfg)


def report_job(rec: dict, report: str, cfg: OperatorConfig, secret: str | None) -> dict:
    env = [{"name": REPORT_ENV, "value": report}, *s3_env(cfg.s3_endpoint, cfg.s3_region, secret)]
    command = ["python", "-m", "kompile.recommender.report"]
    return _job(rec, report_job_name(rec["metadata"]["name"]), REPORT_CONTAINER, command, env, 300, cfg)


def _job(
    rec: dict, name: str, container: str, command: list[str], env: list[dict], deadline: int, cfg: OperatorConfig
) -> dict:
    meta = rec["metadata"]
    labels = {**MANAGED_BY, RECOMMENDATION_LABEL: meta["name"]}
    pod_spec = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY,
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": container,
                "image": cfg.loadgen_image,
                "imagePullPolicy": cfg.image_pull_policy,
                "command": command,
                "env": env,
                "resources": LOADGEN_RESOURCES,
                "securityContext": CONTAINER_SECURITY,
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "work", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "work", "emptyDir": {}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(rec)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
