"""A real nginx (Debian's package, `/usr/sbin/nginx`) in front of a server under test, on loopback.

The configuration is the one `docs/operations.md` ("Behind a reverse proxy") gives operators, read from that file,
with the test's loopback ports and a self-signed certificate made for the test, in either of its two variants
(`X-Forwarded-*`, or RFC 7239 `Forwarded`). Its https server block is also served on a plain listener, to see what
the service answers over http. nginx runs in the foreground (`daemon off`) in one process (`master_process off`: no
workers to switch user), its pid, logs and temporary files in a directory of the test's own.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NGINX = "/usr/sbin/nginx"

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
VARIANTS = ("x-forwarded", "forwarded")
# The lines of the documented server block that the Forwarded variant replaces (docs/operations.md says so).
X_FORWARDED_LINES = re.compile(
    r"^    proxy_set_header X-Forwarded-For .*?^    proxy_set_header Forwarded \"\";[^\n]*\n", re.MULTILINE | re.DOTALL
)


def documented() -> tuple[str, str]:
    """The nginx configuration of docs/operations.md ("Behind a reverse proxy"), and its Forwarded variant's lines."""
    section = OPERATIONS.read_text(encoding="utf-8").split("\n## Behind a reverse proxy\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```nginx\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 2, "docs/operations.md: the configuration and the Forwarded variant"
    return blocks[0], blocks[1]


def configuration(ports: Ports, cert: Path, key: Path, variant: str) -> str:
    """The documented configuration on the test's loopback ports and certificate, its TLS server block also served
    on a plain listener (to see what the service answers over http)."""
    config, forwarded = documented()
    head, rest = config.split("\nserver {", 1)
    redirect, main = ("server {" + block for block in rest.split("\nserver {", 1))
    assert "return 301 https://" in redirect and "listen 443 ssl;" in main, config
    head = head.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{ports.service};")
    redirect = re.sub(r"^    listen \[::\].*\n", "", redirect, flags=re.MULTILINE)
    redirect = redirect.replace("listen 80;", f"listen 127.0.0.1:{ports.redirect};")
    main = re.sub(r"^    listen \[::\].*\n", "", main, flags=re.MULTILINE)
    main = re.sub(r"/etc/letsencrypt/\S+/fullchain.pem", str(cert), main)
    main = re.sub(r"/etc/letsencrypt/\S+/privkey.pem", str(key), main)
    if variant == "forwarded":
        main, replaced = X_FORWARDED_LINES.subn(forwarded, main)
        assert replaced == 1, main
    tls = main.replace("listen 443 ssl;", f"listen 127.0.0.1:{ports.https} ssl;")
    plain = main.replace("listen 443 ssl;", f"listen 127.0.0.1:{ports.http};")
    return "\n".join([head, redirect, tls, plain])


@dataclass(frozen=True)
class Ports:
    service: int  # the service's, which nginx proxies to
    http: int
    https: int
    redirect: int  # the documented port-80 block: a redirect to https


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    http_url: str
    https_url: str
    directory: Path

    def output(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def start_nginx(directory: Path, ports: Ports, variant: str) -> Nginx:
    if not Path(NGINX).is_file():
        pytest.skip("nginx is not installed (scripts/test installs Debian's package)")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(directory)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / temp).mkdir(exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 512; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{configuration(ports, cert, key, variant)}
}}
""")
    log = ["-e", str(directory / "error.log")]
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(directory), *log, "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr + config.read_text()
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), *log, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    proxy = Nginx(process, f"http://127.0.0.1:{ports.http}", f"https://127.0.0.1:{ports.https}", directory)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited with {process.returncode}\n{proxy.output()}")
        try:
            with socket.create_connection(("127.0.0.1", ports.https), timeout=0.5):
                return proxy
        except OSError:
            time.sleep(0.05)
    proxy.stop()
    pytest.fail(f"nginx did not listen on {ports.https}\n{proxy.output()}")
