"""Entry point of the ``cni_calico`` plugin: registers the ``calico`` network plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import NetworkPlugin

from .veth import CalicoNetwork

DEFAULT_BLOCK = "10.244.0.0/26"

_settings: dict[str, Any] = {}


@hookimpl
def kubetrio_configure(config: dict[str, Any]) -> None:
    """Take the node's block and MTU from ``config["network"]`` (``block``, ``mtu``)."""
    _settings.clear()
    _settings.update(config.get("network") or {})


@hookimpl
def kubetrio_register_network_plugins(register: Callable[[NetworkPlugin], None]) -> None:
    """Register the ``calico`` network plugin for this node's block."""
    register(
        CalicoNetwork(_settings.get("block", DEFAULT_BLOCK), mtu=int(_settings.get("mtu", 1500)))
    )
