"""`proof verify` on a damaged zip: a member with a bad CRC, corrupt compressed data or a truncated archive is a FAIL
line naming it, never a traceback; the rest of the bundle is still checked."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.helpers.api import record


def _bundle(client: TestClient, auth: dict[str, str]) -> bytes:
    record(client, auth, "zip-1", [("offers", "email", "grant"), ("offers", "sms", "grant")])
    response = client.get("/v1/subjects/zip-1/proof", headers=auth)
    assert response.status_code == 200, response.text
    return response.content


def _stored(data: bytes) -> bytes:
    """The same bundle with every member stored uncompressed: a flipped byte is then a pure CRC error."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in source.namelist():
            archive.writestr(name, source.read(name))
    return out.getvalue()


def _flip_inside(data: bytes, member: str) -> bytes:
    """Flip one byte in the middle of `member`'s data, leaving the zip's structure intact."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    at = start + info.compress_size // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "proof", "verify", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("damage", ["bad CRC", "corrupt deflate data", "truncated archive"])
def test_a_damaged_member_is_a_fail_line_not_a_traceback(
    client: TestClient, auth: dict[str, str], tmp_path: Path, damage: str
) -> None:
    data = _bundle(client, auth)
    if damage == "bad CRC":
        damaged = _flip_inside(_stored(data), "events.json")
    elif damage == "corrupt deflate data":
        damaged = _flip_inside(data, "events.json")
    else:
        damaged = data[: len(data) // 2]
    path = tmp_path / "damaged.zip"
    path.write_bytes(damaged)
    done = _verify(path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "VERDICT: the bundle does NOT verify" in done.stdout
    expected = "FAIL  bundle: not a readable zip" if damage == "truncated archive" else "FAIL  events.json: damaged"
    assert expected in done.stdout, done.stdout
    if damage != "truncated archive":
        # The other members are still checked: the manifest's signature verifies, events.json is missing.
        assert "OK    manifest: signature verified" in done.stdout, done.stdout
        assert "FAIL  file events.json: listed in the manifest but missing" in done.stdout, done.stdout
