"""Helpers shared by the test suite (importable by worker subprocesses via PYTHONPATH)."""
