"""Kubernetes-style conditions: set one, keeping its transition time when unchanged."""

from __future__ import annotations

import time
from datetime import UTC, datetime

TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # Kubernetes' own (RFC 3339, seconds, UTC)


def now() -> str:
    return datetime.now(UTC).strftime(TIMESTAMP)


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime(TIMESTAMP)


def seconds_since(timestamp: str | None) -> float:
    """Seconds from a status timestamp to now; 0 for none."""
    if not timestamp:
        return 0.0
    return time.time() - datetime.strptime(timestamp, TIMESTAMP).replace(tzinfo=UTC).timestamp()


def set_condition(
    conditions: list[dict] | None,
    type_: str,
    status: bool | None,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> list[dict]:
    """Return the list with `type_` set; lastTransitionTime moves only when the status does."""
    value = {True: "True", False: "False", None: "Unknown"}[status]
    current = {c["type"]: c for c in conditions or []}
    old = current.get(type_)
    current[type_] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == value else now(),
        **({"observedGeneration": generation} if generation is not None else {}),
    }
    return list(current.values())


def condition(obj: dict, type_: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None
