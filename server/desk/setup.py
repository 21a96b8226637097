"""Attaches the service desk's shared objects to the app services (called by `build_services`)."""

from __future__ import annotations

from typing import Any


def attach(services: Any) -> None:
    """`services.desk`: sessions, the identity provider client, approved answers, templates, request helpers."""
    from server.desk.service import Desk  # imported here: the desk's modules import `server.services` themselves

    services.desk = Desk(services)
