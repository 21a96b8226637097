"""Idempotent writes: the `Idempotency-Key` request header (IETF httpapi draft "The Idempotency-Key HTTP Header
Field") on the routes whose declaration accepts it (`Endpoint.idempotency`).

The same key (of the same API client, or of the same anonymous origin on a public route) with the same request
(method, path and query, body) is answered with the first answer again, marked `Idempotency-Replayed: true`, and
carries nothing out; the same key with another request is refused (422); a key whose first request is still being
carried out is refused too (409), so the client retries later and gets the answer then.

A write whose answer the client never saw (a timeout, a lost connection, a server killed before it answered) is
safe to send again with its key, because the key row and the answer are inserted in the write's own transaction:
the kernel opens one transaction around the handler, claims the key in it first (a write, so on SQLite it takes
the write lock at once), the handler's own transactions nest in it as savepoints, and the answer is stored in it
before the commit. The key is there exactly when the write is: a crash before the commit leaves neither, so the
retry writes once; a crash after it leaves both, so the retry is answered with the stored answer.

A handler with effects outside the database (a mail) calls `settle(answer)` once its writes are done: that stores
`answer` and commits there, so the effects run after the commit as they do without a key; what the handler
returns afterwards replaces the stored answer (a second, small transaction). A crash between the two leaves the
settled answer, which must therefore be true at commit time (a confirmation mail: `not_sent`).

A write on a route with a `{ref}` path parameter is stored with the pseudonym of that subject (`subject_of`), so
that an erasure deletes the answers that name the person in its own transaction (GDPR 17,
`server.dsr.effects.erase`); the same request sent again after the erasure is carried out anew, and a grant in it
is refused as any grant for an erased subject is.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from starlette.requests import Request
from starlette.responses import Response
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionContext
from tortoise.transactions import in_transaction

from server.db import connection, is_postgres, placeholders
from server.errors import ConsentError
from server.kernel.bodies import body_limit, read_body
from server.kernel.params import subject_ref

log = logging.getLogger("server.idempotency")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
OPTIONAL = "optional"
REQUIRED = "required"
MAX_KEY_LENGTH = 255
# The draft's value is a Structured Field String (RFC 8941: printable ASCII in double quotes, `\"` and `\\`
# escaped); a plain token of the same characters, as many clients send, is taken as the same key.
_QUOTED = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
_PLAIN = re.compile(r"^[\x21\x23-\x7e][\x20-\x7e]*$")
# Response headers not worth keeping: recomputed for the replay.
_NOT_STORED = frozenset({"content-length", "date", "server"})
# pg_try_advisory_xact_lock(class, key): the class keeps these locks apart from the service's other advisory locks.
_LOCK_CLASS = 0x1DE7
SWEEP_EVERY = timedelta(minutes=10)

Handler = Callable[[Request], Awaitable[Response]]


class IdempotencyKeyInvalid(ConsentError):
    """The `Idempotency-Key` header is not a key: send a string of 1-255 printable ASCII characters, quoted as a
    Structured Field String (`Idempotency-Key: "a4f1..."`) or plain, unique to the request (a UUID is the usual
    choice). It is also the answer where a route requires a key and none was sent. Nothing was done."""

    status = 400
    slug = "invalid-idempotency-key"
    title = "The Idempotency-Key header is missing or not valid"


class IdempotencyKeyReused(ConsentError):
    """The `Idempotency-Key` was already used by this client for another request (another path, query or body).
    A key names one request: send a new request with a new key, and only the very same request again with the same
    key. Nothing was done."""

    status = 422
    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was used for another request"


class IdempotencyKeyInFlight(ConsentError):
    """The first request with this `Idempotency-Key` is still being carried out. Send the same request again with
    the same key once it is done (Retry-After gives the delay): it is then answered with the first answer. Nothing
    was done by this one."""

    status = 409
    slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is still in progress"
    retry_after = True  # server.kernel.problems


def parse_key(value: str) -> str:
    """The key of an `Idempotency-Key` header value, quoted or plain; `IdempotencyKeyInvalid` otherwise."""
    value = value.strip(" \t")
    quoted = _QUOTED.match(value)
    if quoted is not None:
        key = re.sub(r"\\(.)", r"\1", quoted[1])
    elif _PLAIN.match(value) and '"' not in value:
        key = value
    else:
        raise IdempotencyKeyInvalid(
            f"the {HEADER} header is a string of printable ASCII characters, quoted or plain", parameter=HEADER
        )
    if not key or len(key) > MAX_KEY_LENGTH:
        raise IdempotencyKeyInvalid(
            f"the {HEADER} header holds 1 to {MAX_KEY_LENGTH} characters", parameter=HEADER, limit=MAX_KEY_LENGTH
        )
    return key


def fingerprint(method: str, target: str, body: bytes) -> str:
    """SHA-256 of the request as the draft compares it: method, path with query, body."""
    digest = hashlib.sha256()
    for part in (method.encode(), target.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def scope_of(request: Request) -> str:
    """Whose keys these are: the API client the guard verified, else the anonymous caller's origin (or address)."""
    access = getattr(request.state, "access", None)
    if access is not None:
        return f"client:{access.client_id}"
    origin = request.headers.get("origin")
    return f"origin:{origin}" if origin else f"address:{request.client.host if request.client else ''}"


