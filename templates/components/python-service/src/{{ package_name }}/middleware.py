"""The outermost layer of every request: request id (x-request-id in and out), one JSON access-log
line, the body-size cap (counted as the bytes arrive, so chunked bodies are capped too) and a
generic 500 for anything unhandled (the details go to the log, with the request id)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import request_id_var

log = logging.getLogger("access")

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def incoming_request_id(value: str | None) -> str:
    """Keep a caller's id when it is short and plain (it ends up in logs); otherwise make one."""
    if value is not None and _VALID_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware), so it sees every body chunk and every response start."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = incoming_request_id(headers.get("x-request-id"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0  # set when the response starts
        answered = False  # this middleware sent the response; the app's is dropped
        received = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if answered:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        async def answer(code: int, detail: str) -> None:
            nonlocal answered
            await self._reply(send_with_id, code, detail)
            answered = True

        async def counted_receive() -> Message:
            # A declared Content-Length was checked up front; this catches chunked bodies and
            # bodies longer than declared, without ever holding more than the cap.
            nonlocal received
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    if status == 0:
                        await answer(413, "request body too large")
                    # The app sees a client that went away and stops reading.
                    return {"type": "http.disconnect"}
            return message

        try:
            length = headers.get("content-length")
            if length is not None and not length.isdigit():
                await answer(400, "invalid content-length")
            elif length is not None and int(length) > self.max_body_bytes:
                await answer(413, "request body too large")
            else:
                await self.app(scope, counted_receive, send_with_id)
        except Exception:
            if not answered:  # after a 413 the app may fail on the disconnect it was shown
                log.exception("unhandled error")
                if status != 0:
                    raise  # the response is under way: the server can only cut the connection
                await answer(500, "internal error")
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": scope["client"][0] if scope.get("client") else None,
                },
            )
            request_id_var.reset(token)

    @staticmethod
    async def _reply(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
