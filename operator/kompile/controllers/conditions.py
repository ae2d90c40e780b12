"""Kubernetes-style conditions: set one, keeping its transition time when unchanged."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
