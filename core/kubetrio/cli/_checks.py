"""Checks of cluster options shared by ``server``, ``agent`` and ``up``: refused at once,
with the option named, rather than by a background process minutes later."""

from __future__ import annotations

import typer


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
