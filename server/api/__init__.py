"""HTTP layer: endpoint declarations (path, auth rule, schemas), handlers, problem+json mapping, OpenAPI."""
