"""Tests: controllers."""