@dataclass(frozen=True)
class Stored:
    fingerprint: str
    status: int
    headers: list[list[str]]
    body: bytes

    def replay(self) -> Response:
        response = Response(self.body, status_code=self.status)
        response.raw_headers = [
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers),
            (b"content-length", str(len(self.body)).encode()),
            (REPLAYED.lower().encode(), b"true"),
        ]
        return response


@dataclass
class _Keyed:
    """The keyed write under way in this request: its transaction and its key."""

    context: TransactionContext
    conn: BaseDBAsyncClient
    key_id: str
    request_fingerprint: str
    now: datetime
    expires_at: datetime
    subject: str | None = None
    committed: bool = False
    settled: bytes | None = field(default=None, repr=False)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


_current: ContextVar[_Keyed | None] = ContextVar("idempotent_write", default=None)
_before: ContextVar[contextvars.Context | None] = ContextVar("context_before_keyed_write", default=None)


def outside_keyed_write() -> contextvars.Context:
    """The context for a task started now that must not run in a keyed write's transaction (a background reload):
    a task inherits its creator's context, and with it the transaction's connection, which it would then use
    concurrently with the request, or after the commit. The request's context as it was before, if one is open."""
    before = _before.get()
    return before.copy() if before is not None else contextvars.copy_context()


def after_commit(effect: Callable[[], None]) -> None:
    """Run `effect` now, or once the keyed write under way has committed (a wake-up that must find the write, such
    as the recipients' dispatcher); never if it rolls back."""
    keyed = _current.get()
    if keyed is None or keyed.committed:
        effect()
    else:
        keyed.after_commit.append(effect)


async def settle(answer: Callable[[], Response]) -> None:
    """Inside a keyed write: store `answer()` as the key's answer and commit the write with it, so what follows
    (mail) runs after the commit. Outside one, nothing: the handler's own transactions have committed already."""
    keyed = _current.get()
    if keyed is None or keyed.committed:
        return
    response = answer()
    await _store(keyed.conn, keyed, response)
    keyed.settled = bytes(response.body)
    await _commit(keyed)


