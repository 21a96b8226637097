"""Settings from the environment and `.env`: defaults, validation that names the variable, no work at import."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from server.settings import FIELDS, VARIABLES, Settings, SettingsError
from tests.databases import POLICY_DIR
from tests.helpers.paths import REPO

SECRET = "s" * 40
README = REPO / "README.md"


def valid_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A complete, valid environment that touches nothing outside `tmp_path`."""
    return {"DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": SECRET, "POLICY_DIR": str(POLICY_DIR), **overrides}


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy_docs").mkdir()
    settings = Settings.from_env({}, env_file=None)
    assert settings.database_url == "sqlite://data/consent.sqlite3"
    assert settings.signing_keys_dir == Path("data/signing-keys")
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.api_audience == "http://127.0.0.1:8000/v1"
    assert settings.policy_dir == Path("policy_docs")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.token_lifetime_s == 900
    assert settings.max_body_bytes == 1048576
    assert settings.sqlite_bulk_mmap_mb == 1024
    assert settings.stream_workers == 2
    assert Settings.from_env({"DATABASE_URL": "postgres://u@db/consent"}, env_file=None).stream_workers == 3
    assert (
        Settings.from_env({"DATABASE_URL": "postgres://u@db/c", "STREAM_WORKERS": "0"}, env_file=None).stream_workers
        == 0
    )
    # Several server processes share the machine's stream workers out, rounded up.
    assert Settings.from_env({"WEB_CONCURRENCY": "2"}, env_file=None).stream_workers == 1
    postgres_two = Settings.from_env({"DATABASE_URL": "postgres://u@db/c", "WEB_CONCURRENCY": "2"}, env_file=None)
    assert (postgres_two.web_concurrency, postgres_two.stream_workers) == (2, 2)
    assert settings.web_concurrency == 1
    assert (settings.http_header_timeout_s, settings.http_body_timeout_s) == (10.0, 30.0)
    assert (settings.http_keep_alive_s, settings.http_max_connections) == (5, 1000)
    assert (settings.lease_s, settings.dsr_reminder_poll_s) == (15.0, 3600)
    assert settings.log_level == "INFO"
    assert settings.environment == "development"
    # no SECRET_KEY: one is generated into DATA_DIR (default ./data)
    assert settings.secret_key == (tmp_path / "data" / "secret.key").read_text().strip()
    assert len(settings.secret_key) >= 32


def test_data_dir_moves_the_embedded_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(valid_env(tmp_path), env_file=None)
    assert settings.database_url == f"sqlite://{tmp_path / 'data'}/consent.sqlite3"
    assert settings.signing_keys_dir == tmp_path / "data" / "signing-keys"
    assert settings.secret_key == SECRET
    assert not (tmp_path / "data" / "secret.key").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "postgres:///nohost"),
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("PORT", "0"),
        ("PUBLIC_URL", "ftp://x"),
        ("PUBLIC_URL", "127.0.0.1:8000"),
        ("LOG_LEVEL", "LOUD"),
        ("ENVIRONMENT", "staging"),
        ("TOKEN_LIFETIME_SECONDS", "10"),
        ("MAX_BODY_BYTES", "lots"),
        ("SQLITE_BULK_MMAP_MB", "-1"),
        ("SQLITE_BULK_MMAP_MB", "4096"),
        ("STREAM_WORKERS", "-1"),
        ("STREAM_WORKERS", "many"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/8,proxy.internal"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.300"),
        ("HSTS_MAX_AGE_SECONDS", "-1"),
    ],
)
def test_bad_value_names_variable_and_value(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(valid_env(tmp_path, **{name: value}), env_file=None)
    assert f"{name}={value!r}" in str(refused.value)


def test_policy_dir_must_be_a_directory(tmp_path: Path) -> None:
    a_file = tmp_path / "purposes.yaml"
    a_file.write_text("channels: []\n")
    for value in (str(a_file), str(tmp_path / "missing")):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env(valid_env(tmp_path, POLICY_DIR=value), env_file=None)
        assert f"POLICY_DIR={value!r}" in str(refused.value)


def test_forwarded_allow_ips_are_read_as_uvicorn_writes_them(tmp_path: Path) -> None:
    read = Settings.from_env(valid_env(tmp_path, FORWARDED_ALLOW_IPS=" 127.0.0.1, 10.0.0.0/8 ,::1,"), env_file=None)
    assert read.forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert Settings.from_env(valid_env(tmp_path, FORWARDED_ALLOW_IPS="*"), env_file=None).forwarded_allow_ips == ("*",)
    assert Settings.from_env(valid_env(tmp_path), env_file=None).forwarded_allow_ips == ()


def test_a_short_metrics_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(valid_env(tmp_path, METRICS_TOKEN="scrape-me"), env_file=None)
    assert "METRICS_TOKEN is too short (9 characters)" in str(refused.value)
    assert "scrape-me" not in str(refused.value)


def test_short_secret_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """The message names SECRET_KEY and its length; a secret, even a bad one, is not written to logs."""
    short = "tooshort-secret"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(valid_env(tmp_path, SECRET_KEY=short), env_file=None)
    message = str(refused.value)
    assert "SECRET_KEY" in message
    assert f"({len(short)} characters)" in message
    assert short not in message


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    env = valid_env(tmp_path, ENVIRONMENT="production")
    del env["SECRET_KEY"]
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env, env_file=None)
    assert "SECRET_KEY" in str(refused.value)
    assert "ENVIRONMENT='production'" in str(refused.value)
    assert Settings.from_env({**env, "SECRET_KEY": SECRET}, env_file=None).environment == "production"


