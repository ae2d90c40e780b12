"""Level-triggered reconciling: a pass decides an Outcome, which is then delivered.

A resource's `sync(obj, kube, config) -> Outcome` reads the world and decides the status,
events and retry; `run` delivers it. It runs on the resource's own changes and on its
children's events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import kopf
from kubernetes.dynamic.exceptions import ConflictError

from kompile.config import OperatorConfig
from kompile.kube import Kube


@dataclass
class Outcome:
    status: dict = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    retry_after: float | None = None
    retry_reason: str = ""

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(("Warning" if warning else "Normal", reason, message))


Sync = Callable[[dict, Kube, OperatorConfig], Outcome]
ATTEMPTS = 5


def run(obj: dict, kube: Kube, cfg: OperatorConfig, sync: Sync, retry: bool = True) -> None:
    """One reconcile of `obj`: decide, write the status, then post the events.

    Several handlers reconcile the same object at once (its own change, its Job's and its
    pod's events). The status is written only onto the version the pass read; a pass that
    loses reads again and decides again. So a transition is written, and its event
    posted, once. Side effects in `sync` are idempotent, so repeating a pass is harmless.

    The retry a pass asks for is raised last, after the status explaining the wait;
    only change handlers retry (`retry`), event handlers see the next event instead.
    """
    for _ in range(ATTEMPTS):
        outcome = sync(obj, kube, cfg)
        meta = obj["metadata"]
        if outcome.status:
            try:
                kube.patch_status(
                    obj["apiVersion"],
                    obj["kind"],
                    meta["name"],
                    meta.get("namespace"),
                    outcome.status,
                    resource_version=meta.get("resourceVersion"),
                )
            except ConflictError:
                obj = kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
                if obj is None:
                    return  # deleted meanwhile
                continue
        for type_, reason, message in outcome.events:
            kopf.event(obj, type=type_, reason=reason, message=message)
        if retry and outcome.retry_after is not None:
            raise kopf.TemporaryError(outcome.retry_reason, delay=outcome.retry_after)
        return
    if retry:
        raise kopf.TemporaryError(f"{meta['name']} kept changing while being reconciled", delay=1)


def reconcile_on_changes(crd_name: str, sync: Sync) -> None:
    """Run `sync` when the operator starts (resume), on creation and on spec changes."""

    @kopf.on.resume(crd_name)
    @kopf.on.create(crd_name)
    @kopf.on.update(crd_name, field="spec")
    def reconcile(body: kopf.Body, memo: kopf.Memo, **_) -> None:
        run(dict(body), memo.kube, memo.config, sync)


def resync(obj: dict, memo: kopf.Memo, sync: Sync) -> None:
    """Reconcile `obj` from another object's handler (a child's event)."""
    run(obj, memo.kube, memo.config, sync, retry=False)
