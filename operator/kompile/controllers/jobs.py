"""Reading batch/v1 Jobs and their pods: how a compiler, load-test or report Job ended."""

from __future__ import annotations

from kompile.kube import dig


def job_condition(job: dict | None, type_: str) -> dict | None:
    """The Job's condition of this type (Complete, Failed) when it holds, else None."""
    for c in dig(job, "status", "conditions", default=[]) or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c
    return None


def terminated(pod: dict, container: str) -> dict:
    """The container's terminated state (exitCode, reason, message); {} while it has not ended."""
    for cs in dig(pod, "status", "containerStatuses", default=[]) or []:
        if cs.get("name") == container and dig(cs, "state", "terminated"):
            return cs["state"]["terminated"]
    return {}
