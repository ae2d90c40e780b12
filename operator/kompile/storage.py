"""Object storage over the plain S3 API (AWS S3, MinIO, SeaweedFS), through the minio client.

Pods get their settings from the environment the operator gives them: KOMPILE_S3_ENDPOINT
(empty for AWS), AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from minio import Minio
from minio.error import S3Error

NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "NotFound"}
DENIED = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken", "InvalidToken"}


class StorageError(Exception):
    """Object storage refused or lacked something; the message says which object and why."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code

    @property
    def reason(self) -> str:
        if self.code in NOT_FOUND:
            return "NotFound"
        return "AccessDenied" if self.code in DENIED else "StorageError"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise StorageError(f"not an s3:// URI: {uri!r}")
        return cls(parts.netloc, parts.path.lstrip("/"))

    def child(self, name: str) -> S3Location:
        prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return S3Location(self.bucket, prefix + name)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def client_from_env(env: dict[str, str] | None = None) -> Minio:
    env = dict(os.environ if env is None else env)
    endpoint = env.get("KOMPILE_S3_ENDPOINT", "") or "https://s3.amazonaws.com"
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return Minio(
        parts.netloc,
        access_key=env.get("AWS_ACCESS_KEY_ID"),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN") or None,
        region=env.get("AWS_REGION") or None,
        secure=parts.scheme == "https",
    )


class ObjectStore:
    def __init__(self, client: Minio | None = None):
        self.client = client or client_from_env()

    def download(self, uri: str | S3Location, path: Path) -> Path:
        loc = uri if isinstance(uri, S3Location) else S3Location.parse(uri)
        try:
            self.client.fget_object(loc.bucket, loc.key, str(path))
        except S3Error as err:
            raise StorageError(f"cannot read {loc}: {err.code}: {err.message}", err.code) from None
        return path

    def read(self, loc: S3Location) -> bytes | None:
        """An object's bytes, or None where there is no such object."""
        try:
            response = self.client.get_object(loc.bucket, loc.key)
        except S3Error as err:
            if err.code in NOT_FOUND:
                return None
            raise StorageError(f"cannot read {loc}: {err.code}: {err.message}", err.code) from None
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def size(self, loc: S3Location) -> int | None:
        try:
            return self.client.stat_object(loc.bucket, loc.key).size
        except S3Error as err:
            if err.code in NOT_FOUND:
                return None
            raise StorageError(f"cannot read {loc}: {err.code}: {err.message}", err.code) from None

    def upload(self, path: Path, loc: S3Location, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.fput_object(loc.bucket, loc.key, str(path), content_type=content_type)
        except S3Error as err:
            raise StorageError(f"cannot write {loc}: {err.code}: {err.message}", err.code) from None

    def write(self, loc: S3Location, data: bytes, content_type: str = "application/json") -> None:
        try:
            self.client.put_object(loc.bucket, loc.key, io.BytesIO(data), len(data), content_type=content_type)
        except S3Error as err:
            raise StorageError(f"cannot write {loc}: {err.code}: {err.message}", err.code) from None

    def list(self, prefix: S3Location) -> list[S3Location]:
        """The objects directly under a prefix (a missing bucket lists nothing)."""
        base = prefix.child("")
        try:
            found = self.client.list_objects(base.bucket, prefix=base.key)
            return [S3Location(base.bucket, o.object_name) for o in found if not o.is_dir]
        except S3Error as err:
            if err.code in NOT_FOUND:
                return []
            raise StorageError(f"cannot list {base}: {err.code}: {err.message}", err.code) from None