class IdempotencyKeys:
    """The keys' store and the wrapper of keyed routes (`server.kernel.endpoints.build_routes`)."""

    def __init__(
        self,
        retention: timedelta,
        clock: Callable[[], datetime],
        subject_of: Callable[[str], str] | None = None,
    ) -> None:
        """`subject_of`: the pseudonym a subject ref is stored under (`subjects.pseudonym`), kept with the answer of
        a write on a route with a `{ref}` path parameter so that an erasure can delete it."""
        self.retention = retention
        self.clock = clock
        self.subject_of = subject_of
        self._in_flight: set[str] = set()  # keys being carried out in this process
        self._last_sweep: datetime | None = None

    def wrap(self, handler: Handler, mode: str) -> Handler:
        """`handler` taking an `Idempotency-Key` (`mode` optional or required); runs inside the auth guard, so the
        client is known."""

        async def keyed(request: Request) -> Response:
            header = request.headers.get(HEADER)
            if header is None:
                if mode == REQUIRED:
                    raise IdempotencyKeyInvalid(f"this route requires an {HEADER} header", parameter=HEADER)
                return await handler(request)
            key = parse_key(header)
            body = await read_body(request, body_limit(request))
            request._body = body  # what Starlette's `Request.stream` hands the handler once the body is read
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            key_id = hashlib.sha256(f"{scope_of(request)}\n{key}".encode()).hexdigest()
            subject = self._subject(request.path_params.get("ref"))
            return await self.run(request, handler, key_id, fingerprint(request.method, target, body), subject)

        keyed.__name__ = handler.__name__
        keyed.__doc__ = handler.__doc__
        return keyed

    def _subject(self, ref: object) -> str | None:
        """The stored form of the subject a route's `ref` names; None for a ref the handler will refuse anyway."""
        if self.subject_of is None or not isinstance(ref, str):
            return None
        try:
            return self.subject_of(subject_ref(ref))
        except ConsentError:
            return None

    async def run(
        self, request: Request, handler: Handler, key_id: str, request_fingerprint: str, subject: str | None = None
    ) -> Response:
        if key_id in self._in_flight:
            raise _in_flight()
        self._in_flight.add(key_id)
        try:
            response = await self._write(request, handler, key_id, request_fingerprint, subject)
        finally:
            self._in_flight.discard(key_id)
        await self._sweep_now_and_then()
        return response

    async def lookup(self, key_id: str) -> Stored | None:
        """The stored answer of a key not yet expired."""
        conn = connection()
        ph = placeholders(conn, 2)
        rows = await conn.execute_query_dict(
            "SELECT fingerprint, status, headers, body FROM idempotency_keys "
            f"WHERE id = {ph[0]} AND expires_at > {ph[1]}",
            [key_id, self.clock()],
        )
        if not rows:
            return None
        row = rows[0]
        headers = row["headers"]
        return Stored(
            row["fingerprint"],
            int(row["status"]),
            orjson.loads(headers) if isinstance(headers, str | bytes) else headers,
            bytes(row["body"]),
        )

    async def _write(
        self, request: Request, handler: Handler, key_id: str, request_fingerprint: str, subject: str | None
    ) -> Response:
        now = self.clock()
        before = _before.set(contextvars.copy_context())
        context = in_transaction()
        try:
            conn = await context.__aenter__()
        except BaseException:
            _before.reset(before)
            raise
        keyed = _Keyed(context, conn, key_id, request_fingerprint, now, now + self.retention, subject)
        token = _current.set(keyed)
        try:
            if not await _claim(keyed):
                await _commit(keyed)  # nothing was written: the transaction ends here
                stored = await self.lookup(key_id)
                if stored is None:  # another process is carrying it out
                    raise _in_flight()
                return _answer_again(stored, request_fingerprint)
            response = await handler(request)
            if not keyed.committed:
                await _store(conn, keyed, response)
                await _commit(keyed)
            elif keyed.settled is not None and bytes(response.body) != keyed.settled:
                # What the handler learnt after the commit (a mail's outcome) becomes the answer given again.
                await _amend(keyed, response)
            return response
        except BaseException as exc:
            if not keyed.committed:
                keyed.committed = True
                await context.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        finally:
            _current.reset(token)
            _before.reset(before)

    async def _sweep_now_and_then(self) -> None:
        """Delete expired keys, at most every SWEEP_EVERY in each process (after a keyed write, never in one)."""
        now = self.clock()
        if self._last_sweep is not None and now - self._last_sweep < SWEEP_EVERY:
            return
        self._last_sweep = now
        await self.sweep()

    async def sweep(self) -> int:
        """Delete every expired key; returns how many."""
        conn = connection()
        try:
            changed, _ = await conn.execute_query(
                f"DELETE FROM idempotency_keys WHERE expires_at <= {placeholders(conn, 1)[0]}", [self.clock()]
            )
        except Exception:  # a busy database: the next sweep deletes them, and expired keys are never answered
            log.warning("idempotency keys not swept", exc_info=True)
            return 0
        return int(changed or 0)


