"""IP pools: the pod CIDR, its block size and how its traffic crosses nodes (Calico's IPPool).

A pool is the cluster-scoped ``IPPool`` (``ippools.crd.kubetrio.io``)::

    spec:
      cidr: 10.244.0.0/16
      blockSize: 26          # prefix length of the per-node blocks
      mode: vxlan            # vxlan | ipip | bgp
      mtu: 1450              # optional; else the mode's default

The plugin's configuration describes the default pool ``default-ipv4-ippool``. The first
node whose agent starts creates it; every node then follows the STORED object, so an
agent that joins with no network configuration uses the cluster's pool, and two agents
configured differently still agree (the first create wins, like Calico's).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetrio.client import Client, ClientError
from kubetrio.providers import ResourceDefinition

from .blocks import API_VERSION, DEFAULT_BLOCK_SIZE, DEFAULT_POOL, GROUP, VERSION

log = logging.getLogger("kubetrio.cni_calico.pools")

PLURAL = "ippools"
KIND = "IPPool"
DEFAULT_NAME = "default-ipv4-ippool"
DEFAULT_MODE = "vxlan"
MODE_MTU = {"vxlan": 1450, "ipip": 1480, "bgp": 1500}
"""Pod MTU per mode: 1500 minus the outer headers (VXLAN 50 bytes, IPIP 20, BGP none)."""

IP_POOL = ResourceDefinition(
    group=GROUP,
    version=VERSION,
    kind=KIND,
    plural=PLURAL,
    namespaced=False,
    short_names=("ippool",),
    schema={
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "cidr": {"type": "string"},
                    "blockSize": {"type": "integer"},
                    "mode": {"type": "string", "enum": sorted(MODE_MTU)},
                    "mtu": {"type": "integer"},
                },
            }
        },
    },
)
"""The kind the plugin registers: the cluster's address pools."""


@dataclass(frozen=True)
class Pool:
    """One IP pool: where pod addresses come from and how they are routed between nodes."""

    cidr: str = DEFAULT_POOL
    block_size: int = DEFAULT_BLOCK_SIZE
    mode: str = DEFAULT_MODE
    mtu: int | None = None
    """An explicit pod MTU; None means the mode's (:data:`MODE_MTU`)."""
    name: str = DEFAULT_NAME

    def __post_init__(self) -> None:
        if self.mode not in MODE_MTU:
            raise ValueError(f"pool mode {self.mode!r} is not one of {', '.join(MODE_MTU)}")
        network = ipaddress.IPv4Network(self.cidr)
        if not network.prefixlen <= self.block_size <= 30:
            raise ValueError(f"block size /{self.block_size} does not fit pool {self.cidr}")

    @property
    def pod_mtu(self) -> int:
        """The MTU pods of this pool get."""
        return self.mtu or MODE_MTU[self.mode]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Pool:
        """The default pool the plugin's ``network`` settings describe."""
        mtu = settings.get("mtu")
        return cls(
            cidr=str(settings.get("pool") or DEFAULT_POOL),
            block_size=int(settings.get("blockSize") or DEFAULT_BLOCK_SIZE),
            mode=str(settings.get("mode") or DEFAULT_MODE),
            mtu=int(mtu) if mtu else None,
        )

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Pool:
        """The pool an ``IPPool`` object describes (ValueError when it is malformed)."""
        spec = obj.get("spec") or {}
        mtu = spec.get("mtu")
        return cls(
            cidr=str(spec["cidr"]),
            block_size=int(spec.get("blockSize") or DEFAULT_BLOCK_SIZE),
            mode=str(spec.get("mode") or DEFAULT_MODE),
            mtu=int(mtu) if mtu else None,
            name=str(obj["metadata"]["name"]),
        )

    def to_object(self) -> dict[str, Any]:
        """The ``IPPool`` object of this pool."""
        spec: dict[str, Any] = {"cidr": self.cidr, "blockSize": self.block_size, "mode": self.mode}
        if self.mtu:
            spec["mtu"] = self.mtu
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name},
            "spec": spec,
        }


async def ensure_pool(client: Client, configured: Pool) -> Pool:
    """The stored pool named like ``configured``, created from it when absent.

    A create that conflicts means another node created it first: its pool is used. When
    the API server does not serve ``ippools`` the configured pool is used as is.
    """
    for _ in range(3):
        try:
            return Pool.from_object(await client.get(API_VERSION, PLURAL, configured.name))
        except ClientError as exc:
            if not exc.not_found:
                raise
        try:
            await client.create(API_VERSION, PLURAL, configured.to_object())
        except ClientError as exc:
            if exc.not_found:
                log.warning("ippools are not served: using the configured pool %s", configured)
                return configured
            if not exc.conflict:
                raise
            continue  # another node created it first: read theirs
        log.info("created IP pool %s: %s", configured.name, configured)
        return configured
    raise RuntimeError(f"IP pool {configured.name} keeps appearing and disappearing")
