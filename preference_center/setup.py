"""Attaches the preference center's shared objects to the app services (called by `build_services`)."""

from __future__ import annotations

from typing import Any

from preference_center.center import PreferenceCenter


def attach(services: Any) -> None:
    """`services.preferences`: link tokens, mailer, catalogues and templates, built once from the settings."""
    services.preferences = PreferenceCenter(services.settings, services.keys)
