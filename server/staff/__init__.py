"""Staff identity: local and company (OpenID Connect) accounts, signed sessions, roles and what each may do."""
