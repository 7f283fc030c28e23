"""Tests: streams."""
