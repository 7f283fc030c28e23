"""Maglev tables through the Python wrapper: agreement with the reference, balance, diffs."""

from array import array

import pytest

from kubetrio import _datapath
from kubetrio.datapath import (
    DEFAULT_TABLE_SIZE,
    DatapathError,
    MaglevTable,
    SlotChange,
    flow_hash,
    reference_maglev_table,
)


def names(n: int) -> list[str]:
    return [f"10.244.{i // 250}.{i % 250}:8080" for i in range(n)]


def test_matches_python_reference_unweighted() -> None:
    for n in (1, 3, 17, 100):
        table = MaglevTable(names(n), seed=11)
        assert table.table() == reference_maglev_table(names(n), None, DEFAULT_TABLE_SIZE, 11)


def test_matches_python_reference_weighted() -> None:
    backends = {name: i % 4 for i, name in enumerate(names(12))}
    table = MaglevTable(backends, size=1009, seed=3)
    expected = reference_maglev_table(list(backends), list(backends.values()), 1009, 3)
    assert table.table() == expected
    counts = table.slot_counts()
    assert counts[names(12)[0]] == 0  # weight 0
    assert counts[names(12)[3]] > counts[names(12)[1]]


@pytest.mark.parametrize("size", [2, 7, 251, 16381, DEFAULT_TABLE_SIZE])
def test_matches_python_reference_across_sizes(size: int) -> None:
    # The Rust build switches strategy as the table fills (single probes, probe windows,
    # the endgame); the reference probes one slot at a time all the way, so every table
    # size and weighting must still give the same slots.
    for n in (1, 2, 40, 100):
        if n > size:
            continue
        backends = names(n)
        assert MaglevTable(backends, size=size, seed=5).table() == reference_maglev_table(
            backends, None, size, 5
        )
        weights = [1 + i % 3 for i in range(n)]
        weighted = MaglevTable(dict(zip(backends, weights, strict=True)), size=size, seed=5)
        assert weighted.table() == reference_maglev_table(backends, weights, size, 5)


def test_every_slot_filled_and_balanced() -> None:
    table = MaglevTable(names(100))
    assert len(table.table()) == DEFAULT_TABLE_SIZE
    counts = table.slot_counts().values()
    assert max(counts) - min(counts) <= 1


def test_lookup_is_deterministic_and_uses_the_table() -> None:
    a = MaglevTable(names(10), seed=7)
    b = MaglevTable(names(10), seed=7)
    h = flow_hash("10.0.0.1", "10.96.0.10", 40000, 80, 6)
    assert a.lookup(h) == b.lookup(h) == a.backends[a.table()[h % a.size]]
    assert a.lookup_flow("10.0.0.1", "10.96.0.10", 40000, 80, 6) == a.lookup(h)


def test_lookup_batch() -> None:
    table = MaglevTable(names(5), size=251)
    hashes = array("Q", [(i * 0x9E3779B97F4A7C15) & (2**64 - 1) for i in range(1024)])
    out = array("I", bytes(4 * 1024))
    table.lookup_batch(hashes, out)
    assert list(out) == [table.lookup_index(h) for h in hashes]
    with pytest.raises(ValueError):
        table.lookup_batch(hashes, array("I", bytes(4)))
    with pytest.raises(ValueError):
        table.lookup_batch(hashes, memoryview(bytes(4096)).cast("I"))  # read-only output
    with pytest.raises(BufferError):
        table.lookup_batch(hashes, bytearray(4096))  # not uint32


def test_diff_on_removal_moves_about_one_nth() -> None:
    old = MaglevTable(names(20))
    new = MaglevTable(names(20)[1:])
    changes = old.diff(new)
    held = old.slot_counts()[names(20)[0]]
    assert sum(1 for c in changes if c.old == names(20)[0]) == held
    assert len(changes) < 2 * DEFAULT_TABLE_SIZE / 20
    assert all(isinstance(c, SlotChange) and c.old != c.new for c in changes)
    new_table = new.table()
    assert all(new.backends[new_table[c.slot]] == c.new for c in changes)


def test_table_bytes() -> None:
    table = MaglevTable(names(3), size=7)
    assert array("I", table.table_bytes()).tolist() == table.table()


@pytest.mark.parametrize(
    ("backends", "size"),
    [(names(3), 65536), (names(8), 7), ([], 7), (["a", "a"], 7), ({"a": 0}, 7)],
)
def test_rejects_bad_arguments(backends: list[str] | dict[str, int], size: int) -> None:
    with pytest.raises(DatapathError):
        MaglevTable(backends, size=size)


def test_errors_are_value_errors() -> None:
    assert issubclass(DatapathError, ValueError)
    assert issubclass(_datapath.MalformedPacketError, DatapathError)
