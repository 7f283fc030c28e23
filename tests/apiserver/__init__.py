"""Tests: apiserver."""
