"""Signed, expiring links that act for a subject: preference center, double opt-in confirmation, unsubscribe."""
