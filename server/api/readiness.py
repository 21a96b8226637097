"""What `/readyz` checks: the database answers a query, and every directory the service writes to has free space
and is writable, so that a load balancer stops sending writes before they meet a full disk.

The disk check costs one `statvfs` and one `access` per directory, run on a worker thread (both are system calls
that can block on a network file system): nothing is written on a probe.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from server.db import connection
from server.settings import Settings

MIB = 1024 * 1024


def data_directories(settings: Settings) -> list[Path]:
    """DATA_DIR, the SQLite file's directory, the mail outbox (unless mail goes out by SMTP), the signing keys."""
    directories = [settings.data_dir, settings.signing_keys_dir]
    parts = urlsplit(settings.database_url)
    if parts.scheme == "sqlite" and unquote(parts.netloc + parts.path) != ":memory:":
        directories.append(Path(unquote(parts.netloc + parts.path)).parent)
    if not settings.smtp_host:
        directories.append(settings.mail_dir)
    return list(dict.fromkeys(directories))


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (a directory the service creates on first use)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_problems(directories: list[Path], min_free_bytes: int) -> list[str]:
    """One line per directory that is short of space or not writable; none when all is well."""
    problems = []
    for directory in directories:
        found = _existing(directory)
        try:
            stats = os.statvfs(found)
        except OSError as exc:
            problems.append(f"{directory}: {exc.strerror}")
            continue
        free = stats.f_bavail * stats.f_frsize
        if free < min_free_bytes:
            problems.append(f"{directory}: {free // MIB} MiB free, under READY_MIN_FREE_MB={min_free_bytes // MIB}")
        elif not os.access(found, os.W_OK):
            problems.append(f"{directory}: not writable")
    return problems


async def readiness(settings: Settings) -> tuple[bool, dict[str, object]]:
    """Whether the service is ready, and each check's result ("ok" or what failed)."""
    checks: dict[str, object] = {}
    timeout_s = settings.database_acquire_timeout_s
    try:
        # Bounded: a PostgreSQL that accepts a connection and then says nothing must not hold the probe for ever.
        await asyncio.wait_for(connection().execute_query("SELECT 1"), timeout_s)
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = f"TimeoutError: no answer within DATABASE_ACQUIRE_TIMEOUT_SECONDS={timeout_s:g}"
    except Exception as exc:  # any driver failure means "not ready"
        checks["database"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    problems = await asyncio.to_thread(disk_problems, data_directories(settings), settings.ready_min_free_mb * MIB)
    checks["disk"] = problems or "ok"
    return all(value == "ok" for value in checks.values()), checks
