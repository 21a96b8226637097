"""Plain ASGI middleware, one per file."""
