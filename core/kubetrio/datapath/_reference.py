"""Pure-Python reference of the Rust hash and Maglev population.

This is the executable specification the Rust tables are tested against (they must be
identical) and the baseline of ``benchmarks/datapath_maglev.py``. It is slow by design of
the language, not by algorithm: same permutation, same turn order, same weights rule.
"""

from __future__ import annotations

from collections.abc import Sequence

_M64 = (1 << 64) - 1
_K1 = 0x87C37B91114253D5
_K2 = 0x4CF5AD432745937F
_K3 = 0x52DCE729
_SKIP_SEED_DELTA = 0x9E3779B97F4A7C15


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    k ^= k >> 33
    return k


def _absorb(h: int, word: int) -> int:
    k = (_rotl((word * _K1) & _M64, 31) * _K2) & _M64
    return (_rotl(h ^ k, 27) * 5 + _K3) & _M64


def reference_hash64(data: bytes, seed: int = 0) -> int:
    """Same value as :func:`kubetrio.datapath.hash64`."""
    h = (seed ^ (len(data) * _K1)) & _M64
    for i in range(0, len(data), 8):
        h = _absorb(h, int.from_bytes(data[i : i + 8].ljust(8, b"\0"), "little"))
    return _fmix64(h)


def reference_maglev_table(
    backends: Sequence[str],
    weights: Sequence[int] | None = None,
    size: int = 65537,
    seed: int = 0,
) -> list[int]:
    """Slot → backend index, equal to ``MaglevTable(...).table()`` for valid arguments."""
    weights = list(weights) if weights is not None else [1] * len(backends)
    active = [i for i, w in enumerate(weights) if w > 0]
    max_w = max(weights[i] for i in active)
    uniform = all(weights[i] == max_w for i in active)
    nxt, skip = [], []
    for i in active:
        name = backends[i].encode()
        nxt.append(reference_hash64(name, seed) % size)
        skip.append(reference_hash64(name, (seed + _SKIP_SEED_DELTA) & _M64) % (size - 1) + 1)
    placed = [0] * len(active)
    table = [-1] * size
    filled = 0
    rnd = 0
    while True:
        rnd += 1
        for k, b in enumerate(active):
            if not uniform and placed[k] >= rnd * weights[b] // max_w:
                continue
            p, s = nxt[k], skip[k]
            while table[p] >= 0:
                p += s
                if p >= size:
                    p -= size
            table[p] = b
            p += s
            if p >= size:
                p -= size
            nxt[k] = p
            placed[k] += 1
            filled += 1
            if filled == size:
                return table
