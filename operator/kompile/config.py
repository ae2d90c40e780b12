"""Operator configuration, from the environment (the Helm chart fills it from a ConfigMap)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOMPILE_", extra="ignore")

    compiler_image: str = "docker.io/local/kompile-compiler:dev"
    runtime_image: str = "docker.io/local/kompile-runtime:dev"
    # Runs a recommendation's load generator (locust) and report: the operator's own image.
    loadgen_image: str = "docker.io/local/kompile-operator:dev"
    image_pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    # The S3 API endpoint pods use (http(s)://host:port); empty means AWS S3.
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    # Shared MetaSchedule records (an s3:// prefix the compiler pods' credentials can read and
    # write); empty: each compile uses only its own tuning and the records in the compiler image.
    tuning_cache: str = Field("", pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?)?$")
    # Prometheus's HTTP API, where recommendations read their load tests' figures; empty: none.
    prometheus_url: str = Field("", pattern=r"^(https?://[^\s/]+(/.*)?)?$")
    # Namespaces to watch, comma-separated; empty watches the whole cluster.
    watch_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Retries of a crashed compiler pod; compiler errors about the input are never retried.
    compiler_backoff_limit: int = Field(0, ge=0, le=10)
    serving_port: int = Field(8080, ge=1, le=65535)
    liveness_port: int = Field(8081, ge=1, le=65535)
    log_format: str = Field("json", pattern="^(json|plain|full)$")

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            return [ns.strip() for ns in value.split(",") if ns.strip()]
        return value
