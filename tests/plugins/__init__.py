"""Tests: plugins."""
