"""The HTTP kernel: endpoint declarations and their guards, bodies, parameters, problem+json, OpenAPI."""
