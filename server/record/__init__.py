"""The record of processing activities (GDPR 30), built from what the service knows and what is declared."""
