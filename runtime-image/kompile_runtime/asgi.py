"""Whole responses sent from ASGI middleware (size limit, binary fast path)."""

from __future__ import annotations

import orjson


async def respond(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send, status: int, payload) -> None:
    """The protocol's shapes: an error is {"error": "..."}."""
    await respond(send, status, orjson.dumps(payload), [(b"content-type", b"application/json")])
