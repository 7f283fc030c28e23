"""Tests: scheduler."""
