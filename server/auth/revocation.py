"""Each process's view of its API clients, so the token check refuses a revoked client's tokens within a second.

The consent check verifies a token on every request (about 10,000 a second), from a cache of verified tokens: that
path must stay a dictionary lookup. So no request reads the database for this. Instead each server process keeps a
small map of every client (revoked or not, its token generation, its granted scopes), and a background task polls
`api_clients_version` (a primary-key read) every `CLIENT_REFRESH_SECONDS` (0.5 s), reloading the map when the
version moved or the number of clients changed (a row deleted by hand). Every change the service makes to a client
moves the version in its own transaction (`server.auth.lifecycle`), so a revocation committed at t is seen by every
process by t + the interval + one query.

A token is refused when its client is revoked, when it was issued under an older token generation (a revocation
or `rotate-secret --revoke-tokens`), when it carries a scope the client no longer has (`set-scopes`), and when its
client is not in a view loaded after the token was issued (a deleted client). If a process cannot refresh its view
for `STALE_AFTER_S`, it answers 503 `database-busy` rather than trust a view it cannot keep fresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.db import connection
from server.errors import AuthenticationRequired, DatabaseBusy

log = logging.getLogger("server.auth")

VERSION_ROW = 1
STALE_AFTER_S = 5.0  # ten missed refreshes at the default interval
_POLL = (
    "SELECT (SELECT version FROM api_clients_version WHERE id = 1) AS version, "
    "(SELECT count(*) FROM api_clients) AS clients"
)
_LOAD = "SELECT client_id, scopes, token_generation, disabled_at FROM api_clients"


@dataclass(frozen=True)
class ClientState:
    generation: int
    scopes: frozenset[str]
    revoked: bool


class ClientView:
    """The clients as this process last read them. `check` is what the token service calls on every request."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S, wall: Callable[[], float] = time.time) -> None:
        self.states: dict[str, ClientState] = {}
        self.loaded_at: float | None = None  # wall-clock time the last load began (token `iat` is wall-clock too)
        self.fresh_at = 0.0  # time.monotonic() of the last successful poll
        self.stale_after_s = stale_after_s
        self.wall = wall
        self._seen: tuple[int, int] | None = None

    def check(self, client_id: str, generation: int, scopes: frozenset[str], issued_at: int) -> None:
        """Raise `AuthenticationRequired` when the client refuses the token; return when it stands."""
        if self.loaded_at is None:  # not opened (a command, or a test's own service): nothing to compare with
            return
        if time.monotonic() - self.fresh_at > self.stale_after_s:
            raise DatabaseBusy("the list of revoked API clients could not be read lately; send the request again")
        state = self.states.get(client_id)
        if state is None:
            # A client created after the last load is not here yet; one missing from a load made after the token
            # was issued was deleted. `iat` is whole seconds, hence the second of margin.
            if self.loaded_at > issued_at + 1:
                raise AuthenticationRequired("the access token's client no longer exists")
            return
        if state.revoked:
            raise AuthenticationRequired("the access token's client has been revoked")
        if generation < state.generation:
            raise AuthenticationRequired("the access token was revoked; get a new one")
        if not scopes <= state.scopes:
            raise AuthenticationRequired("the access token carries a scope its client no longer has; get a new one")

    async def refresh(self) -> bool:
        """Poll the version; reload every client when it moved. True when the view was reloaded."""
        conn = connection()
        started = self.wall()
        row = (await conn.execute_query_dict(_POLL))[0]
        seen = (int(row["version"] or 0), int(row["clients"]))
        reloaded = False
        if seen != self._seen:
            rows = await conn.execute_query_dict(_LOAD)
            self.states = {
                str(r["client_id"]): ClientState(
                    generation=int(r["token_generation"] or 0),
                    scopes=frozenset(str(r["scopes"]).split()),
                    revoked=r["disabled_at"] is not None,
                )
                for r in rows
            }
            self._seen = seen
            self.loaded_at = started
            reloaded = True
        elif self.loaded_at is not None:
            self.loaded_at = started  # unchanged since: the view is as good as a load made now
        self.fresh_at = time.monotonic()
        return reloaded

    async def run(self, interval_s: float) -> None:
        """Refresh every `interval_s` until cancelled; a failed round is logged and retried at the next, and one
        that hangs (a connection lost without a reset) is given up after `stale_after_s`, when the view goes stale
        anyway."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the task's own cancellation
                # when the refresh ends at that moment, and the app's shutdown would then wait for it for ever.
                async with asyncio.timeout(self.stale_after_s):
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not refresh the view of API clients")
