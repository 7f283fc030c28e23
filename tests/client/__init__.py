"""Tests: client."""
