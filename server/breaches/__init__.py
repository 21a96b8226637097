"""The personal data breach register (GDPR 33 and 34)."""
