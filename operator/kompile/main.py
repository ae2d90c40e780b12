"""The operator process: `kompile-operator` (in the chart's Deployment, or beside a dev cluster)."""

from __future__ import annotations

import logging

import kopf

from kompile.api import GROUP
from kompile.config import OperatorConfig
from kompile.kube import Kube

LOG_FORMATS = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    # Handler progress in annotations under our own prefix, not in status: the status
    # schema belongs to the API, and `kubectl get -o yaml` stays readable.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Our own events say what happened; kopf's per-handler chatter stays in the log.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    memo.config = OperatorConfig()
    memo.kube = Kube()
    logger.info("kompile operator configured: %s", memo.config.model_dump(exclude={"log_format"}))


@kopf.on.probe(id="config")
def report_config(memo: kopf.Memo, **_) -> dict:
    return {"namespaces": memo.config.watch_namespaces or "all"}


def main() -> None:
    import kompile.controllers  # noqa: F401  (registers the handlers)

    cfg = OperatorConfig()
    kopf.configure(log_format=LOG_FORMATS[cfg.log_format], verbose=False)
    kopf.run(
        standalone=True,
        clusterwide=not cfg.watch_namespaces,
        namespaces=cfg.watch_namespaces,
        liveness_endpoint=f"http://0.0.0.0:{cfg.liveness_port}/healthz",
    )


if __name__ == "__main__":
    main()
