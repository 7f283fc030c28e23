"""Checks of cluster options shared by ``server``, ``agent`` and ``up``: refused at once,
with the option named, rather than by a background process minutes later."""

from __future__ import annotations

import errno
import socket

import typer

from ._errors import CommandError


def checked_proxy_mode(mode: str) -> str:
    """``--proxy-mode`` when it is one of the service proxy's modes."""
    from kubetrio.cluster import PROXY_MODES

    if mode not in PROXY_MODES:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(PROXY_MODES)}")
    return mode


def checked_lb_pool(spec: str) -> str | None:
    """``--lb-pool`` when it parses as addresses; None when empty (no pool)."""
    if not spec:
        return None
    from kubetrio.servicelb import AddressPool

    try:
        AddressPool(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lb-pool") from exc
    return spec


def checked_listen(host: str, port: int) -> None:
    """Refuse a ``--port``/``--host`` the server could not listen on, naming them.

    A quick bind before anything starts, so the user reads "port 6443 is in use", not a
    traceback from deep inside the server; the real listener binds again right after.
    """
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a TCP port (0-65535)", param_hint="--port")
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is in use (another kubetrio server?): "
                "stop that process or choose another --port"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            raise CommandError(
                f"cannot listen on {host}: this host has no such address; choose another --host"
            ) from None
        raise


def checked_store_url(url: str) -> str:
    """``--store`` when it names a store kubetrio knows (empty: the embedded SQLite)."""
    if url and not url.startswith(("sqlite://", "etcd://")):
        raise typer.BadParameter(
            f"{url!r} is not sqlite:///path/state.db or etcd://host:port[,host:port]",
            param_hint="--store",
        )
    return url