async def forget_subject(conn: BaseDBAsyncClient, subject: str) -> int:
    """Delete the stored answers of the writes that named `subject` (its pseudonym), in the caller's transaction
    (an erasure's: GDPR 17); how many. Their keys are then unknown: the same request is carried out anew."""
    changed, _ = await conn.execute_query(
        f"DELETE FROM idempotency_keys WHERE subject = {placeholders(conn, 1)[0]}", [subject]
    )
    return int(changed or 0)


async def _claim(keyed: _Keyed) -> bool:
    """Insert the key, or take over an expired row of it, as the transaction's first statement (a write: on SQLite
    it takes the write lock at once). False when the key is taken: by a committed answer not yet expired, or, on
    PostgreSQL, by another process carrying it out, which holds the key's transaction-scoped advisory lock (a 409
    rather than a wait on its row). One statement either way: no failed insert that would abort the transaction."""
    conn = keyed.conn
    values: list[object] = [keyed.key_id, keyed.request_fingerprint, keyed.now, keyed.expires_at, keyed.subject]
    if is_postgres(conn):
        lock = int.from_bytes(bytes.fromhex(keyed.key_id[:8]), "big", signed=True)
        source = "SELECT $1::varchar, $2::varchar, 0, '[]'::jsonb, ''::bytea, $3::timestamptz, $4::timestamptz, "
        source += "$5::varchar WHERE pg_try_advisory_xact_lock($6::int4, $7::int4)"
        values += [_LOCK_CLASS, lock]
    else:
        source = "VALUES (?, ?, 0, '[]', X'', ?, ?, ?)"
    rows = await conn.execute_query_dict(
        "INSERT INTO idempotency_keys (id, fingerprint, status, headers, body, created_at, expires_at, subject) "
        f"{source} ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, status = 0, "
        "headers = excluded.headers, body = excluded.body, created_at = excluded.created_at, "
        "expires_at = excluded.expires_at, subject = excluded.subject "
        "WHERE idempotency_keys.expires_at <= excluded.created_at RETURNING id",
        values,
    )
    return bool(rows)


def _in_flight() -> IdempotencyKeyInFlight:
    return IdempotencyKeyInFlight(
        "the first request with this key is still being carried out; send it again shortly", parameter=HEADER
    )


def _answer_again(stored: Stored, request_fingerprint: str) -> Response:
    if stored.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            "this key was used for another request (path, query or body); use a new key for a new request",
            parameter=HEADER,
        )
    return stored.replay()


def _headers(response: Response) -> str:
    return orjson.dumps(
        [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.raw_headers if k.decode() not in _NOT_STORED]
    ).decode()


async def _store(conn: BaseDBAsyncClient, keyed: _Keyed, response: Response) -> None:
    ph = placeholders(conn, 4)
    await conn.execute_query(
        f"UPDATE idempotency_keys SET status = {ph[0]}, headers = {ph[1]}, body = {ph[2]} WHERE id = {ph[3]}",
        [response.status_code, _headers(response), bytes(response.body), keyed.key_id],
    )


async def _commit(keyed: _Keyed) -> None:
    keyed.committed = True
    await keyed.context.__aexit__(None, None, None)
    for effect in keyed.after_commit:
        effect()


async def _amend(keyed: _Keyed, response: Response) -> None:
    """Best effort: the settled answer stays if this fails (it was true at the commit)."""
    try:
        async with in_transaction() as conn:
            await _store(conn, keyed, response)
    except Exception:
        log.warning("the answer of a keyed write was not updated after its commit", exc_info=True)
