"""Fake upstream servers for tests."""
