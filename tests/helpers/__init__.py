"""Plain helpers for the tests, by concept; the fixtures are in tests/conftest.py.

Test modules import what they share from here (or from tests.databases, tests.independent, tests.ports), never
from conftest.py nor from another test module.
"""
