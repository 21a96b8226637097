"""The service desk's endpoints, listed in `server.api.routes.ENDPOINTS` (filled in by the service-desk issue)."""

from __future__ import annotations

from server.api.endpoints import Endpoint

DESK_ENDPOINTS: list[Endpoint] = []
