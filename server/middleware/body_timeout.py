"""A time limit on receiving a request's body, so a client that sends it slowly (or stops) is cut.

uvicorn hands the app the body as it arrives and waits for the next part as long as the client takes. Here each
wait for the next part ends at a deadline: HTTP_BODY_TIMEOUT_SECONDS after the request began, moved later by one
second for every `MIN_RATE` bytes received. A body of a normal size arrives well within the first part; a long
upload (the NDJSON check stream is unbounded) goes on as long as it keeps at least `MIN_RATE` on average; a body
sent a byte at a time, or not at all, is cut after about HTTP_BODY_TIMEOUT_SECONDS.

A request cut before its answer started gets the 408 problem `/problems/request-timeout` (`RequestTimeout`, raised
from `receive` and answered by the app's problem handlers) with `Connection: close`, so the rest of the body is
never read. One cut after its answer started (a stream) ends the answer there, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import RequestTimeout

log = logging.getLogger("server.access")
MIN_RATE = 1024  # bytes a second, on average, that keep a long upload going


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = 0
        complete = False
        cut = False
        answering = False

        async def timed_receive() -> Message:
            nonlocal received, complete, cut
            if complete:  # after the body: waiting for a disconnection, which has no time limit
                return await receive()
            try:
                async with asyncio.timeout_at(started + self.timeout_s + received / MIN_RATE):
                    message = await receive()
            except TimeoutError:
                cut = True
                raise RequestTimeout(
                    f"the body did not arrive within {self.timeout_s:g} s (or at {MIN_RATE} bytes a second after)"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def send_closing(message: Message) -> None:
            nonlocal answering
            if message["type"] == "http.response.start":
                answering = True
                if cut:
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, timed_receive, send_closing)
        except RequestTimeout:
            if not answering:
                raise
            log.warning(
                "request body too slow: answer cut", extra={"request_id": scope.get("state", {}).get("request_id")}
            )
