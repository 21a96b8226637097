"""Settings, read from environment variables (and an optional `.env` file) when the app is built.

Nothing here runs at import time: `Settings.from_env()` is called by the CLI and by tests, which build their own
`Settings(...)` directly. Every error names the variable and the value that was refused.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the value."""


DEFAULT_DATA_DIR = Path("data")
SCOPES = ("consent:check", "consent:read", "consent:write", "proof:read", "admin")


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one server process."""

    database_url: str = f"sqlite://{DEFAULT_DATA_DIR}/consent.sqlite3"
    secret_key: str = ""
    signing_keys_dir: Path = DEFAULT_DATA_DIR / "signing-keys"
    public_url: str = "http://127.0.0.1:8000"
    policy_dir: Path = Path("policy_docs")
    host: str = "127.0.0.1"
    port: int = 8000
    token_lifetime_s: int = 900
    token_cache_size: int = 10_000
    max_body_bytes: int = 1024 * 1024
    catalog_ttl_s: float = 5.0
    # SQLite: bytes of the database file each bulk-read connection (batch and stream checks) reads through mmap.
    sqlite_bulk_mmap_mb: int = 1024
    # Worker processes that answer stream checks (server.consent.stream_workers); 0 answers them in process.
    # STREAM_WORKERS; unset: 2 on SQLite, 3 on PostgreSQL.
    stream_workers: int = 2
    log_level: str = "INFO"
    environment: str = "development"
    # Mail (double opt-in, preference links). No SMTP_HOST: mails are written to MAIL_DIR (dev outbox).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    mail_from: str = "Demo Shop <no-reply@demo-shop.example>"
    mail_dir: Path = DEFAULT_DATA_DIR / "mail"
    # Embedding: origins allowed to frame the preference center (CSP frame-ancestors), link lifetime.
    embed_origins: tuple[str, ...] = ()
    link_token_lifetime_s: int = 7 * 24 * 3600
    # Public banner endpoint: accepted records per minute per truncated IP.
    cookie_rate_per_minute: int = 30
    # Service desk: the company's OpenID Connect provider (optional), staff sessions, request reminders.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_role_claim: str = "roles"
    session_lifetime_s: int = 8 * 3600
    dsr_reminder_days: int = 7
    # Transparency log: how often queued events are sequenced and a checkpoint signed (0: only on demand).
    checkpoint_interval_s: int = 60
    # Recipients (GDPR 19): how often the server looks for notices due for a retry (a change queuing notices wakes it
    # at once; 0: no sending in the server, only `python -m server recipients deliver`), how long one delivery may
    # take, and for how long a notice is retried before it is marked failed.
    recipient_poll_s: int = 30
    recipient_timeout_s: int = 10
    recipient_retry_hours: int = 72
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def api_audience(self) -> str:
        return f"{self.issuer}/v1"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
        """Build settings from `environ` (default: `os.environ`) layered over an optional `.env` file."""
        values: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        data_dir = Path(values.get("DATA_DIR", str(DEFAULT_DATA_DIR)))
        environment = _choice(
            "ENVIRONMENT", values.get("ENVIRONMENT", "development"), {"development", "production", "test"}
        )
        if environment == "production" and "SECRET_KEY" not in values:
            raise SettingsError("SECRET_KEY is missing; it is required when ENVIRONMENT='production'.")
        database_url = _database_url(values.get("DATABASE_URL", f"sqlite://{data_dir}/consent.sqlite3"))
        # PostgreSQL's workers spend part of each chunk waiting for the database: one more than a 2-core machine's
        # cores keeps both busy (bench/README.md, "Stream worker processes").
        stream_workers = values.get("STREAM_WORKERS", "2" if database_url.startswith("sqlite") else "3")
        settings = cls(
            database_url=database_url,
            secret_key=_secret_key(values.get("SECRET_KEY"), data_dir),
            signing_keys_dir=Path(values.get("SIGNING_KEYS_DIR", str(data_dir / "signing-keys"))),
            public_url=_url("PUBLIC_URL", values.get("PUBLIC_URL", "http://127.0.0.1:8000")),
            policy_dir=_existing_dir("POLICY_DIR", values.get("POLICY_DIR", "policy_docs")),
            host=values.get("HOST", "127.0.0.1"),
            port=_int("PORT", values.get("PORT", "8000"), 1, 65535),
            token_lifetime_s=_int("TOKEN_LIFETIME_SECONDS", values.get("TOKEN_LIFETIME_SECONDS", "900"), 60, 86400),
            token_cache_size=_int("TOKEN_CACHE_SIZE", values.get("TOKEN_CACHE_SIZE", "10000"), 0, 10_000_000),
            sqlite_bulk_mmap_mb=_int("SQLITE_BULK_MMAP_MB", values.get("SQLITE_BULK_MMAP_MB", "1024"), 0, 2047),
            stream_workers=_int("STREAM_WORKERS", stream_workers, 0, 64),
            max_body_bytes=_int("MAX_BODY_BYTES", values.get("MAX_BODY_BYTES", str(1024 * 1024)), 1024, 1 << 30),
            log_level=_choice("LOG_LEVEL", values.get("LOG_LEVEL", "INFO").upper(), {"DEBUG", "INFO", "WARNING"}),
            environment=environment,
            smtp_host=values.get("SMTP_HOST") or None,
            smtp_port=_int("SMTP_PORT", values.get("SMTP_PORT", "587"), 1, 65535),
            smtp_user=values.get("SMTP_USER") or None,
            smtp_password=values.get("SMTP_PASSWORD") or None,
            smtp_starttls=_bool("SMTP_STARTTLS", values.get("SMTP_STARTTLS", "true")),
            mail_from=values.get("MAIL_FROM", "Demo Shop <no-reply@demo-shop.example>"),
            mail_dir=Path(values.get("MAIL_DIR", str(data_dir / "mail"))),
            embed_origins=tuple(
                _url("EMBED_ORIGINS", o.strip()) for o in values.get("EMBED_ORIGINS", "").split(",") if o.strip()
            ),
            link_token_lifetime_s=_int(
                "LINK_TOKEN_LIFETIME_SECONDS",
                values.get("LINK_TOKEN_LIFETIME_SECONDS", str(7 * 24 * 3600)),
                60,
                90 * 24 * 3600,
            ),
            oidc_issuer=_url("OIDC_ISSUER", values["OIDC_ISSUER"]) if values.get("OIDC_ISSUER") else None,
            oidc_client_id=values.get("OIDC_CLIENT_ID") or None,
            oidc_client_secret=values.get("OIDC_CLIENT_SECRET") or None,
            oidc_role_claim=values.get("OIDC_ROLE_CLAIM", "roles"),
            session_lifetime_s=_int(
                "SESSION_LIFETIME_SECONDS", values.get("SESSION_LIFETIME_SECONDS", str(8 * 3600)), 300, 7 * 86400
            ),
            dsr_reminder_days=_int("DSR_REMINDER_DAYS", values.get("DSR_REMINDER_DAYS", "7"), 1, 30),
            checkpoint_interval_s=_int(
                "CHECKPOINT_INTERVAL_SECONDS", values.get("CHECKPOINT_INTERVAL_SECONDS", "60"), 0, 86400
            ),
            cookie_rate_per_minute=_int(
                "COOKIE_RATE_PER_MINUTE", values.get("COOKIE_RATE_PER_MINUTE", "30"), 1, 100000
            ),
            recipient_poll_s=_int("RECIPIENT_POLL_SECONDS", values.get("RECIPIENT_POLL_SECONDS", "30"), 0, 3600),
            recipient_timeout_s=_int(
                "RECIPIENT_TIMEOUT_SECONDS", values.get("RECIPIENT_TIMEOUT_SECONDS", "10"), 1, 120
            ),
            recipient_retry_hours=_int("RECIPIENT_RETRY_HOURS", values.get("RECIPIENT_RETRY_HOURS", "72"), 1, 24 * 30),
        )
        return settings


def _database_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "sqlite" and (parts.netloc or parts.path):
        return value
    if parts.scheme in {"postgres", "postgresql", "asyncpg"} and parts.hostname:
        return value
    raise SettingsError(
        f"DATABASE_URL={value!r} is not supported: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE."
    )


def _secret_key(value: str | None, data_dir: Path) -> str:
    """Return SECRET_KEY, or (for the embedded default) a random key kept in `DATA_DIR/secret.key`."""
    if value is not None:
        if len(value) < 32:
            raise SettingsError(f"SECRET_KEY is too short ({len(value)} characters); use at least 32.")
        return value
    path = data_dir / "secret.key"
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(f"{name}={value!r} is not an absolute http(s) URL.")
    return value.rstrip("/")


def _existing_dir(name: str, value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise SettingsError(f"{name}={value!r} is not a directory.")
    return path


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an integer.") from None
    if not low <= number <= high:
        raise SettingsError(f"{name}={value!r} is out of range [{low}, {high}].")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean (true/false).")


def _choice(name: str, value: str, allowed: set[str]) -> str:
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {sorted(allowed)}.")
    return value
