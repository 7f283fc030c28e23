"""Writing a :class:`~.policy.Ruleset` into nftables, one transaction per change.

The first write (and any write after a failure) replaces the whole table: ``add table``,
``delete table``, then everything in it, as one transaction. Later writes send only the
difference from the ruleset last written: new sets and chains are added, changed chains
are flushed and refilled, changed sets flushed and refilled, and what disappeared is
deleted once nothing refers to it any more. Either way the kernel applies the batch
atomically, so a packet meets the old policy or the new one, never a mix.

Both are lists of typed commands run by :class:`kubetrio.nft.Nft`, the service proxy's
runner: in the node's network namespace (``netns``, for several nodes in one process as
in tests), as a raw netlink batch when every command is encodable (a change of the
verdict maps only), else as text through libnftables (the policy rules are nft text).
"""

from __future__ import annotations

import trio

from kubetrio.nft import (
    AddChain,
    AddElements,
    AddRule,
    AddSet,
    Command,
    DeleteChain,
    DeleteSet,
    FlushChain,
    FlushSet,
    Hook,
    Nft,
    Raw,
    Rule,
    SetFlag,
    Table,
    VerdictMap,
    remove_table,
    replace_table,
    to_nft_text,
)
from kubetrio.nft import NftError as NftError

from .policy import EGRESS_MAP, INGRESS_MAP, NftSet, Ruleset

TABLE = "kubetrio-policy"
ESTABLISHED: Rule = (Raw("ct state established,related accept"),)


def _rule(text: str) -> Rule:
    """A policy rule: nft text (:mod:`.policy` renders matches on ports and sets)."""
    return (Raw(text),)


class PolicyTable:
    """The ``inet`` policy table of this network namespace, kept equal to a ruleset."""

    def __init__(self, name: str = TABLE, *, netns: str | None = None) -> None:
        """``netns``: a network namespace name to write the table in (None: our own)."""
        self.name = name
        self.table = Table("inet", name)
        self.netns = netns
        self.nft = Nft(netns)
        self.current: Ruleset | None = None
        """The ruleset last written, or None when the table must be written whole."""
        self._lock = trio.Lock()

    def _base_chains(self) -> list[Command]:
        t = self.table
        egress: Rule = (VerdictMap(("ip saddr",), EGRESS_MAP),)
        ingress: Rule = (VerdictMap(("ip daddr",), INGRESS_MAP),)
        return [
            AddChain(t, "forward", Hook("filter", "forward", 0)),
            AddRule(t, "forward", ESTABLISHED),
            AddRule(t, "forward", egress),
            AddRule(t, "forward", ingress),
            AddChain(t, "input", Hook("filter", "input", 0)),
            AddRule(t, "input", ESTABLISHED),
            AddRule(t, "input", egress),
        ]

    def _declare(self, name: str, entry: NftSet) -> AddSet:
        interval: tuple[SetFlag, ...] = ("interval",) if entry.interval else ()
        return AddSet(
            self.table, name, entry.key, entry.data, flags=interval, auto_merge=entry.interval
        )

    def _fill(self, name: str, entry: NftSet) -> AddElements:
        return AddElements(
            self.table, name, entry.key, entry.data, entry.items, interval=entry.interval
        )

    def full_commands(self, ruleset: Ruleset) -> list[Command]:
        """The whole table, replacing whatever is there."""
        t = self.table
        out: list[Command] = replace_table(t)
        # Sets before the chains whose rules use them; chains before the maps that jump
        # to them; the base chains last, once everything they refer to exists.
        for is_map in (False, True):
            if is_map:
                for name, rules in sorted(ruleset.chains.items()):
                    out.append(AddChain(t, name))
                    out.extend(AddRule(t, name, _rule(rule)) for rule in rules)
            for name, entry in sorted(ruleset.sets.items()):
                if entry.is_map == is_map:
                    out.append(self._declare(name, entry))
                    if entry.items:
                        out.append(self._fill(name, entry))
        out.extend(self._base_chains())
        return out

    def full_script(self, ruleset: Ruleset) -> str:
        """:meth:`full_commands` as nft text."""
        return to_nft_text(self.full_commands(ruleset))

    def diff_commands(self, old: Ruleset, new: Ruleset) -> list[Command]:
        """The commands that turn the table from ``old`` into ``new`` ([] if equal)."""
        t = self.table
        out: list[Command] = []
        for name, entry in sorted(new.sets.items()):
            if name not in old.sets:
                out.append(self._declare(name, entry))
        out.extend(AddChain(t, name) for name in sorted(new.chains.keys() - old.chains.keys()))

        def refill(maps: bool) -> None:
            for name, entry in sorted(new.sets.items()):
                before = old.sets.get(name)
                if entry.is_map == maps and (before is None or before.items != entry.items):
                    if before is not None:
                        out.append(FlushSet(t, name, "map" if maps else "set"))
                    if entry.items:
                        out.append(self._fill(name, entry))

        refill(maps=False)
        for name, rules in sorted(new.chains.items()):
            if old.chains.get(name) != rules:
                if name in old.chains:
                    out.append(FlushChain(t, name))
                out.extend(AddRule(t, name, _rule(rule)) for rule in rules)
        refill(maps=True)
        # Deletions last: by now no rule or map element refers to what goes away.
        out.extend(DeleteChain(t, name) for name in sorted(old.chains.keys() - new.chains.keys()))
        for name in sorted(old.sets.keys() - new.sets.keys()):
            out.append(DeleteSet(t, name, "map" if old.sets[name].is_map else "set"))
        return out

    def diff_script(self, old: Ruleset, new: Ruleset) -> str:
        """:meth:`diff_commands` as nft text ("" if equal)."""
        return to_nft_text(self.diff_commands(old, new))

    async def apply(self, ruleset: Ruleset) -> None:
        """Make the table hold ``ruleset``: a diff when possible, else the whole table."""
        async with self._lock:
            if self.current is not None:
                commands = self.diff_commands(self.current, ruleset)
                if not commands:
                    return
                try:
                    await self.nft.run(commands)
                except NftError:
                    self.current = None  # someone changed the table under us: rewrite it
                else:
                    self.current = ruleset
                    return
            await self.nft.run(self.full_commands(ruleset))
            self.current = ruleset

    async def remove(self) -> None:
        """Delete the table (no error when it is absent)."""
        async with self._lock:
            await self.nft.run(remove_table(self.table))
            self.nft.close()
            self.current = None
