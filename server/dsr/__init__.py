"""Data-subject requests (GDPR 12-22): opening, the legal clock, what carrying each out does, mails, exports."""
