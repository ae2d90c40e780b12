"""Refuse request bodies over a size limit with 413, before they are held in memory."""

from __future__ import annotations

from kompile_runtime.asgi import respond_json


class BodyTooLarge(BaseException):
    """Not an Exception: the app's catch-all handler must not turn it into a 500 on the way out."""


class BodySizeLimit:
    """ASGI middleware. A declared Content-Length over the limit is refused before reading; a
    chunked body is counted as it arrives and refused when it passes the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await respond_json(
                send, 413, {"error": f"request body is {int(declared)} bytes; the limit is {self.max_bytes}"}
            )

        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await respond_json(send, 413, {"error": f"request body passed the limit of {self.max_bytes} bytes"})
