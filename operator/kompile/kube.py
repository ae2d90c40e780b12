"""A small dict-in, dict-out layer over the Kubernetes dynamic client.

Handlers work with plain manifests (the same YAML a user reads), so every object goes
through one path: the dynamic client resolves any apiVersion/kind by discovery,
including versions the typed client no longer ships (autoscaling/v2beta2 on 1.20).
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

MERGE_PATCH = "application/merge-patch+json"


@functools.cache
def api() -> DynamicClient:
    """The process-wide client: in-cluster credentials in a pod, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    # A discovery cache of our own: the default file in /tmp is shared by every process
    # of the machine, and one process may read another's half-written file.
    cache = Path(tempfile.mkdtemp(prefix="kompile-discovery-")) / "discovery.json"
    return DynamicClient(client.ApiClient(), cache_file=str(cache))


class Kube:
    def __init__(self, dyn: DynamicClient | None = None):
        self.dyn = dyn or api()
        self._resources: dict[tuple[str, str], object] = {}
        self._versions: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._lock = threading.Lock()

    def resource(self, api_version: str, kind: str):
        # kopf runs handlers in threads, and the dynamic client's discovery cache is not
        # thread-safe (one thread invalidating it while another reads it): resolve each
        # kind once, under a lock.
        key = (api_version, kind)
        with self._lock:
            if key not in self._resources:
                self._resources[key] = self.dyn.resources.get(api_version=api_version, kind=kind)
            return self._resources[key]

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None, labels: dict | None = None) -> list:
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or None
        result = self.resource(api_version, kind).get(namespace=namespace, label_selector=selector)
        return [item.to_dict() for item in result.items]

    def pod_log(self, name: str, namespace: str, container: str, tail_lines: int = 20) -> str | None:
        """The last lines a container wrote, or None where there is no log to read (yet)."""
        try:
            return client.CoreV1Api(self.dyn.client).read_namespaced_pod_log(
                name, namespace, container=container, tail_lines=tail_lines
            )
        except client.ApiException:
            return None

    def create(self, obj: dict) -> tuple[dict, bool]:
        """Create, and say whether this call did; when it exists already (a re-run, a restart), return it."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            return res.create(body=obj, namespace=meta.get("namespace")).to_dict(), True
        except ConflictError:
            return res.get(name=meta["name"], namespace=meta.get("namespace")).to_dict(), False

    def apply(self, obj: dict) -> dict:
        """Create, or bring the live object to this manifest (JSON merge patch: lists replaced whole)."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            return res.create(body=obj, namespace=meta.get("namespace")).to_dict()
        except ConflictError:
            return res.patch(
                body=obj, name=meta["name"], namespace=meta.get("namespace"), content_type=MERGE_PATCH
            ).to_dict()

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None, body: dict) -> dict:
        """A JSON merge patch of part of an object (its spec, say)."""
        res = self.resource(api_version, kind)
        return res.patch(body=body, name=name, namespace=namespace, content_type=MERGE_PATCH).to_dict()

    def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        status: dict,
        resource_version: str | None = None,
    ) -> dict:
        """Merge `status` in; with `resource_version`, only onto that version (else ConflictError)."""
        body: dict = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        res = self.resource(api_version, kind)
        return res.status.patch(body=body, name=name, namespace=namespace, content_type=MERGE_PATCH).to_dict()

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None, propagation: str = "Background"
    ) -> bool:
        try:
            self.resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": propagation}
            )
            return True
        except NotFoundError:
            return False

    def served_version(self, group: str, kind: str, preferred: tuple[str, ...]) -> str:
        """The first of `preferred` versions in which this API server serves `kind`, found once.

        Each miss makes the dynamic client refetch all of discovery, so the answer is kept:
        asking on every reconcile would repeat that for every endpoint.
        """
        key = (group, kind, preferred)
        if (found := self._versions.get(key)) is not None:
            return found
        for version in preferred:
            try:
                self.resource(f"{group}/{version}", kind)
            except ResourceNotFoundError:
                continue
            self._versions[key] = f"{group}/{version}"
            return self._versions[key]
        raise ResourceNotFoundError(f"the API server serves {kind} in none of {group}/{preferred}")


def owner_reference(owner: dict) -> dict:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_name(parent: str, suffix: str, limit: int = 63) -> str:
    """A deterministic DNS-1123 label for a child object.

    Pods of a Job carry its name in a label (at most 63 characters), so long parent
    names are cut and made unique again with a short hash of the full name.
    """
    base = re.sub(r"[^a-z0-9-]", "-", parent.lower()).strip("-")
    name = f"{base}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(parent.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{base[:keep].rstrip('-')}-{digest}-{suffix}"


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj
