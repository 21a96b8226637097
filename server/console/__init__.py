"""The service desk console: staff pages (customers, requests, breaches, record, answers, audit, accounts), their
plumbing and guard, and the customer-facing request pages."""
