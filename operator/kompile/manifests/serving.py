"""The Deployment, Service and HorizontalPodAutoscaler that serve one InferenceEndpoint."""

from __future__ import annotations

from kompile.api.compiledmodel import CompiledModelSpec
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.api.inferenceendpoint import InferenceEndpointSpec
from kompile.config import OperatorConfig
from kompile.kube import child_name, owner_reference
from kompile.manifests import (
    CONTAINER_SECURITY,
    DIGEST_ANNOTATION,
    INFERENCE_ENDPOINT_LABEL,
    MANAGED_BY,
    POD_SECURITY,
)
from kompile.manifests.placement import container_resources, pool_placement, s3_env

DEFAULT_SERVING_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}}
PRESTOP_SECONDS = 5


def serving_name(ie_name: str) -> str:
    return child_name(ie_name, "predictor")


def _meta(ie: dict, labels: dict) -> dict:
    meta = ie["metadata"]
    return {
        "name": serving_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(ie)],
    }


def selector_labels(ie: dict) -> dict:
    return {INFERENCE_ENDPOINT_LABEL: ie["metadata"]["name"]}


def deployment(
    ie: dict,
    spec: InferenceEndpointSpec,
    model_name: str,
    model: CompiledModelSpec,
    target: HardwareTargetSpec,
    cfg: OperatorConfig,
) -> dict:
    labels = {**MANAGED_BY, **selector_labels(ie)}
    port = cfg.serving_port
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}
    container = {
        "name": "server",
        "image": cfg.runtime_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "ports": [{"name": "http", "containerPort": port}],
        "env": [
            {"name": "KOMPILE_MODEL_NAME", "value": model_name},
            {"name": "KOMPILE_ARTIFACT_URI", "value": model.artifact.uri},
            {"name": "KOMPILE_ARTIFACT_SHA256", "value": model.artifact.sha256},
            {"name": "KOMPILE_HTTP_PORT", "value": str(port)},
            # TVM sizes its thread pool by the host's cores unless told: use the container's CPU
            # limit (rounded up; the node's allocatable CPUs where no limit is set).
            {
                "name": "TVM_NUM_THREADS",
                "valueFrom": {
                    "resourceFieldRef": {"containerName": "server", "resource": "limits.cpu", "divisor": "1"}
                },
            },
            *s3_env(cfg.s3_endpoint, cfg.s3_region, spec.credentials_secret_name),
        ],
        "resources": container_resources(spec.resources, target.resources, default=DEFAULT_SERVING_RESOURCES),
        "readinessProbe": probe,
        # The server listens once the model is fetched, verified, loaded and warmed up: allow that
        # up to ten minutes before liveness may restart the pod.
        "startupProbe": {**probe, "httpGet": {"path": "/v2/health/live", "port": "http"}, "failureThreshold": 120},
        "livenessProbe": {**probe, "httpGet": {"path": "/v2/health/live", "port": "http"}},
        # Endpoints drop a terminating pod while it still serves: kube-proxy catches up before
        # SIGTERM, and the server then drains what it accepted. No request fails in a rollout.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
    }
    deployment_spec: dict = {
        "selector": {"matchLabels": selector_labels(ie)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": spec.rollout.max_surge, "maxUnavailable": spec.rollout.max_unavailable},
        },
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    # A new digest changes the template, which is what rolls the pods.
                    DIGEST_ANNOTATION: model.artifact.sha256,
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(port),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": {
                "securityContext": POD_SECURITY,
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": PRESTOP_SECONDS + 30,
                "containers": [container],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                **pool_placement(target),
            },
        },
    }
    # With autoscaling the HPA owns the replica count; writing it here would fight it.
    if spec.autoscaling is None:
        deployment_spec["replicas"] = spec.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(ie, labels), "spec": deployment_spec}


def service(ie: dict, cfg: OperatorConfig) -> dict:
    labels = {**MANAGED_BY, **selector_labels(ie)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ie, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(ie),
            "ports": [{"name": "http", "port": cfg.serving_port, "targetPort": "http"}],
        },
    }


def autoscaler(ie: dict, spec: InferenceEndpointSpec, api_version: str) -> dict | None:
    if spec.autoscaling is None:
        return None
    scaling = spec.autoscaling
    labels = {**MANAGED_BY, **selector_labels(ie)}
    return {
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(ie, labels),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": serving_name(ie["metadata"]["name"]),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": scaling.metric.value,
                        "target": {"type": "Utilization", "averageUtilization": scaling.target_utilization_percentage},
                    },
                }
            ],
        },
    }


def endpoint_url(ie: dict, cfg: OperatorConfig) -> str:
    meta = ie["metadata"]
    return f"http://{serving_name(meta['name'])}.{meta['namespace']}.svc.cluster.local:{cfg.serving_port}"
