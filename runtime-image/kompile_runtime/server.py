"""The Open Inference Protocol (v2) server of an InferenceEndpoint pod.

kserve's ModelServer brings the protocol (REST, binary tensor extension, health, metadata,
/metrics); this module adds what is ours: a compiled artifact verified before it loads,
inputs checked against the manifest, inference off the event loop, request metrics and a
request size limit. `python -m kompile_runtime` starts it from the pod's environment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kserve
import numpy as np
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from kserve.model_server import app

from kompile.api.common import DataType
from kompile.api.result import failure_line, write_termination_message
from kompile_runtime import artifact
from kompile_runtime.binary import BinaryTensorFastPath
from kompile_runtime.limits import BodySizeLimit
from kompile_runtime.metrics import BATCH_SIZE, INFERENCE_SECONDS, LOAD_SECONDS, MODEL, RequestMetrics
from kompile_runtime.settings import ServerSettings

log = logging.getLogger("kompile.runtime")


class CompiledModel(kserve.Model):
    def __init__(self, settings: ServerSettings):
        super().__init__(settings.model_name)
        self.settings = settings
        self.model: artifact.LoadedModel | None = None
        # One inference at a time: TVM's VM is not re-entrant, and its own thread pool already
        # spreads one inference over the pod's cores. The event loop stays free for health checks.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    # -- loading -------------------------------------------------------------------------------

    def _folder(self) -> Path:
        uri = self.settings.artifact_uri
        if uri.startswith("s3://"):
            return artifact.fetch(uri, self.settings.model_dir)
        return Path(uri)

    def load(self) -> bool:
        start = time.perf_counter()
        self.model = artifact.load(self._folder(), self.settings.artifact_sha256 or None)
        # Warm up: the first call pays for lazy initialisation; no user request should.
        self.model({spec.name: np.zeros(spec.shape, spec.datatype.array_type) for spec in self.model.inputs})
        LOAD_SECONDS.labels(self.name).set(time.perf_counter() - start)
        manifest = self.model.manifest
        MODEL.info(
            {
                "model": self.name,
                "digest": self.settings.artifact_sha256 or "",
                "target": str(manifest.get("target", {}).get("name", "")),
                "precision": str(manifest.get("precision", "")),
                "framework": str(manifest.get("model", {}).get("framework", "")),
            }
        )
        self.ready = True
        log.info("loaded %s in %.2f s", self.name, time.perf_counter() - start)
        return True

    # -- metadata ------------------------------------------------------------------------------

    def get_input_types(self) -> list[dict]:
        return [{"name": t.name, "datatype": t.datatype.value, "shape": t.shape} for t in self.model.inputs]

    def get_output_types(self) -> list[dict]:
        return [{"name": t.name, "datatype": t.datatype.value, "shape": t.shape} for t in self.model.outputs]

    # -- inference -----------------------------------------------------------------------------

    def _feed(self, request) -> list[np.ndarray]:
        """The request's tensors in the model's order, checked; InvalidInput (a 400) names what is wrong."""
        specs = {spec.name: spec for spec in self.model.inputs}
        feed: dict[str, np.ndarray] = {}
        for tensor in request.inputs:
            spec = specs.get(tensor.name)
            if spec is None:
                raise InvalidInput(f"unknown input {tensor.name!r}; the model's inputs are {list(specs)}")
            if tensor.name in feed:
                raise InvalidInput(f"input {tensor.name!r} is given twice")
            # Checked on the request's own terms before its data is decoded.
            if tensor.datatype != spec.datatype.value:
                raise InvalidInput(
                    f"input {tensor.name!r} has datatype {tensor.datatype}, the model takes {spec.datatype}"
                )
            if list(tensor.shape) != spec.shape:
                raise InvalidInput(
                    f"input {tensor.name!r} has shape {list(tensor.shape)}, the model takes {spec.shape}"
                )
            try:
                feed[tensor.name] = tensor.as_numpy()
            except (ValueError, TypeError) as err:
                raise InvalidInput(f"input {tensor.name!r}: data does not fit shape {spec.shape}: {err}") from None
        try:
            return self.model.check(feed)
        except artifact.InvalidInput as err:
            raise InvalidInput(str(err)) from None

    def _run(self, ordered: list[np.ndarray]) -> list[np.ndarray]:
        start = time.perf_counter()
        outputs = self.model.run(*ordered)
        INFERENCE_SECONDS.labels(self.name).observe(time.perf_counter() - start)
        return outputs

    async def predict(self, payload, headers=None, response_headers=None):
        ordered = self._feed(payload)
        BATCH_SIZE.labels(self.name).observe(ordered[0].shape[0] if ordered[0].ndim else 1)
        outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, ordered)
        binary = payload.use_binary_outputs
        result = []
        for spec, value in zip(self.model.outputs, outputs, strict=True):
            out = kserve.InferOutput(name=spec.name, shape=list(value.shape), datatype=_datatype(value))
            out.set_data_from_numpy(np.ascontiguousarray(value), binary_data=binary)
            result.append(out)
        return kserve.InferResponse(
            response_id=payload.id or "", model_name=self.name, infer_outputs=result, use_binary_outputs=binary
        )

    def stop(self):
        self._executor.shutdown(wait=True)


def _datatype(value: np.ndarray) -> str:
    dtype = DataType.of_array_type(str(value.dtype))
    return dtype.value if dtype else "FP32"


async def _invalid_body(_request, exc):
    """A body that is not a v2 request is the client's error: 400 in the protocol's error shape
    (FastAPI's default is a 422 in its own shape)."""
    problems = "; ".join(
        f"{e.get('msg', 'invalid')} at {'.'.join(str(p) for p in e.get('loc', ()))}" for e in exc.errors()
    )
    return JSONResponse(status_code=400, content={"error": f"invalid inference request: {problems}"})


def serve(settings: ServerSettings) -> int:
    model = CompiledModel(settings)
    try:
        model.load()
    except artifact.ArtifactError as err:
        # A pod that cannot prove what it serves never becomes ready; `kubectl describe pod` says why.
        log.error("%s: %s", err.reason, err.detail)
        write_termination_message(failure_line(err.reason, err.detail))
        return 1
    app.add_exception_handler(RequestValidationError, _invalid_body)
    # Starlette runs the last added middleware first: size limit, then metrics, then the fast path.
    app.add_middleware(BinaryTensorFastPath, model=model)
    app.add_middleware(RequestMetrics, model_name=settings.model_name)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    server = kserve.ModelServer(
        http_port=settings.http_port,
        enable_grpc=False,
        workers=1,
        grace_period=settings.grace_period_seconds,
        enable_latency_logging=False,
    )
    server.start([model])
    return 0


def main() -> int:
    # Settings come from the environment only (kserve reads its own flags, none here, at import).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(ServerSettings())
