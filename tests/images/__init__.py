"""Tests: images."""
