"""Tests: dns."""
