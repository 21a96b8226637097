"""Prometheus metrics: request counts and latency per route template and status, served at `/metrics`
(server.api.ops, with the service's gauges of server.api.gauges).

Per process (each app process is scraped separately, as Prometheus expects); labels are route templates, never raw
paths, so no subject ref reaches the metrics either.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Registry:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.buckets[(method, route)][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[(method, route)] += seconds

    def render(self) -> str:
        lines = [
            "# HELP http_requests_total Requests answered, by method, route template and status.",
            "# TYPE http_requests_total counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(f'http_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP http_request_duration_seconds Time to answer, by method and route template.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for (method, route), counts in sorted(self.buckets.items()):
            labels = f'method="{method}",route="{route}"'
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}')
            lines.append(f"http_request_duration_seconds_sum{{{labels}}} {self.sums[(method, route)]:.6f}")
            lines.append(f"http_request_duration_seconds_count{{{labels}}} {cumulative}")
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, registry: Registry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.registry.observe(scope["method"], route, status, time.perf_counter() - started)
