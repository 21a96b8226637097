"""Machine authentication: signing keys, OAuth2 client credentials, JWT access tokens (RFC 9068), scopes."""
