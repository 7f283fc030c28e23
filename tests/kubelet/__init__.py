"""Tests: kubelet."""
