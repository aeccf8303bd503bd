"""Helpers shared by the host tests (fixtures themselves live in host_tests/conftest.py)."""
