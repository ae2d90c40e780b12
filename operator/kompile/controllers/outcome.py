"""What one reconcile pass decided: the status to write, the events to post, when to retry."""

from __future__ import annotations

from dataclasses import dataclass, field

import kopf

from kompile.kube import Kube


@dataclass
class Outcome:
    status: dict = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    retry_after: float | None = None
    retry_reason: str = ""

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(("Warning" if warning else "Normal", reason, message))


def deliver(
    obj: dict, outcome: Outcome, kube: Kube | None = None, patch: kopf.Patch | None = None, retry: bool = True
) -> None:
    """Write the status (through kopf's patch inside a handler, else directly) and post the events.

    The retry is raised last, so the status explaining the wait is written first; only
    change handlers retry (`retry`), event handlers see the next event instead.
    """
    if outcome.status:
        if patch is not None:
            patch.status.update(outcome.status)
        elif kube is not None:
            meta = obj["metadata"]
            kube.patch_status(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"), outcome.status)
    for type_, reason, message in outcome.events:
        kopf.event(obj, type=type_, reason=reason, message=message)
    if retry and outcome.retry_after is not None:
        raise kopf.TemporaryError(outcome.retry_reason, delay=outcome.retry_after)