def test_env_file_is_read_and_environment_overrides_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nPORT=9001\nLOG_LEVEL=debug\nPUBLIC_URL=https://consent.example/\nHOST=localhost\n", encoding="utf-8"
    )
    settings = Settings.from_env(valid_env(tmp_path, PORT="9002"), env_file=env_file)
    assert settings.port == 9002  # the environment wins
    assert settings.log_level == "DEBUG"
    assert settings.public_url == "https://consent.example"
    assert settings.api_audience == "https://consent.example/v1"
    assert settings.host == "localhost"

    ignored = Settings.from_env(valid_env(tmp_path), env_file=None)
    assert (ignored.port, ignored.host) == (8000, "127.0.0.1")
    # a bad value in the file is reported like one in the environment
    env_file.write_text("PORT=abc\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="PORT='abc'"):
        Settings.from_env(valid_env(tmp_path), env_file=env_file)
    assert Settings.from_env(valid_env(tmp_path, PORT="8080"), env_file=env_file).port == 8080


def test_generated_secret_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    env = {"DATA_DIR": str(data_dir), "POLICY_DIR": str(POLICY_DIR)}
    first = Settings.from_env(env, env_file=None)
    key_file = data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    assert key_file.read_text() == first.secret_key + "\n"
    inode = key_file.stat().st_ino
    second = Settings.from_env(env, env_file=None)
    assert second.secret_key == first.secret_key
    assert key_file.stat().st_ino == inode
    assert [p.name for p in data_dir.iterdir()] == ["secret.key"]


def _python(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "POLICY_DIR", "PORT"}}
    return subprocess.run(
        [sys.executable, *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_app_reads_no_environment(tmp_path: Path) -> None:
    bad = {"DATABASE_URL": "mysql://bad", "POLICY_DIR": str(tmp_path / "nope"), "PORT": "abc", "DATA_DIR": "x"}
    done = _python(
        ["-c", "import server.app, server.models, server.api.routes, server.cli, server.db, server.migrate"],
        bad,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created at import (no data dir, no key file)


def test_cli_reports_a_bad_setting_and_exits_2(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    env = {
        "PORT": "abc",
        "DATABASE_URL": f"sqlite://{database}",
        "SECRET_KEY": SECRET,
        "POLICY_DIR": str(POLICY_DIR),
        "DATA_DIR": str(tmp_path / "data"),
    }
    done = _python(["-m", "server", "migrate"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "PORT='abc'" in done.stderr
    assert not database.exists()  # refused before touching the database


def test_os_environ_is_read_when_no_mapping_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in valid_env(tmp_path, PORT="9003", EMBED_ORIGINS="https://a.example/, https://b.example").items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(env_file=None)
    assert settings.port == 9003
    assert settings.embed_origins == ("https://a.example", "https://b.example")


def test_building_settings_directly_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9004")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/consent")
    settings = Settings(secret_key=SECRET, policy_dir=POLICY_DIR)
    assert (settings.port, settings.database_url) == (8000, "sqlite://data/consent.sqlite3")


def test_data_dir_moves_the_mail_outbox_too(tmp_path: Path) -> None:
    assert Settings.from_env(valid_env(tmp_path), env_file=None).mail_dir == tmp_path / "data" / "mail"
    moved = Settings.from_env(valid_env(tmp_path, MAIL_DIR=str(tmp_path / "outbox")), env_file=None)
    assert moved.mail_dir == tmp_path / "outbox"


def test_every_refused_value_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(valid_env(tmp_path, PORT="abc", SMTP_STARTTLS="maybe", OIDC_ISSUER="idp"), env_file=None)
    assert str(refused.value).splitlines() == [
        "PORT='abc' is not an integer.",
        "SMTP_STARTTLS='maybe' is not a boolean (true/false).",
        "OIDC_ISSUER='idp' is not an absolute http(s) URL.",
    ]


def test_overrides_are_validated_and_secrets_stay_out_of_the_repr(tmp_path: Path) -> None:
    settings = Settings.from_env(valid_env(tmp_path, SMTP_PASSWORD="smtp-secret"), env_file=None)
    assert settings.with_overrides(port=8001).port == 8001
    with pytest.raises(ValueError, match="port"):
        settings.with_overrides(port=0)
    assert SECRET not in repr(settings)
    assert "smtp-secret" not in repr(settings)


def test_the_env_file_sets_declared_variables_only(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9005\nNOT_A_SETTING=1\nport=1\n", encoding="utf-8")
    assert Settings.from_env(valid_env(tmp_path), env_file=env_file).port == 9005


def test_every_variable_is_declared_with_a_one_line_description() -> None:
    assert "PORT" in VARIABLES
    assert "DATA_DIR" in VARIABLES
    for name, field in VARIABLES.items():
        description = FIELDS[field].description or ""
        assert description.strip(), name
        assert "\n" not in description, name


def _readme_settings_table() -> set[str]:
    """The variables named in the first column of the README's settings table."""
    section = README.read_text(encoding="utf-8").split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows[:2] == ["| variable | default |", "| --- | --- |"]
    return {name for row in rows[2:] for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


def test_the_readme_table_lists_exactly_the_declared_variables() -> None:
    listed = _readme_settings_table()
    declared = set(VARIABLES)
    assert sorted(declared - listed) == [], "declared in server/settings.py, missing from README.md"
    assert sorted(listed - declared) == [], "named in README.md, not declared in server/settings.py"
