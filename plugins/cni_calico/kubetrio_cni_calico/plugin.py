"""Entry point of the ``cni_calico`` plugin: registers the ``calico`` network plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import NetworkPlugin, ResourceDefinition

from .blocks import IPAM_BLOCK
from .pools import IP_POOL, Pool
from .veth import CalicoNetwork

DEFAULT_BLOCK = "10.244.0.0/26"

_settings: dict[str, Any] = {}


@hookimpl
def kubetrio_configure(config: dict[str, Any]) -> None:
    """Read ``config["network"]``: ``pool``, ``blockSize``, ``mode``, ``mtu``,
    ``underlayAddress``, or ``block`` for a hand-placed node."""
    _settings.clear()
    _settings.update(config.get("network") or {})


@hookimpl
def kubetrio_register_resources(register: Callable[[ResourceDefinition], None]) -> None:
    """Serve ``ippools.crd.kubetrio.io`` (address pools) and ``ipamblocks.crd.kubetrio.io``
    (the per-node blocks of a pool)."""
    register(IP_POOL)
    register(IPAM_BLOCK)


@hookimpl
def kubetrio_register_network_plugins(register: Callable[[NetworkPlugin], None]) -> None:
    """Register the ``calico`` network plugin.

    Normally the settings describe the cluster's default pool (``pool`` 10.244.0.0/16,
    ``blockSize`` 26, ``mode`` vxlan, ``mtu`` the mode's): the first node creates the
    ``IPPool`` from them and every node follows the stored pool, claiming blocks of it.
    With ``block`` the node is hand-placed: it claims exactly that block and routes the
    way ``mode`` says (none when unset), with no pool involved. ``underlayAddress`` is
    the node's tunnel source (else its Node's InternalIP).
    """
    underlay = _settings.get("underlayAddress")
    underlay_ip = str(underlay) if underlay else None
    if "block" in _settings:
        mtu = _settings.get("mtu")
        network = CalicoNetwork(
            str(_settings["block"]),
            mode=str(_settings.get("mode") or ""),
            mtu=int(mtu) if mtu else None,
            underlay_ip=underlay_ip,
        )
    else:
        network = CalicoNetwork(
            DEFAULT_BLOCK, pool=Pool.from_settings(_settings), underlay_ip=underlay_ip
        )
    register(network)
