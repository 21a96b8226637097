"""Verified tokens are cached until they expire, in a bounded cache (issue: consent-check API, item 5)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from server.auth.keys import KeyStore
from server.auth.tokens import AccessToken, TokenService
from server.errors import AuthenticationRequired


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
