"""Tests: encryption at rest and the audit log."""
