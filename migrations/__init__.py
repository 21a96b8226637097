"""Tortoise native migrations of the `models` app; generate with `python -m server makemigrations`."""
