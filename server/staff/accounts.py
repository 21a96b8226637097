"""Staff accounts: local accounts with argon2 password hashes, and accounts from the company's OpenID Connect
provider. Sign-in failures all get the same message; failures are counted per account and per network
(`server.staff.throttle`), and too many lock the account, or the network for every account, for a while."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from server.errors import ConsentError, InvalidRequest
from server.models import StaffAccount
from server.staff import throttle
from server.staff.roles import ROLES
from server.staff.throttle import Limits
from server.subjects.contact import normalise_email

T = TypeVar("T")
MIN_PASSWORD = 12
# Argon2 is deliberately slow (tens of milliseconds of CPU and 64 MiB a hash at the default cost): every hash and
# verification runs on a pool of its own, never on the event loop, and nothing is hashed at import time. The pool is
# small (PASSWORD_HASH_THREADS, half the cores) so that a flood of sign-ins waits in its queue instead of taking
# every core from the event loop (consent checks) and every thread of the default executor; argon2-cffi releases
# the GIL while it hashes.
_hasher = PasswordHasher()
_pool: ThreadPoolExecutor | None = None
_pool_threads = max(1, (os.cpu_count() or 2) // 2)
# Verified against when the email is unknown, so a wrong email costs the same time as a wrong password; made on
# first use, by the hasher in use.
_dummy: tuple[PasswordHasher, str] | None = None


class SignInRefused(ConsentError):
    """Wrong email, wrong password, locked or disabled account: one generic message for all (no enumeration)."""

    status = 401
    slug = "sign-in-refused"
    title = "Sign-in refused"

    def __init__(self, detail: str = "The email or the password is not right, or the account is locked.") -> None:
        super().__init__(detail)


@dataclass(frozen=True)
class NewAccount:
    account: StaffAccount
    password: str | None  # the generated password, shown once; None when the caller chose it


def set_hash_threads(threads: int) -> None:
    """How many argon2 computations run at once in this process (the desk sets PASSWORD_HASH_THREADS)."""
    global _pool, _pool_threads
    if threads != _pool_threads and _pool is not None:
        _pool.shutdown(wait=False)
        _pool = None
    _pool_threads = threads


async def _hashing(fn: Callable[..., T], *args: object) -> T:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_pool_threads, thread_name_prefix="argon2")
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)


async def hash_password(password: str) -> str:
    return await _hashing(_hasher.hash, password)


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"role {role!r} is not one of {', '.join(ROLES)}", parameter="role")
    return role


async def create_staff(email: str, name: str, role: str, password: str | None = None) -> NewAccount:
    """A local account that can sign in at once; a password is generated when none is given."""
    address = normalise_email(email)
    if not name.strip() or len(name) > 128:
        raise InvalidRequest("the name must be 1-128 characters", parameter="name")
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(15)
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"the password must be at least {MIN_PASSWORD} characters", parameter="password")
    try:
        account = await StaffAccount.create(
            email=address, name=name.strip(), role=_role(role), password_hash=await hash_password(password)
        )
    except IntegrityError:
        raise InvalidRequest(f"an account with the email {address} already exists", parameter="email") from None
    return NewAccount(account, generated)


async def authenticate(
    email: str, password: str, now: datetime, *, network: str | None = None, limits: Limits | None = None
) -> StaffAccount:
    """The account if the password is right and neither the account nor the client's `network` (its address cut
    to /24 or /48) is locked, else `SignInRefused`. Every attempt costs one argon2 verification, whatever the
    reason it is refused, so the time taken tells nothing about the account."""
    try:
        address = normalise_email(email)
    except InvalidRequest:
        address = ""
    account = await StaffAccount.get_or_none(email=address) if address else None
    limits = limits or Limits()
    at = now.timestamp()
    keys = [(throttle.network_key(network), limits.network_failures)]
    if account is not None:
        keys.append((throttle.account_key(account.id), limits.account_failures))
    allowed = [await throttle.attempt(key, most, at, limits) for key, most in keys]
    usable = account is not None and account.disabled_at is None and all(allowed)
    hashed = account.password_hash if usable and account is not None else None
    matched = await _verify(hashed or await _dummy_hash(), password)
    if account is None or hashed is None or not matched:
        for key, most in keys:
            await throttle.failed(key, most, at, limits)
        raise SignInRefused()
    for key, _ in keys:
        await throttle.forgive(key, account=key.startswith("account:"))
    changes: dict[str, object] = {"last_login_at": now}
    if _hasher.check_needs_rehash(hashed):
        changes["password_hash"] = await hash_password(password)
    await StaffAccount.filter(id=account.id).update(**changes)
    return account


async def _verify(hashed: str, password: str) -> bool:
    return await _hashing(_matches, _hasher, hashed, password)


def _matches(hasher: PasswordHasher, hashed: str, password: str) -> bool:
    try:
        return hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def _dummy_hash() -> str:
    global _dummy
    hasher = _hasher
    if _dummy is None or _dummy[0] is not hasher:
        _dummy = (hasher, await _hashing(hasher.hash, secrets.token_urlsafe(16)))
    return _dummy[1]


async def oidc_account(
    *, issuer: str, subject: str, email: str | None, name: str | None, role: str, now: datetime
) -> StaffAccount:
    """The account of an OpenID Connect user, created on first sign-in. The provider is authoritative for the
    role, so it is updated at every sign-in. A disabled account stays refused."""
    account = await StaffAccount.get_or_none(oidc_issuer=issuer, oidc_subject=subject)
    if account is None:
        address = _oidc_email(email, subject, issuer)
        existing = await StaffAccount.get_or_none(email=address)
        if existing is not None:
            # The same person has a local account: never bind it silently to a provider identity.
            raise SignInRefused("An account with this email already exists; ask an administrator.")
        try:
            account = await StaffAccount.create(
                email=address,
                name=(name or address)[:128],
                role=_role(role),
                oidc_issuer=issuer,
                oidc_subject=subject,
            )
        except IntegrityError:
            raise SignInRefused() from None
    if account.disabled_at is not None:
        raise SignInRefused("This account is disabled.")
    await StaffAccount.filter(id=account.id).update(role=_role(role), last_login_at=now)
    account.role = role
    return account


def _oidc_email(email: str | None, subject: str, issuer: str) -> str:
    if email:
        try:
            return normalise_email(email)
        except InvalidRequest:
            pass
    host = issuer.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "oidc.invalid"
    return f"{subject[:64]}@{host}"


async def set_role(account_id: int, role: str) -> None:
    await StaffAccount.filter(id=account_id).update(role=_role(role))


async def set_disabled(account_id: int, disabled_at: datetime | None) -> None:
    """Disabling also ends every session (the epoch moves on)."""
    account = await StaffAccount.get(id=account_id)
    await StaffAccount.filter(id=account_id).update(disabled_at=disabled_at, session_epoch=account.session_epoch + 1)


async def end_sessions(account_id: int) -> None:
    await StaffAccount.filter(id=account_id).update(session_epoch=F("session_epoch") + 1)
