"""Failed staff sign-ins counted per account and per network, atomically, so parallel guesses are counted too.

An attempt is counted before its password is checked, in one statement (an upsert with `RETURNING`, the same SQL on
SQLite and PostgreSQL): the database serialises the statements, so 74 guesses sent at once are counted 1 to 74 and
only the first `max_failures` are checked against the real hash. The count restarts after `window_s`; once over
the limit the key is locked for `lockout_s`, the right password included. A sign-in that succeeds forgives its own
attempt: the account's count goes back to 0, the network's down by one (so an office of staff behind one address
signing in every morning never locks itself out; only failures add up). Times are Unix seconds.

A key is `account:<id>` or `network:<CIDR>` (the client's address cut to /24 or /48, as the ledger's evidence is).
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from server.db import connection, is_postgres
from server.settings import Settings

UNKNOWN_NETWORK = "unknown"  # no client address (a Unix socket): those attempts share one counter

_T = "sign_in_throttles"
# $1 key, $2 now, $3 start of the window, $4 most failures allowed, $5 end of a lockout starting now
_ATTEMPT = f"""
INSERT INTO {_T} (key, failures, window_start, locked_until) VALUES ($1, 1, $2, NULL)
ON CONFLICT (key) DO UPDATE SET
  failures = CASE
    WHEN {_T}.locked_until > $2 THEN {_T}.failures + 1
    WHEN {_T}.locked_until IS NOT NULL OR {_T}.window_start <= $3 THEN 1
    ELSE {_T}.failures + 1 END,
  window_start = CASE
    WHEN {_T}.locked_until > $2 THEN {_T}.window_start
    WHEN {_T}.locked_until IS NOT NULL OR {_T}.window_start <= $3 THEN $2
    ELSE {_T}.window_start END,
  locked_until = CASE
    WHEN {_T}.locked_until > $2 THEN {_T}.locked_until
    WHEN {_T}.locked_until IS NOT NULL OR {_T}.window_start <= $3 THEN NULL
    WHEN {_T}.failures + 1 > $4 THEN $5
    ELSE NULL END
RETURNING failures, locked_until
"""
# $1 key, $2 most failures allowed, $3 end of a lockout starting now
_FAILED = f"UPDATE {_T} SET locked_until = $3 WHERE key = $1 AND locked_until IS NULL AND failures >= $2"
_FORGIVE_ACCOUNT = f"UPDATE {_T} SET failures = 0 WHERE key = $1 AND locked_until IS NULL"
_FORGIVE_NETWORK = (
    f"UPDATE {_T} SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END "
    "WHERE key = $1 AND locked_until IS NULL"
)


@dataclass(frozen=True)
class Limits:
    account_failures: int = 5
    network_failures: int = 30
    window_s: float = 900.0
    lockout_s: float = 900.0

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.signin_max_failures,
            settings.signin_network_max_failures,
            float(settings.signin_window_s),
            float(settings.signin_lockout_s),
        )


def account_key(account_id: int) -> str:
    return f"account:{account_id}"


def network_key(network: str | None) -> str:
    return f"network:{network or UNKNOWN_NETWORK}"[:80]


async def attempt(key: str, most: int, now: float, limits: Limits) -> bool:
    """Count one attempt on `key`; True when it may be checked (the key is not locked and not over `most`)."""
    rows = await _run(_ATTEMPT, [key, now, now - limits.window_s, most, now + limits.lockout_s], fetch=True)
    return rows[0]["locked_until"] is None


async def failed(key: str, most: int, now: float, limits: Limits) -> None:
    """A checked attempt failed: lock the key if that was its last allowed one."""
    await _run(_FAILED, [key, most, now + limits.lockout_s])


async def forgive(key: str, *, account: bool) -> None:
    """A sign-in succeeded: the account's failures are forgotten, the network's attempt is taken back."""
    await _run(_FORGIVE_ACCOUNT if account else _FORGIVE_NETWORK, [key])


async def locked(key: str, now: float) -> bool:
    """Whether `key` is locked now (for tests and the operations guide's query)."""
    rows = await _run(f"SELECT locked_until FROM {_T} WHERE key = $1", [key], fetch=True)
    until = rows[0]["locked_until"] if rows else None
    return isinstance(until, int | float) and until > now


async def _run(sql: str, values: list[object], *, fetch: bool = False) -> list[dict[str, object]]:
    """On the app's connection, each statement on its own (autocommit): one attempt is one atomic count."""
    conn: BaseDBAsyncClient = connection()
    if not is_postgres(conn):
        sql = sql.replace("$", "?")  # SQLite's numbered parameters: ?1 is $1
    if fetch:
        return list(await conn.execute_query_dict(sql, values))
    await conn.execute_query(sql, values)
    return []
