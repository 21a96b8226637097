"""The preference center's endpoints, listed in `server.api.routes.ENDPOINTS` (preference-center issue)."""

from __future__ import annotations

from server.api.endpoints import Endpoint

PREFERENCE_ENDPOINTS: list[Endpoint] = []
