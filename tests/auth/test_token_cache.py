"""Verified tokens are cached until they expire, in a bounded cache (issue: consent-check API, item 5)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from server.auth.keys import KeyStore
from server.auth.revocation import ClientState, ClientView
from server.auth.tokens import AccessToken, TokenService
from server.errors import AuthenticationRequired, DatabaseBusy


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _service(tmp_path: Path, clock: Clock, size: int) -> TokenService:
    keys = KeyStore(tmp_path / "keys").load()
    return TokenService(keys, "http://issuer", "http://issuer/v1", lifetime_s=900, cache_size=size, now=clock)


def test_a_cached_token_skips_the_signature_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    service = _service(tmp_path, clock, size=100)
    token, _ = service.issue("cl_1", ["consent:check"])
    calls = []
    real = service._verify_signature_and_claims

    def counting(value: str) -> AccessToken:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(service, "_verify_signature_and_claims", counting)
    for _ in range(50):
        assert service.verify(token).client_id == "cl_1"
    assert len(calls) == 1


def test_the_cache_is_bounded_and_forgets_expired_tokens(tmp_path: Path) -> None:
    clock = Clock()
    service = _service(tmp_path, clock, size=3)
    tokens = [service.issue(f"cl_{i}", ["consent:check"])[0] for i in range(5)]
    for token in tokens:
        service.verify(token)
    assert len(service._cache) == 3
    clock.now += 901
    with pytest.raises(AuthenticationRequired, match="expired"):
        service.verify(tokens[-1])  # cached, but past its exp: refused and dropped
    assert tokens[-1] not in service._cache
    with pytest.raises(AuthenticationRequired):
        service.verify(tokens[0])  # not cached: the full check refuses it too


def test_a_tampered_token_is_never_served_from_the_cache(tmp_path: Path) -> None:
    clock = Clock()
    service = _service(tmp_path, clock, size=10)
    token, _ = service.issue("cl_1", ["consent:check"])
    service.verify(token)
    head, body, signature = token.split(".")
    # Flip a bit of the signature itself: replacing its last characters with a fixed "AA" left the token
    # unchanged whenever the signature already ended that way (1 run in 256).
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert tampered != signature
    with pytest.raises(AuthenticationRequired):
        service.verify(f"{head}.{body}.{tampered}")


def _viewed(tmp_path: Path, clock: Clock, states: dict[str, ClientState]) -> TokenService:
    """A service whose client view was loaded at `clock` time with `states` (as `ClientView.refresh` leaves it)."""
    view = ClientView(stale_after_s=5.0, wall=clock)
    view.states, view.loaded_at, view.fresh_at = states, clock(), time.monotonic()
    keys = KeyStore(tmp_path / "keys").load()
    return TokenService(
        keys, "http://issuer", "http://issuer/v1", lifetime_s=900, cache_size=10, now=clock, clients=view
    )


def test_the_client_view_refuses_cached_tokens_it_no_longer_stands_for(tmp_path: Path) -> None:
    clock = Clock()
    scopes = frozenset({"consent:check", "consent:read"})
    service = _viewed(tmp_path, clock, {"cl_1": ClientState(generation=0, scopes=scopes, revoked=False)})
    token, _ = service.issue("cl_1", ["consent:check"], generation=0)
    assert service.verify(token).generation == 0  # cached from here on
    view = service.clients
    view.states = {"cl_1": ClientState(generation=0, scopes=frozenset({"consent:read"}), revoked=False)}
    with pytest.raises(AuthenticationRequired, match="scope"):
        service.verify(token)
    view.states = {"cl_1": ClientState(generation=1, scopes=scopes, revoked=False)}
    with pytest.raises(AuthenticationRequired, match="revoked"):
        service.verify(token)
    view.states = {"cl_1": ClientState(generation=0, scopes=scopes, revoked=True)}
    with pytest.raises(AuthenticationRequired, match="revoked"):
        service.verify(token)
    view.states = {}  # a view loaded in the token's own second may predate the client: the token stands
    assert service.verify(token).client_id == "cl_1"
    view.loaded_at = clock() + 2  # a later load without the client: it was deleted
    with pytest.raises(AuthenticationRequired, match="no longer exists"):
        service.verify(token)


def test_a_view_that_could_not_be_refreshed_lately_answers_busy(tmp_path: Path) -> None:
    clock = Clock()
    service = _viewed(tmp_path, clock, {"cl_1": ClientState(0, frozenset({"consent:check"}), False)})
    token, _ = service.issue("cl_1", ["consent:check"])
    service.verify(token)
    service.clients.fresh_at = time.monotonic() - 6
    with pytest.raises(DatabaseBusy):
        service.verify(token)
    service.clients.fresh_at = time.monotonic()
    assert service.verify(token).client_id == "cl_1"
