"""Tests: hypothesis fuzzing of every built-in kind from the OpenAPI schema."""
