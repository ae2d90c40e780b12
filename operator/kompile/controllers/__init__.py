"""kopf handlers, one module per resource. Importing this package registers them all."""

from kompile.controllers import catalog, compilationjob, inferenceendpoint, recommendation  # noqa: F401
