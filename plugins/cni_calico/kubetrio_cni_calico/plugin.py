"""Entry point of the ``cni_calico`` plugin: registers the ``calico`` network plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import NetworkPlugin, ResourceDefinition

from .blocks import DEFAULT_BLOCK_SIZE, DEFAULT_POOL, IPAM_BLOCK
from .veth import CalicoNetwork
from .vxlan import MTU as VXLAN_MTU

DEFAULT_BLOCK = "10.244.0.0/26"

_settings: dict[str, Any] = {}


@hookimpl
def kubetrio_configure(config: dict[str, Any]) -> None:
    """Read ``config["network"]``: ``block`` or ``pool``/``blockSize``, ``mode``, ``mtu``."""
    _settings.clear()
    _settings.update(config.get("network") or {})


@hookimpl
def kubetrio_register_resources(register: Callable[[ResourceDefinition], None]) -> None:
    """Serve ``ipamblocks.crd.kubetrio.io``: the per-node blocks of the pod CIDR."""
    register(IPAM_BLOCK)


@hookimpl
def kubetrio_register_network_plugins(register: Callable[[NetworkPlugin], None]) -> None:
    """Register the ``calico`` network plugin.

    With ``network.block`` configured the node claims that block; otherwise it claims
    the first free ``network.blockSize`` block (/26) of ``network.pool`` (10.244.0.0/16).
    ``network.mode: vxlan`` adds routes to other nodes' blocks over kernel VXLAN (pod
    MTU 1450 unless ``mtu`` is set; ``underlayAddress`` else the Node's InternalIP).
    """
    mode = str(_settings.get("mode", ""))
    mtu = int(_settings.get("mtu", VXLAN_MTU if mode == "vxlan" else 1500))
    routing: dict[str, Any] = {"mode": mode, "underlay_ip": _settings.get("underlayAddress")}
    if "block" in _settings:
        register(CalicoNetwork(str(_settings["block"]), mtu=mtu, **routing))
    else:
        register(
            CalicoNetwork(
                DEFAULT_BLOCK,
                mtu=mtu,
                pool=str(_settings.get("pool", DEFAULT_POOL)),
                block_size=int(_settings.get("blockSize", DEFAULT_BLOCK_SIZE)),
                **routing,
            )
        )
