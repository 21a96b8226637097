"""Settings, read from environment variables (and an optional `.env` file) when the app is built.

Each variable is declared once, as a field of `Settings`: its name (the field's `validation_alias`), type, default,
bounds or validator, and a one-line description. Pydantic validates every `Settings` however it is built, and
`Settings.from_env()` reads the variables through pydantic-settings: the environment wins over the `.env` file,
and only declared names are read. A refused value comes back as a `SettingsError` that names the variable and the
value (a secret's length only).

Nothing here runs at import time: `Settings.from_env()` is called by the CLI and by tests, which build their own
`Settings(...)` directly. `Settings` itself is a pydantic dataclass rather than a `BaseSettings`: built directly it
reads no environment, and `dataclasses.replace` and `with_overrides` copy it with changes, validated again.
`from_env` hands pydantic-settings the text of the variables (`_Variables`, made from the fields' aliases) and
`Settings` parses it, so a value is refused in the same words wherever it came from.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    DirectoryPath,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from server.files import create_private


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the value."""


DEFAULT_DATA_DIR = Path("data")
SCOPES = ("consent:check", "consent:read", "consent:write", "proof:read", "admin")


def _refuse(reason: str) -> PydanticCustomError:
    """A value a validator refuses; `reason` follows `NAME='value'` in the message."""
    return PydanticCustomError("setting", reason)


def _absolute_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise _refuse("is not an absolute http(s) URL")
    return value.rstrip("/")


def _database_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "sqlite" and (parts.netloc or parts.path):
        return value
    if parts.scheme in {"postgres", "postgresql", "asyncpg"} and parts.hostname:
        return value
    raise _refuse("is not supported: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE")


def _blank_is_unset(value: Any) -> Any:
    return None if value == "" else value


def _comma_separated(value: Any) -> Any:
    return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _proxies(value: tuple[str, ...]) -> tuple[str, ...]:
    for entry in value:
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise _refuse(f"names {entry!r}, neither an IP address, a CIDR network nor *") from None
    return value


