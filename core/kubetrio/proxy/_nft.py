"""Running nft transactions inside a network namespace, off the trio thread.

libnftables (Debian's ``nftables`` Python binding, a ctypes wrapper) talks netlink in the
network namespace of the *calling thread*. :class:`Nft` therefore runs each script in a
worker thread that enters the target namespace with ``setns(2)`` (Python 3.11 has no
``os.setns``), creates a fresh libnftables context there, runs the whole script as one
``nft -f`` buffer — one kernel transaction, all or nothing — and returns the thread to
its own namespace before the thread goes back to trio's pool.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio

from kubetrio.netns import in_netns

from ._netlink import NetlinkSocket, Unsupported, encode_commands, full_batch
from ._rules import Fragment, full_script


class NftError(RuntimeError):
    """nft refused a transaction; nothing of it was applied."""


class Nft:
    """nft scripts for one network namespace, one transaction per call.

    :param netns: a name under ``/var/run/netns``, a path to a namespace file, or None
        for the caller's own namespace.
    """

    def __init__(self, netns: str | None = None, *, netlink: bool = True) -> None:
        self.netns = netns
        self.netlink = netlink
        """Send command lists :mod:`._netlink` can encode as raw batches (no nft cache)."""
        self._socket: NetlinkSocket | None = None
        self._lock = trio.Lock()  # one transaction at a time keeps the kernel's view ordered

    def close(self) -> None:
        """Close the netlink socket (a later call opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _apply(self, batch: Any) -> None:
        if self._socket is None:
            self._socket = in_netns(self.netns, NetlinkSocket)
        try:
            self._socket.apply(batch)
        except OSError as exc:
            raise NftError(f"netlink transaction refused: {exc}") from exc

    def replace_sync(self, fragments: Iterable[Fragment]) -> None:
        """Rewrite the whole table from ``fragments`` in one transaction; blocking."""
        fragments = list(fragments)
        if self.netlink:
            try:
                batch = full_batch(fragments)
            except Unsupported:
                pass
            else:
                self._apply(batch)
                return
        self.run_sync(full_script(fragments))

    async def replace(self, fragments: Iterable[Fragment]) -> None:
        """:meth:`replace_sync` in a worker thread."""
        async with self._lock:
            await trio.to_thread.run_sync(self.replace_sync, list(fragments))

    def run_sync(self, script: str | Iterable[str]) -> str:
        """Apply ``script`` (text, or commands one per item) in the namespace; blocking.

        A list of commands goes out as a raw netlink batch when every command is one
        of the shapes :mod:`._netlink` encodes, else (and for text) through libnftables.
        Either way it is one transaction.
        """
        if not isinstance(script, str):
            script = list(script)
            if self.netlink:
                try:
                    batch = encode_commands(script)
                except Unsupported:
                    pass
                else:
                    self._apply(batch)
                    return ""
        text = script if isinstance(script, str) else "\n".join(script)
        if not text.endswith("\n"):
            text += "\n"

        def call() -> tuple[int, str, str]:
            import nftables  # type: ignore[import-untyped,import-not-found,unused-ignore]  # Debian's binding, no stubs

            nft: Any = nftables.Nftables()
            try:
                rc, out, err = nft.cmd(text)
            finally:
                del nft
            return int(rc), str(out), str(err)

        rc, out, err = in_netns(self.netns, call)
        if rc != 0:
            raise NftError(err.strip() or f"nft failed with status {rc}")
        return out

    async def run(self, script: str | Iterable[str]) -> str:
        """Apply ``script`` as one transaction in a worker thread; raises :class:`NftError`."""
        async with self._lock:
            return await trio.to_thread.run_sync(self.run_sync, script)
