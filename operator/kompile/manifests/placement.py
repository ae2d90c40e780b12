"""Where pods go and what they get: from a HardwareTarget to pod spec fields."""

from __future__ import annotations

from kompile.api.common import ResourceRequirements
from kompile.api.hardwaretarget import HardwareTargetSpec


def pool_placement(target: HardwareTargetSpec | None) -> dict:
    """nodeSelector and tolerations that put a pod on the target's node pool."""
    if target is None:
        return {}
    out: dict = {}
    if target.node_selector:
        out["nodeSelector"] = dict(target.node_selector)
    if target.tolerations:
        out["tolerations"] = [t.wire() for t in target.tolerations]
    return out


def container_resources(*choices: ResourceRequirements | None, default: dict | None = None) -> dict:
    """The first resources given, in the container's wire form."""
    for choice in choices:
        if choice is not None:
            return choice.wire()
    return dict(default or {})


def s3_env(endpoint: str, region: str, secret_name: str | None) -> list[dict]:
    """Object-store settings; credentials are read from the Secret by the kubelet, never by us."""
    env = [{"name": "AWS_REGION", "value": region}]
    if endpoint:
        env.append({"name": "KOMPILE_S3_ENDPOINT", "value": endpoint})
    if secret_name:
        for key, optional in (
            ("AWS_ACCESS_KEY_ID", False),
            ("AWS_SECRET_ACCESS_KEY", False),
            ("AWS_SESSION_TOKEN", True),
        ):
            ref = {"name": secret_name, "key": key}
            if optional:
                ref["optional"] = True
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env
