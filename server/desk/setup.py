"""Attaches the service desk's shared objects to the app services (filled in by the service-desk issue)."""

from __future__ import annotations

from typing import Any


def attach(services: Any) -> None:
    """Nothing to attach yet."""
    return None
