"""The banner's endpoints, listed in `server.api.routes.ENDPOINTS` (filled in by the cookie-banner issue)."""

from __future__ import annotations

from server.api.endpoints import Endpoint

BANNER_ENDPOINTS: list[Endpoint] = []
