"""Running nft transactions inside a network namespace, off the trio thread.

Netlink sockets and libnftables act in the network namespace of the *calling thread*.
:class:`Nft` therefore runs each transaction in a worker thread that enters the target
namespace (:func:`kubetrio.netns.in_netns`) and returns to its own before the thread goes
back to trio's pool. A transaction is a list of typed commands: sent as a raw netlink
batch (:func:`~._netlink.encode`) when every command is encodable, else printed with
:func:`~._text.to_nft_text` and run as one ``nft -f`` buffer through libnftables (or the
``nft`` binary where Debian's Python binding is missing). Either way it is one kernel
transaction, all or nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from typing import Any

import trio

from kubetrio.netns import in_netns

from ._model import Command
from ._netlink import Batch, NetlinkSocket, Unsupported, encode
from ._text import to_nft_text


class NftError(RuntimeError):
    """nft refused a transaction; nothing of it was applied."""


def run_text(text: str) -> str:
    """Run an nft script in the calling thread's namespace; returns nft's output."""
    try:
        import nftables  # type: ignore[import-untyped,import-not-found,unused-ignore]  # Debian's binding, no stubs
    except ImportError:
        return _run_binary(text)
    nft: Any = nftables.Nftables()
    try:
        rc, out, err = nft.cmd(text)
    finally:
        del nft
    if rc != 0:
        raise NftError(str(err).strip() or f"nft failed with status {rc}")
    return str(out)


def _run_binary(text: str) -> str:
    result = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
    if result.returncode != 0:
        raise NftError(result.stderr.strip() or f"nft failed with status {result.returncode}")
    return result.stdout


class Nft:
    """nft transactions for one network namespace, one at a time.

    :param netns: a name under ``/var/run/netns``, a path to a namespace file, or None
        for the caller's own namespace.
    :param netlink: send encodable transactions as raw netlink batches (no nft cache);
        False sends everything through libnftables.
    """

    def __init__(self, netns: str | None = None, *, netlink: bool = True) -> None:
        self.netns = netns
        self.netlink = netlink
        self._socket: NetlinkSocket | None = None
        self._lock = trio.Lock()  # one transaction at a time keeps the kernel's view ordered

    def close(self) -> None:
        """Close the netlink socket (a later call opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _apply(self, batch: Batch) -> None:
        if self._socket is None:
            self._socket = in_netns(self.netns, NetlinkSocket)
        try:
            self._socket.apply(batch)
        except OSError as exc:
            raise NftError(f"netlink transaction refused: {exc}") from exc

    def run_sync(self, commands: str | Iterable[Command]) -> str:
        """Apply ``commands`` as one transaction in the namespace; blocking.

        A string is nft text (``list table ...``), run through libnftables; its output
        is returned ("" for commands).

        :raises NftError: the transaction was refused; nothing of it was applied.
        """
        if isinstance(commands, str):
            text = commands if commands.endswith("\n") else commands + "\n"
        else:
            commands = list(commands)
            if self.netlink:
                try:
                    batch = encode(commands)
                except Unsupported:
                    pass
                else:
                    self._apply(batch)
                    return ""
            text = to_nft_text(commands)
        return in_netns(self.netns, lambda: run_text(text))

    async def run(self, commands: str | Iterable[Command]) -> str:
        """:meth:`run_sync` in a worker thread."""
        if not isinstance(commands, str):
            commands = list(commands)
        async with self._lock:
            return await trio.to_thread.run_sync(self.run_sync, commands)
