"""Tests: protobuf."""
