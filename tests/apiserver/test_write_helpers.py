"""Helpers every write goes through: the deep copy of JSON values and the nesting check."""

from __future__ import annotations

import math
from typing import Any

from kubetrio.apiserver import _limits
from kubetrio.apiserver._objects import deep_copy


def test_deep_copy_is_deep_and_keeps_every_value() -> None:
    value: dict[str, Any] = {
        "metadata": {"labels": {"a": "b"}},
        "spec": {"items": [1, 2.5, True, None, "x", {"n": [[]]}]},
        "inf": math.inf,
        "bytes": b"\x00\x01",
        "big": 2**70,  # beyond msgpack: copied the slow way
    }
    copied = deep_copy(value)
    assert copied == value
    copied["metadata"]["labels"]["a"] = "changed"
    copied["spec"]["items"][5]["n"][0].append(1)
    assert value["metadata"]["labels"] == {"a": "b"}
    assert value["spec"]["items"][5] == {"n": [[]]}


def nested(depth: int) -> object:
    """Objects and arrays alternating ``depth`` levels deep."""
    value: object = "leaf"
    for level in range(depth):
        value = {"k": value, "s": 1} if level % 2 else [0, value]
    return value


def test_too_deep_counts_levels_exactly() -> None:
    for limit in (1, 2, 5, _limits.MAX_STORED_DEPTH):
        assert not _limits.too_deep(nested(limit), limit)
        assert _limits.too_deep(nested(limit + 1), limit)
    assert not _limits.too_deep("scalar", 1)
    assert not _limits.too_deep({"a": [], "b": {}}, 2)
    assert _limits.too_deep({"a": [{}]}, 2)
