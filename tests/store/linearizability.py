"""A porcupine-style linearizability checker (Wing & Gong search with Lowe's memoisation).

A history is a list of :class:`Operation` (input, output, call time, return time). It is
linearizable if some total order of the operations, consistent with real time (an operation
that returned before another was called comes first), replays through the sequential model
producing exactly the recorded outputs. Linearizability is compositional, so histories are
checked one key at a time.

The search walks a doubly-linked list of call/return entries: at a call it tries to
linearize that operation next (if the model accepts its output), "lifting" it out of the
list; at a return whose call is still in the list it backtracks. Pairs of (set of linearized
operations, model state) already explored are cached, which keeps the search small.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Operation:
    client: int
    input: Hashable
    output: Hashable
    call: float
    ret: float


Step = Callable[[Any, Any, Any], tuple[bool, Any]]


def is_linearizable(ops: Sequence[Operation], init: Hashable, step: Step) -> bool:
    """Whether ``ops`` is linearizable for the model ``(init, step)``.

    ``step(state, input, output) -> (ok, new_state)``: ``ok`` is whether the model, in
    ``state``, can produce ``output`` for ``input``.
    """
    entries = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)]
    )
    m = len(entries)
    head, tail = 0, m + 1
    # Nodes 1..m are the entries; 0 and m+1 are sentinels.
    nxt = [*range(1, m + 2), tail]
    prv = [head, *range(0, m + 1)]
    ret_node = {}
    for node, (_, kind, i) in enumerate(entries, 1):
        if kind == 1:
            ret_node[i] = node
    call_node_op = {node: i for node, (_, kind, i) in enumerate(entries, 1) if kind == 0}

    def unlink(n: int) -> None:
        nxt[prv[n]] = nxt[n]
        prv[nxt[n]] = prv[n]

    def relink(n: int) -> None:
        nxt[prv[n]] = n
        prv[nxt[n]] = n

    state: Any = init
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []
    node = nxt[head]
    while nxt[head] != tail:
        if node in call_node_op:
            i = call_node_op[node]
            op = ops[i]
            ok, new_state = step(state, op.input, op.output)
            if ok:
                marker = (linearized | (1 << i), new_state)
                if marker not in cache:
                    cache.add(marker)
                    stack.append((node, state))
                    state, linearized = new_state, marker[0]
                    unlink(node)
                    unlink(ret_node[i])
                    node = nxt[head]
                    continue
            node = nxt[node]
        else:
            # A return whose call is not linearized yet: nothing can go next; backtrack.
            if not stack:
                return False
            node, state = stack.pop()
            i = call_node_op[node]
            linearized &= ~(1 << i)
            relink(ret_node[i])
            relink(node)
            node = nxt[node]
    return True


# -- the model of one key of the store ------------------------------------------------------
# state: (live, value, mod_revision); inputs/outputs are small tuples (see test file).

KEY_INIT = (False, None, 0)


def key_step(state: Any, inp: Any, out: Any) -> tuple[bool, Any]:
    """Sequential model of one store key under create/cas/delete/read."""
    live, value, rev = state
    kind = inp[0]
    if kind == "read":
        return out == ((value, rev) if live else None), state
    if kind == "create":
        if not live:
            if out[0] == "ok" and out[1] > rev:
                return True, (True, inp[1], out[1])
            return False, state
        return out == ("exists", (value, rev)), state
    expected = inp[1]
    if not live:
        return out == ("notfound",), state
    if rev != expected:
        return out == ("conflict", (value, rev)), state
    if out[0] != "ok" or out[1] <= rev:
        return False, state
    if kind == "cas":
        return True, (True, inp[2], out[1])
    if kind == "delete":
        return True, (False, None, out[1])
    raise ValueError(f"unknown op {inp!r}")
