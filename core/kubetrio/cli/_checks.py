"""Checks of cluster options shared by ``server``, ``agent`` and ``up``: refused at once,
with the option named, rather than by a background process minutes later."""

from __future__ import annotations

import typer

NETWORK_MODES = ("vxlan", "ipip", "bgp")
"""How pod traffic crosses nodes (the calico plugin's IP pool modes)."""


def checked_network_mode(mode: str, *, option: str = "--network-mode") -> str:
    """``mode`` when it is one of :data:`NETWORK_MODES` (or empty: the plugin's default)."""
    if mode and mode not in NETWORK_MODES:
        raise typer.BadParameter(
            f"{mode!r} is not one of {', '.join(NETWORK_MODES)}", param_hint=option
        )
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
