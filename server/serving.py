"""How uvicorn serves the app: its options from the settings, and the HTTP protocol that bounds header reading.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`) and answers 503 past `limit_concurrency`
connections or requests in progress, but it puts no time limit on receiving a request: a client that connects and
sends nothing, or sends its header a byte at a time (slowloris), holds a connection for as long as it likes, each
byte resetting nothing because nothing is counting. `HeaderTimeoutProtocol` is uvicorn's httptools protocol with a
timer armed when a connection opens and when a request's first byte arrives, and disarmed when its header is
complete: a header not complete within HTTP_HEADER_TIMEOUT_SECONDS is answered 408 and the connection closed. The
body's time limit is the app's (`server.middleware.body_timeout`), where a 408 can be a problem+json answer.

uvicorn builds the protocol from its class, one instance a connection, with no argument of ours: the time limit is a
class attribute, set by `configure` in each process before it serves (`python -m server serve` in its own process,
`server.asgi.create` in every worker process).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.settings import Settings

PROTOCOL = "server.serving:HeaderTimeoutProtocol"
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/problem+json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
_BODY = (
    b'{"type":"/problems/request-timeout","title":"The request took too long to arrive","status":408,'
    b'"detail":"the header did not all arrive in time; the connection is closed"}'
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request header is not complete in time."""

    header_timeout_s: ClassVar[float] = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # the first request's timer runs from the connection's opening
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMED_OUT % (len(_BODY), _BODY))
            self.transport.close()


def configure(settings: Settings) -> None:
    """Set this process's header time limit (see the module docstring)."""
    HeaderTimeoutProtocol.header_timeout_s = settings.http_header_timeout_s


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `serve` hands uvicorn besides the app: where to listen, the protocol, keep-alive and connection limit,
    and no logging of uvicorn's own (the app logs each request, `server.middleware.request_log`)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": PROTOCOL,
        "timeout_keep_alive": settings.http_keep_alive_s,
        "limit_concurrency": settings.http_max_connections,
        "log_config": None,
        "access_log": False,
    }
