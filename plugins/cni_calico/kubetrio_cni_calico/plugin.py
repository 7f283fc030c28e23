"""Entry point of the ``cni_calico`` plugin: registers the ``calico`` network plugin.

The plugin owns its options (``--network-mode``, ``--pod-cidr``; the ``network``
section of the configuration) and is a class: each plugin manager (each cluster) has
its own settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import NetworkPlugin, PluginOptions, ResourceDefinition

from .blocks import DEFAULT_POOL, IPAM_BLOCK
from .pools import IP_POOL, MODE_MTU, Pool
from .veth import CalicoNetwork

DEFAULT_BLOCK = "10.244.0.0/26"
NETWORK_MODES = tuple(MODE_MTU)
"""How pod traffic crosses nodes: the IP pool modes."""


class CalicoPlugin:
    """The ``cni_calico`` plugin: the ``calico`` network plugin and its IP pool kinds."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}

    @hookimpl
    def kubetrio_add_options(self, options: PluginOptions) -> None:
        """``--network-mode`` (server, agent, up) and ``--pod-cidr`` (server, up)."""
        options.add(
            "network-mode",
            help="How pod traffic crosses nodes, for the cluster's default IP pool: "
            "vxlan (kernel VXLAN, the default), ipip (the userspace IPIP tunnel) or bgp "
            "(routes via bird). An agent's matters only if no node made the pool yet.",
            choices=NETWORK_MODES,
            section="network",
            key="mode",
            aliases=("--mode",),
        )
        options.add(
            "pod-cidr",
            help=f"The pod network, the default IP pool's CIDR (default {DEFAULT_POOL}).",
            commands=("server", "up"),
            section="network",
            key="pool",
        )

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """Read ``config["network"]``: ``pool``, ``blockSize``, ``mode``, ``mtu``,
        ``underlayAddress``, or ``block`` for a hand-placed node."""
        settings = {k: v for k, v in (config.get("network") or {}).items() if v is not None}
        if settings.get("mode") and settings["mode"] not in NETWORK_MODES:
            raise ValueError(
                f"network mode {settings['mode']!r} is not one of {', '.join(NETWORK_MODES)}"
            )
        self.settings = settings

    @hookimpl
    def kubetrio_register_resources(self, register: Callable[[ResourceDefinition], None]) -> None:
        """Serve ``ippools.crd.kubetrio.io`` (address pools) and ``ipamblocks.crd.kubetrio.io``
        (the per-node blocks of a pool)."""
        register(IP_POOL)
        register(IPAM_BLOCK)

    @hookimpl
    def kubetrio_register_network_plugins(self, register: Callable[[NetworkPlugin], None]) -> None:
        """Register the ``calico`` network plugin.

        Normally the settings describe the cluster's default pool (``pool`` 10.244.0.0/16,
        ``blockSize`` 26, ``mode`` vxlan, ``mtu`` the mode's): the first node creates the
        ``IPPool`` from them and every node follows the stored pool, claiming blocks of it.
        With ``block`` the node is hand-placed: it claims exactly that block and routes the
        way ``mode`` says (none when unset), with no pool involved. ``underlayAddress`` is
        the node's tunnel source (else its Node's InternalIP).
        """
        settings = self.settings
        underlay = settings.get("underlayAddress")
        underlay_ip = str(underlay) if underlay else None
        if "block" in settings:
            mtu = settings.get("mtu")
            network = CalicoNetwork(
                str(settings["block"]),
                mode=str(settings.get("mode") or ""),
                mtu=int(mtu) if mtu else None,
                underlay_ip=underlay_ip,
            )
        else:
            network = CalicoNetwork(
                DEFAULT_BLOCK, pool=Pool.from_settings(settings), underlay_ip=underlay_ip
            )
        register(network)


__kubetrio_plugin__ = CalicoPlugin
"""What the entry point instantiates once per plugin manager."""
