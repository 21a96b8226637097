"""Answering "may we contact this person for this purpose on this channel?" from the ledger."""