AbsoluteUrl = Annotated[str, AfterValidator(_absolute_http_url)]
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_unset)]
OptionalUrl = Annotated[AbsoluteUrl | None, BeforeValidator(_blank_is_unset)]
AbsoluteUrls = Annotated[tuple[AbsoluteUrl, ...], BeforeValidator(_comma_separated)]
ProxyList = Annotated[tuple[str, ...], BeforeValidator(_comma_separated), AfterValidator(_proxies)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING"], BeforeValidator(_upper)]


# Defaults computed from the fields declared before them (pydantic passes the values validated so far).
def _default_database_url(values: dict[str, Any]) -> str:
    return f"sqlite://{values.get('data_dir', DEFAULT_DATA_DIR)}/consent.sqlite3"


def _default_signing_keys_dir(values: dict[str, Any]) -> Path:
    return Path(values.get("data_dir", DEFAULT_DATA_DIR)) / "signing-keys"


def _default_mail_dir(values: dict[str, Any]) -> Path:
    return Path(values.get("data_dir", DEFAULT_DATA_DIR)) / "mail"


def _default_stream_workers(values: dict[str, Any]) -> int:
    # PostgreSQL's workers spend part of each chunk waiting for the database: one more than the 2 cores of the
    # benchmark machine kept both busy (bench/README.md, "Stream worker processes"). Each server process has its
    # own, so that many are shared out between WEB_CONCURRENCY processes (rounded up).
    machine = 2 if str(values.get("database_url", "sqlite:")).startswith("sqlite") else 3
    return -(-machine // int(values.get("web_concurrency", 1)))


def _default_hash_threads() -> int:
    # argon2 takes a core for tens of milliseconds a hash: half the cores leave the other half to the event loop.
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True, config=ConfigDict(populate_by_name=True, extra="forbid"))
class Settings:
    """Validated configuration of one server process: a field per variable (its `validation_alias`), set by name."""

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        validation_alias="DATA_DIR",
        description="Holds the default SQLite file, signing keys, mail outbox and generated secret.key.",
    )
    database_url: DatabaseUrl = Field(
        default_factory=_default_database_url,
        validation_alias="DATABASE_URL",
        description="sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB; DATA_DIR/consent.sqlite3.",
    )
    secret_key: str = Field(
        default="",
        min_length=32,
        repr=False,
        validation_alias="SECRET_KEY",
        description="Keys sessions, links and erasure hashes; unset: generated once into DATA_DIR/secret.key.",
    )
    signing_keys_dir: Path = Field(
        default_factory=_default_signing_keys_dir,
        validation_alias="SIGNING_KEYS_DIR",
        description="The ES256 keys that sign tokens, receipts and checkpoints; DATA_DIR/signing-keys.",
    )
    public_url: AbsoluteUrl = Field(
        default="http://127.0.0.1:8000",
        validation_alias="PUBLIC_URL",
        description="Where clients reach the service: the token issuer; the API audience is PUBLIC_URL/v1.",
    )
    policy_dir: DirectoryPath = Field(
        default=Path("policy_docs"),
        validation_alias="POLICY_DIR",
        description="The directory of purposes.yaml, sites.yaml, policy texts, banner texts and answers.",
    )
    host: str = Field(default="127.0.0.1", validation_alias="HOST", description="The address the server listens on.")
    port: int = Field(
        default=8000, ge=1, le=65535, validation_alias="PORT", description="The port the server listens on."
    )
    web_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias="WEB_CONCURRENCY",
        description="Server processes `serve` starts on one port (`serve --workers N` overrides it).",
    )
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        validation_alias="HTTP_HEADER_TIMEOUT_SECONDS",
        description="A connection that has not sent a request's whole header this long after it began is closed.",
    )
    http_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        validation_alias="HTTP_BODY_TIMEOUT_SECONDS",
        description="A request whose body has not all arrived this long after the request began is answered 408.",
    )
    http_keep_alive_s: int = Field(
        default=5,
        ge=1,
        le=3600,
        validation_alias="HTTP_KEEP_ALIVE_SECONDS",
        description="How long an idle connection is kept open for another request.",
    )
    http_max_connections: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        validation_alias="HTTP_MAX_CONNECTIONS",
        description="Connections (or requests in progress) per process beyond which new requests are answered 503.",
    )
    token_lifetime_s: int = Field(
        default=900,
        ge=60,
        le=86400,
        validation_alias="TOKEN_LIFETIME_SECONDS",
        description="How long an access token is valid.",
    )
    token_cache_size: int = Field(
        default=10_000,
        ge=0,
        le=10_000_000,
        validation_alias="TOKEN_CACHE_SIZE",
        description="Verified access tokens kept until they expire (0: verify every time).",
    )
    database_acquire_timeout_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias="DATABASE_ACQUIRE_TIMEOUT_SECONDS",
        description="PostgreSQL: the longest a request waits for a pool connection (or a new one's handshake), "
        "and /readyz for its query; past it, 503 /problems/service-unavailable with Retry-After.",
    )
    ready_min_free_mb: int = Field(
        default=64,
        ge=0,
        validation_alias="READY_MIN_FREE_MB",
        description="/readyz answers 503 when a data directory (DATA_DIR, the SQLite file's, MAIL_DIR, "
        "SIGNING_KEYS_DIR) has less free space than this, in MiB, or is not writable.",
    )
    client_secret_overlap_s: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        validation_alias="CLIENT_SECRET_OVERLAP_S",
        description="After `clients rotate-secret`, how long the previous secret still works (0: not at all).",
    )
    client_refresh_s: float = Field(
        default=0.5,
        ge=0.05,
        le=5.0,
        validation_alias="CLIENT_REFRESH_SECONDS",
        description="How often each process re-reads revoked API clients and scopes (a revocation's delay).",
    )
    signin_max_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        validation_alias="SIGNIN_MAX_FAILURES",
        description="Failed staff sign-ins on one account within SIGNIN_WINDOW_SECONDS that lock it.",
    )
    signin_network_max_failures: int = Field(
        default=30,
        ge=1,
        le=100_000,
        validation_alias="SIGNIN_NETWORK_MAX_FAILURES",
        description="Failed staff sign-ins from one network (/24, /48) within the window that lock it out.",
    )
    signin_window_s: int = Field(
        default=900,
        ge=1,
        le=86_400,
        validation_alias="SIGNIN_WINDOW_SECONDS",
        description="The window in which failed sign-ins are counted, per account and per network.",
    )
    signin_lockout_s: int = Field(
        default=900,
        ge=1,
        le=7 * 86_400,
        validation_alias="SIGNIN_LOCKOUT_SECONDS",
        description="How long a locked account or network is refused, even with the right password.",
    )
    password_hash_threads: int = Field(
        default_factory=_default_hash_threads,
        ge=1,
        le=64,
        validation_alias="PASSWORD_HASH_THREADS",
        description="Threads that run argon2 for staff sign-ins (at most this many at once); half the cores.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1 << 30,
        validation_alias="MAX_BODY_BYTES",
        description="The largest request body accepted.",
    )
    catalog_ttl_s: float = Field(
        default=5.0, description="How long the purpose catalog is kept before it is read again (no variable)."
    )
    sqlite_bulk_mmap_mb: int = Field(
        default=1024,
        ge=0,
        le=2047,
        validation_alias="SQLITE_BULK_MMAP_MB",
        description="SQLite: how much of the file each bulk-read connection reads through mmap (0: read() only).",
    )
    stream_workers: int = Field(
        default_factory=_default_stream_workers,
        ge=0,
        le=64,
        validation_alias="STREAM_WORKERS",
        description="Processes that answer stream checks, per server process (0: in process); 2 on SQLite, 3 on "
        "PostgreSQL, divided between WEB_CONCURRENCY processes.",
    )
    log_level: LogLevel = Field(
        default="INFO", validation_alias="LOG_LEVEL", description="The least severe level logged."
    )
    environment: Literal["development", "production", "test"] = Field(
        default="development",
        validation_alias="ENVIRONMENT",
        description="development, test or production (SECRET_KEY required, no demo pages, recipients on https only).",
    )
    forwarded_allow_ips: ProxyList = Field(
        default=(),
        validation_alias="FORWARDED_ALLOW_IPS",
        description="Proxies whose Forwarded / X-Forwarded-* headers are believed (IPs, CIDRs, *); none by default.",
    )
    hsts_max_age_s: int = Field(
        default=31_536_000,
        ge=0,
        le=2 * 31_536_000,
        validation_alias="HSTS_MAX_AGE_SECONDS",
        description="Strict-Transport-Security max-age on answers served over https (0: no header).",
    )
    metrics_token: OptionalText = Field(
        default=None,
        min_length=16,
        repr=False,
        validation_alias="METRICS_TOKEN",
        description="The bearer token /metrics requires; unset: /metrics is open, but refused in production.",
    )
    smtp_host: OptionalText = Field(
        default=None,
        validation_alias="SMTP_HOST",
        description="The SMTP server for mails; unset: mails are written to MAIL_DIR.",
    )
    smtp_port: int = Field(
        default=587, ge=1, le=65535, validation_alias="SMTP_PORT", description="The SMTP server's port."
    )
    smtp_user: OptionalText = Field(
        default=None, validation_alias="SMTP_USER", description="The SMTP login, if it needs one."
    )
    smtp_password: OptionalText = Field(
        default=None, repr=False, validation_alias="SMTP_PASSWORD", description="The SMTP login's password."
    )
    smtp_starttls: bool = Field(
        default=True,
        validation_alias="SMTP_STARTTLS",
        description="Whether the SMTP connection is upgraded with STARTTLS.",
    )
    mail_from: str = Field(
        default="Demo Shop <no-reply@demo-shop.example>", validation_alias="MAIL_FROM", description="The mails' From."
    )
    mail_dir: Path = Field(
        default_factory=_default_mail_dir,
        validation_alias="MAIL_DIR",
        description="The outbox mails are written to when there is no SMTP_HOST; DATA_DIR/mail.",
    )
    embed_origins: AbsoluteUrls = Field(
        default=(),
        validation_alias="EMBED_ORIGINS",
        description="Origins allowed to frame the preference center (comma-separated).",
    )
    link_token_lifetime_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=90 * 24 * 3600,
        validation_alias="LINK_TOKEN_LIFETIME_SECONDS",
        description="How long a preference link is valid (unsubscribe links live at least a year).",
    )
    banner_rate_per_consent: int = Field(
        default=10,
        ge=1,
        le=100_000,
        validation_alias="BANNER_RATE_PER_CONSENT",
        description="Banner records accepted per minute for one consent id (one visitor's browser).",
    )
    banner_rate_per_network: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        validation_alias="BANNER_RATE_PER_NETWORK",
        description="Banner records accepted per minute from one network (/24 or /48), all visitors together; "
        "unset: COOKIE_RATE_PER_MINUTE, else 600.",
    )
    cookie_rate_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        validation_alias="COOKIE_RATE_PER_MINUTE",
        description="Former name of BANNER_RATE_PER_NETWORK, read when that is unset.",
    )
    redis_url: OptionalText = Field(
        default=None,
        validation_alias="REDIS_URL",
        description="Redis for the shared rate-limit counters (redis://host:6379/0); unset: the database keeps them.",
    )
    oidc_issuer: OptionalUrl = Field(
        default=None,
        validation_alias="OIDC_ISSUER",
        description="The company's OpenID Connect provider for staff sign-in; unset: local accounts only.",
    )
    oidc_client_id: OptionalText = Field(
        default=None, validation_alias="OIDC_CLIENT_ID", description="The desk's client id at the provider."
    )
    oidc_client_secret: OptionalText = Field(
        default=None, repr=False, validation_alias="OIDC_CLIENT_SECRET", description="The desk's client secret there."
    )
    oidc_role_claim: str = Field(
        default="roles",
        validation_alias="OIDC_ROLE_CLAIM",
        description="The ID token claim (a dotted path) naming the staff role.",
    )
    session_lifetime_s: int = Field(
        default=8 * 3600,
        ge=300,
        le=7 * 86400,
        validation_alias="SESSION_LIFETIME_SECONDS",
        description="How long a staff session lasts.",
    )
    dsr_reminder_days: int = Field(
        default=7,
        ge=1,
        le=30,
        validation_alias="DSR_REMINDER_DAYS",
        description="A request due within this many days is flagged in the queue and its owner reminded.",
    )
    checkpoint_interval_s: int = Field(
        default=60,
        ge=0,
        le=86400,
        validation_alias="CHECKPOINT_INTERVAL_SECONDS",
        description="How often queued events are sequenced and a checkpoint signed (0: only on demand).",
    )
    idempotency_key_hours: int = Field(
        default=24,
        ge=24,
        le=24 * 30,
        validation_alias="IDEMPOTENCY_KEY_HOURS",
        description="How long the answer of a write sent with an Idempotency-Key is kept and given again to the "
        "same key (at least 24 h); expired keys are swept.",
    )
    recipient_poll_s: int = Field(
        default=30,
        ge=0,
        le=3600,
        validation_alias="RECIPIENT_POLL_SECONDS",
        description="How often the server looks for notices due (0: none sent, run `recipients deliver`).",
    )
    dsr_reminder_poll_s: int = Field(
        default=3600,
        ge=0,
        le=86400,
        validation_alias="DSR_REMINDER_POLL_SECONDS",
        description="How often the server mails the requests' reminders due (once a day each; 0: `staff reminders`).",
    )
    lease_s: float = Field(
        default=15.0,
        ge=0.5,
        le=600,
        validation_alias="BACKGROUND_LEASE_SECONDS",
        description="A background job's lease: a process that dies is replaced at most this long plus a third after.",
    )
    recipient_timeout_s: int = Field(
        default=10,
        ge=1,
        le=120,
        validation_alias="RECIPIENT_TIMEOUT_SECONDS",
        description="One notice delivery's time limit, connection and answer included.",
    )
    recipient_retry_hours: int = Field(
        default=72,
        ge=1,
        le=24 * 30,
        validation_alias="RECIPIENT_RETRY_HOURS",
        description="How long a notice is retried before it is marked failed.",
    )

    @model_validator(mode="after")
    def _production_has_a_secret_key(self) -> Settings:
        if self.environment == "production" and not self.secret_key:
            raise PydanticCustomError(
                "settings", "SECRET_KEY is missing; it is required when ENVIRONMENT='production'."
            )
        return self

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def banner_network_limit(self) -> int:
        """Banner records a minute per network: BANNER_RATE_PER_NETWORK, else COOKIE_RATE_PER_MINUTE, else 600."""
        return self.banner_rate_per_network or self.cookie_rate_per_minute or 600

    @property
    def api_audience(self) -> str:
        return f"{self.issuer}/v1"

    def with_overrides(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
        """Build settings from `environ` (default: `os.environ`) layered over an optional `.env` file."""
        environment = os.environ if environ is None else environ
        text = {name: environment[name] for name in VARIABLES if name in environment}
        # `_env_file` is BaseSettings' own argument, which mypy knows only through pydantic's plugin.
        given = _Variables(_env_file=env_file, **text).model_dump(exclude_unset=True)  # type: ignore[call-arg]
        try:
            settings = cls(**given)
            if "SECRET_KEY" not in given:
                settings = settings.with_overrides(secret_key=_stored_secret_key(settings.data_dir))
        except ValidationError as exc:
            raise SettingsError(_refusals(exc)) from None
        return settings


FIELDS: Mapping[str, FieldInfo] = Settings.__pydantic_fields__  # type: ignore[attr-defined]  # set by the decorator
VARIABLES: Mapping[str, str] = {
    info.validation_alias: name for name, info in FIELDS.items() if isinstance(info.validation_alias, str)
}
"""Every variable `Settings.from_env` reads, and the field it sets."""


class _Environment(BaseSettings):
    """The text of each variable: the environment, given as init values, over the `.env` file."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_file_encoding="utf-8")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `from_env` passes the environment in (a test gives a mapping of its own instead of os.environ).
        return (init_settings, dotenv_settings)


# Text only: `Settings` parses it, so an error is reported the same way whether the value came from the
# environment, the file or the code.
_TEXT: dict[str, Any] = {
    name: (str | None, Field(default=None, description=FIELDS[field].description)) for name, field in VARIABLES.items()
}
_Variables = create_model("_Variables", __base__=_Environment, **_TEXT)


def _stored_secret_key(data_dir: Path) -> str:
    """The key kept in `DATA_DIR/secret.key`, generated (random, readable by the owner only) the first time."""
    path = data_dir / "secret.key"
    if path.is_file():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    with os.fdopen(create_private(path), "w") as handle:  # 0600, in a folder created 0700
        handle.write(key + "\n")
    return key


def _refusals(exc: ValidationError) -> str:
    """Every refused value, one a line. A default computed from a refused value is not reported again."""
    return "\n".join(_refusal(error) for error in exc.errors() if error["type"] != "default_factory_not_called")


def _refusal(error: ErrorDetails) -> str:
    """One refused value as a sentence naming the variable and its value (a secret's length instead)."""
    if not error["loc"]:  # a rule between variables: its message names them
        return error["msg"]
    key = str(error["loc"][0])
    field = VARIABLES.get(key, key)
    info = FIELDS[field]
    name = info.validation_alias if isinstance(info.validation_alias, str) else field
    value = error["input"]
    kind = error["type"]
    if kind == "setting":
        reason = error["msg"]
    elif kind in {"int_parsing", "int_type", "int_from_float"}:
        reason = "is not an integer"
    elif kind in {"greater_than_equal", "less_than_equal"}:
        bounds = {end: getattr(bound, end) for bound in info.metadata for end in ("ge", "le") if hasattr(bound, end)}
        reason = f"is out of range [{bounds.get('ge')}, {bounds.get('le')}]"
    elif kind in {"bool_parsing", "bool_type"}:
        reason = "is not a boolean (true/false)"
    elif kind == "literal_error":
        reason = f"is not one of {sorted(get_args(info.annotation))}"
    elif kind == "path_not_directory":
        reason = "is not a directory"
    elif kind == "string_too_short" and not info.repr:
        length = len(value) if isinstance(value, str) else 0
        return f"{name} is too short ({length} characters); use at least {error.get('ctx', {}).get('min_length')}."
    else:
        reason = f"is not valid ({error['msg']})"
    if not info.repr:  # a secret: never written to logs, even a bad one
        return f"{name} {reason}."
    return f"{name}={value!r} {reason}."
