"""Attaches the preference center's shared objects to the app services (filled in by the preference-center issue)."""

from __future__ import annotations

from typing import Any


def attach(services: Any) -> None:
    """Nothing to attach yet."""
    return None
