"""The embeddable preference center (routes, templates, static files)."""
