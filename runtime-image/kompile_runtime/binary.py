"""A fast path for requests in the v2 binary tensor extension.

kserve decodes a binary input into a Python list of numbers before the model sees it: for
SqueezeNet's 600 KB input that is 72 ms of a 396 ms request (bench/README.md). This ASGI
middleware takes binary-extension infer calls for our model itself, hands the raw bytes to
kserve's own request type (`raw_inputs`, so `as_numpy` is a zero-copy view) and encodes the
answer with kserve's `InferResponse.to_rest`. JSON requests still go through kserve.
"""

from __future__ import annotations

import logging

import orjson
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import RequestedOutput

from kompile_runtime.asgi import respond, respond_json

log = logging.getLogger("kompile.runtime")
HEADER = "inference-header-content-length"


def decode(body: bytes, json_length: int, model_name: str):
    """A kserve InferRequest whose binary inputs keep their raw bytes."""
    if not 0 < json_length <= len(body):
        raise InvalidInput(f"{HEADER} is {json_length}, the body has {len(body)} bytes")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"invalid inference request: {err}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput("invalid inference request: 'inputs' must be a list")
    inputs, raw = [], []
    offset = json_length
    for spec in header["inputs"]:
        try:
            tensor = InferInput(
                name=spec["name"], shape=spec["shape"], datatype=spec["datatype"], parameters=spec.get("parameters")
            )
        except (KeyError, TypeError):
            raise InvalidInput("invalid inference request: each input needs name, shape and datatype") from None
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size} runs past the body")
            raw.append(body[offset : offset + size])
            offset += size
        elif "data" in spec:
            tensor.data = spec["data"]
            raw.append(None)
        else:
            raise InvalidInput(f"input {tensor.name!r} has neither data nor binary_data_size")
        inputs.append(tensor)
    outputs = [RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in header.get("outputs") or []]
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=header.get("id"),
        raw_inputs=raw if any(r is not None for r in raw) else None,
        parameters=header.get("parameters"),
        request_outputs=outputs or None,
    )


class BinaryTensorFastPath:
    def __init__(self, app, model):
        self.app, self.model = app, model
        self.path = f"/v2/models/{model.name}/infer"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if HEADER not in headers:
            return await self.app(scope, receive, send)

        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            if not self.model.ready:
                raise RuntimeError("the model is not ready")
            request = decode(body, int(headers[HEADER]) if headers[HEADER].isdigit() else -1, self.model.name)
            response, _ = await self.model(request, headers)
            payload, json_size = response.to_rest()
        except InvalidInput as err:
            return await respond_json(send, 400, {"error": str(err)})
        except Exception as err:  # noqa: BLE001 - the client gets a 500 with the reason; the server goes on
            log.exception("inference failed")
            return await respond_json(send, 500, {"error": str(err)})
        if json_size is None:
            return await respond_json(send, 200, payload)
        return await respond(
            send,
            200,
            payload,
            [(b"content-type", b"application/octet-stream"), (HEADER.encode(), str(json_size).encode())],
        )
