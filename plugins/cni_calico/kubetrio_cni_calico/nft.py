"""Writing a :class:`~.policy.Ruleset` into nftables, one transaction per change.

The first write (and any write after a failure) replaces the whole table: ``add table``,
``delete table``, then the table's full text, all in one ``nft -f`` buffer. Later writes
send only the difference from the ruleset last written: new sets and chains are added,
changed chains are flushed and refilled, changed sets flushed and refilled, and what
disappeared is deleted once nothing refers to it any more. Either way the kernel applies
the batch atomically, so a packet meets the old policy or the new one, never a mix.

libnftables acts in the network namespace of the calling thread. The node agent runs in
the node's namespace, so by default commands run in a worker thread as they are; with
``netns`` (several nodes in one process, as in tests) the worker thread enters that
namespace for the transaction and returns to its own afterwards.
"""

from __future__ import annotations

import subprocess
from functools import partial
from typing import Any

import trio

from kubetrio.netns import in_netns

from .policy import EGRESS_MAP, INGRESS_MAP, NftSet, Ruleset

TABLE = "kubetrio-policy"


class NftError(RuntimeError):
    """nft refused a transaction; nothing of it was applied."""


def _run_script(script: str) -> None:
    """Apply ``script`` as one transaction through libnftables, else the nft binary."""
    try:
        import nftables  # type: ignore[import-untyped,import-not-found,unused-ignore]  # Debian's binding, no stubs
    except ImportError:
        result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
        if result.returncode != 0:
            raise NftError(result.stderr.strip()) from None
        return
    nft: Any = nftables.Nftables()
    rc, _, err = nft.cmd(script)
    if rc != 0:
        raise NftError(str(err).strip() or f"nft failed with status {rc}")


def _elements(entry: NftSet) -> str:
    return "{ " + ", ".join(entry.elements) + " }"


class PolicyTable:
    """The ``inet`` policy table of this network namespace, kept equal to a ruleset."""

    def __init__(self, name: str = TABLE, *, netns: str | None = None) -> None:
        """``netns``: a network namespace name to write the table in (None: our own)."""
        self.name = name
        self.netns = netns
        self.current: Ruleset | None = None
        """The ruleset last written, or None when the table must be written whole."""
        self._lock = trio.Lock()

    def _base_chains(self) -> list[str]:
        return [
            "  chain forward { type filter hook forward priority filter; policy accept;",
            "    ct state established,related accept",
            f"    ip saddr vmap @{EGRESS_MAP}",
            f"    ip daddr vmap @{INGRESS_MAP}",
            "  }",
            "  chain input { type filter hook input priority filter; policy accept;",
            "    ct state established,related accept",
            f"    ip saddr vmap @{EGRESS_MAP}",
            "  }",
        ]

    def full_script(self, ruleset: Ruleset) -> str:
        """The whole table as one idempotent script."""
        lines = [
            f"add table inet {self.name}",
            f"delete table inet {self.name}",
            f"table inet {self.name} {{",
        ]
        # Sets before the chains whose rules use them; chains before the maps that jump
        # to them; the base chains last, once everything they refer to exists.
        for name, entry in sorted(ruleset.sets.items()):
            if not entry.is_map:
                lines.append(self._set_text(name, entry))
        for name, rules in sorted(ruleset.chains.items()):
            lines.append(f"  chain {name} {{")
            lines.extend(f"    {rule}" for rule in rules)
            lines.append("  }")
        for name, entry in sorted(ruleset.sets.items()):
            if entry.is_map:
                lines.append(self._set_text(name, entry))
        lines.extend(self._base_chains())
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _set_text(self, name: str, entry: NftSet) -> str:
        kind = "map" if entry.is_map else "set"
        elements = f" elements = {_elements(entry)};" if entry.elements else ""
        return f"  {kind} {name} {{ {entry.declaration()}{elements} }}"

    def diff_script(self, old: Ruleset, new: Ruleset) -> str:
        """The commands that turn the table from ``old`` into ``new`` ("" if equal)."""
        table = f"inet {self.name}"
        out: list[str] = []

        def kind(entry: NftSet) -> str:
            return "map" if entry.is_map else "set"

        for name, entry in sorted(new.sets.items()):
            if name not in old.sets:
                out.append(f"add {kind(entry)} {table} {name} {{ {entry.declaration()} }}")
        for name in sorted(new.chains.keys() - old.chains.keys()):
            out.append(f"add chain {table} {name}")
        for name, entry in sorted(new.sets.items()):
            before = old.sets.get(name)
            if not entry.is_map and (before is None or before.elements != entry.elements):
                if before is not None:
                    out.append(f"flush set {table} {name}")
                if entry.elements:
                    out.append(f"add element {table} {name} {_elements(entry)}")
        for name, rules in sorted(new.chains.items()):
            if old.chains.get(name) != rules:
                if name in old.chains:
                    out.append(f"flush chain {table} {name}")
                out.extend(f"add rule {table} {name} {rule}" for rule in rules)
        for name, entry in sorted(new.sets.items()):
            before = old.sets.get(name)
            if entry.is_map and (before is None or before.elements != entry.elements):
                if before is not None:
                    out.append(f"flush map {table} {name}")
                if entry.elements:
                    out.append(f"add element {table} {name} {_elements(entry)}")
        # Deletions last: by now no rule or map element refers to what goes away.
        for name in sorted(old.chains.keys() - new.chains.keys()):
            out.append(f"delete chain {table} {name}")
        for name in sorted(old.sets.keys() - new.sets.keys()):
            out.append(f"delete {kind(old.sets[name])} {table} {name}")
        return "\n".join(out) + "\n" if out else ""

    async def apply(self, ruleset: Ruleset) -> None:
        """Make the table hold ``ruleset``: a diff when possible, else the whole table."""
        async with self._lock:
            if self.current is not None:
                script = self.diff_script(self.current, ruleset)
                if not script:
                    return
                try:
                    await trio.to_thread.run_sync(
                        in_netns, self.netns, partial(_run_script, script)
                    )
                except NftError:
                    self.current = None  # someone changed the table under us: rewrite it
                else:
                    self.current = ruleset
                    return
            await trio.to_thread.run_sync(
                in_netns, self.netns, partial(_run_script, self.full_script(ruleset))
            )
            self.current = ruleset

    async def remove(self) -> None:
        """Delete the table (no error when it is absent)."""
        async with self._lock:
            script = f"add table inet {self.name}\ndelete table inet {self.name}\n"
            await trio.to_thread.run_sync(in_netns, self.netns, partial(_run_script, script))
            self.current = None
