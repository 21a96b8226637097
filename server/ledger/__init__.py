"""The consent ledger: append-only events per subject, hash-chained, with a state projection."""
