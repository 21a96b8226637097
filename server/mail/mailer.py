"""Outgoing mail: SMTP when `SMTP_HOST` is set, otherwise a dev outbox folder (`MAIL_DIR`, shown at `/dev/mail`).

Mails from the preference center are transactional (a confirmation link, a link to the preferences): they carry
no advertising (double opt-in practice: nothing promotional before confirmation).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path

import aiosmtplib

from server.files import write_private
from server.settings import Settings

log = logging.getLogger("server.mail")


class MailNotSent(Exception):
    """The SMTP server refused the mail or could not be reached."""


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        domain = parseaddr(settings.mail_from)[1].rpartition("@")[2]
        self.domain = domain or "localhost"

    @property
    def uses_outbox(self) -> bool:
        return not self.settings.smtp_host

    def new_message_id(self) -> str:
        """RFC 5322 3.6.4, short enough never to be folded."""
        return f"<{time.time_ns():x}.{secrets.token_hex(8)}@{self.domain}>"

    def message(
        self,
        to: str,
        subject: str,
        text: str,
        lang: str,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id or self.new_message_id()
        msg["Content-Language"] = lang
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(text, charset="utf-8")
        return msg

    async def send(self, message: EmailMessage) -> None:
        if self.uses_outbox:
            try:
                await asyncio.to_thread(self._write_outbox, message)
            except OSError as exc:  # a full disk (ENOSPC, EDQUOT): as an SMTP server that cannot be reached
                log.warning("mail not written to the outbox", extra={"error": type(exc).__name__})
                raise MailNotSent(type(exc).__name__) from exc
            return
        settings = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_user,
                password=settings.smtp_password,
                start_tls=settings.smtp_starttls,
                timeout=15,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("mail not sent", extra={"error": type(exc).__name__})
            raise MailNotSent(type(exc).__name__) from exc

    def _write_outbox(self, message: EmailMessage) -> None:
        path = self.settings.mail_dir / f"{time.time_ns():020d}-{secrets.token_hex(4)}.eml"
        write_private(path, message.as_bytes())  # 0600, in a folder created 0700: mails name people

    def outbox(self) -> list[Path]:
        """The dev outbox, newest first."""
        directory = self.settings.mail_dir
        if not directory.is_dir():
            return []
        return sorted(directory.glob("*.eml"), reverse=True)
