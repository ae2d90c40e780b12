"""The serving pod's settings, from the environment the operator writes into the Deployment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOMPILE_", extra="ignore")

    model_name: str = Field("model", min_length=1)
    # s3://bucket/prefix/ of a compiled artifact, or a local folder holding one.
    artifact_uri: str
    # The CompiledModel's digest (sha256 of manifest.json); empty skips the manifest check
    # but never the per-file checks against the manifest.
    artifact_sha256: str = ""
    # Where an artifact from S3 is downloaded; the pod mounts an emptyDir there.
    model_dir: Path = Path("/tmp/kompile-model")
    http_port: int = Field(8080, ge=1, le=65535)
    # Requests larger than this are refused with 413 before their body is read.
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Seconds uvicorn waits for in-flight requests after SIGTERM.
    grace_period_seconds: int = Field(20, ge=0)
