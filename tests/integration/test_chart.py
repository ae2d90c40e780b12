"""The Helm chart: lints, renders, and the API server accepts every object it renders."""

import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.conftest import kubectl

pytestmark = pytest.mark.integration
CHART = str(ROOT / "charts/kompile")


def helm(*args):
    return subprocess.run(["helm", *args], capture_output=True, text=True, check=True).stdout


def test_lint():
    assert "0 chart(s) failed" in helm("lint", "--strict", CHART)


def test_template_renders_config_and_least_privilege():
    docs = [
        d
        for d in yaml.safe_load_all(
            helm(
                "template",
                "kompile",
                CHART,
                "-n",
                "kompile-system",
                "--set",
                "watchNamespaces={ml,research}",
                "--set",
                "s3.endpoint=http://minio.storage:9000",
                "--set",
                "prometheus.url=http://prometheus.monitoring:9090",
                "--set",
                "images.operator=registry.example/kompile-operator:1.0",
            )
        )
        if d
    ]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "ServiceAccount"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert config["KOMPILE_WATCH_NAMESPACES"] == "ml,research"
    assert config["KOMPILE_S3_ENDPOINT"] == "http://minio.storage:9000"
    assert config["KOMPILE_PROMETHEUS_URL"] == "http://prometheus.monitoring:9090"
    # Recommendations' load generator runs from the operator's own image (it carries locust).
    assert config["KOMPILE_LOADGEN_IMAGE"] == "registry.example/kompile-operator:1.0"
    rules = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert ("", "secrets") not in granted  # the operator never reads credentials
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in rules)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_server_accepts_the_rendered_chart(cluster):
    rendered = helm("template", "kompile", CHART, "-n", "default", "--include-crds")
    kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)
