"""Tests for Thruway."""
