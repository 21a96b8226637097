"""What an operator alerts on beyond request rates: the service's own state, read from the database when `/metrics`
is scraped (at most once every `TTL_S` per process, so a scrape storm costs a handful of small queries).

Every gauge describes the whole installation, not the process that answers: whichever process is scraped, the
values agree. They are counts and ages only, never a ref or an address (the metrics are not personal data).

- `consent_log_unsequenced_events`: events recorded but not yet in a signed checkpoint. It grows between
  checkpoints and falls back at each; one that only grows means no process signs checkpoints.
- `consent_log_checkpoint_age_seconds`, `consent_log_tree_size`: the latest checkpoint.
- `consent_recipient_notices{status}`: notices to recipients (GDPR 19) waiting to be delivered, and given up.
- `consent_dsr_requests{state}`: open data-subject requests, and those past their due date (GDPR 12(3)), in the
  controller's time zone.
- `consent_background_job_lease_remaining_seconds{job}`: until the lease of each background job runs out; below
  zero, no process holds it (server.leases), so that job does not run.
- `consent_service_gauges_up`: 0 when the database could not be read for them (the other gauges are then absent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime

from server.db import connection
from server.dsr.deadlines import OPEN_STATUSES
from server.models import Checkpoint, DataSubjectRequest, LogQueue, RecipientNotice

TTL_S = 5.0

Samples = dict[tuple[tuple[str, str], ...], float]
Gauge = tuple[str, str, str, Samples]  # name, type, help, samples by labels
log = logging.getLogger("server.api.gauges")


class Gauges:
    """The gauges' text, read again once it is older than `ttl_s`."""

    def __init__(self, now: Callable[[], datetime], today: Callable[[], date], ttl_s: float = TTL_S) -> None:
        self.now = now
        self.today = today
        self.ttl_s = ttl_s
        self._text = ""
        self._read_at: float | None = None

    async def render(self) -> str:
        if self._read_at is None or time.monotonic() - self._read_at >= self.ttl_s:
            self._text = await self._read()
            self._read_at = time.monotonic()
        return self._text

    async def _read(self) -> str:
        try:
            values = await self._values()
        except Exception:  # a scrape must answer even with the database gone: up 0 says so
            log.warning("service gauges could not be read", exc_info=True)
            down: Gauge = ("consent_service_gauges_up", "gauge", "The service's gauges could be read.", {(): 0})
            return _lines([down])
        return _lines(values)

    async def _values(self) -> list[Gauge]:
        now = self.now()
        unsequenced = await LogQueue.all().count()
        latest = await Checkpoint.all().order_by("-tree_size").first()
        notices = {status: await RecipientNotice.filter(status=status).count() for status in ("pending", "failed")}
        open_requests = DataSubjectRequest.filter(status__in=OPEN_STATUSES)
        requests = {
            "open": await open_requests.count(),
            "overdue": await open_requests.filter(due_on__lt=self.today()).count(),
        }
        leases = await connection().execute_query_dict("SELECT name, expires_at FROM leases ORDER BY name")
        wall = time.time()
        values: list[Gauge] = [
            ("consent_service_gauges_up", "gauge", "The service's gauges could be read.", {(): 1}),
            (
                "consent_log_unsequenced_events",
                "gauge",
                "Events recorded and not yet in a signed checkpoint.",
                {(): unsequenced},
            ),
        ]
        if latest is not None:
            values += [
                (
                    "consent_log_checkpoint_age_seconds",
                    "gauge",
                    "Age of the latest signed checkpoint.",
                    {(): max(0.0, (now - latest.timestamp).total_seconds())},
                ),
                ("consent_log_tree_size", "gauge", "Events in the latest signed checkpoint.", {(): latest.tree_size}),
            ]
        values += [
            (
                "consent_recipient_notices",
                "gauge",
                "Notices to recipients (GDPR 19) waiting to be delivered (pending) or given up (failed).",
                {(("status", status),): count for status, count in notices.items()},
            ),
            (
                "consent_dsr_requests",
                "gauge",
                "Open data-subject requests, and those past their due date (GDPR 12(3)).",
                {(("state", state),): count for state, count in requests.items()},
            ),
            (
                "consent_background_job_lease_remaining_seconds",
                "gauge",
                "Seconds until each background job's lease runs out; below zero no process runs the job.",
                {(("job", str(row["name"])),): float(row["expires_at"]) - wall for row in leases},
            ),
        ]
        return values


def _lines(values: list[Gauge]) -> str:
    lines = []
    for name, kind, help_text, samples in values:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples.items():
            label_text = ",".join(f'{key}="{label}"' for key, label in labels)
            lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
