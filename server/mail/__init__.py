"""Outgoing mail (SMTP or the development outbox)."""
