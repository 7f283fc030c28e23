"""A :class:`~kubetrio.providers.StorageDriver` that forwards each call to an external CSI
driver: one method, one CSI RPC, over the driver's unix socket.

The mapping is external-provisioner's and kubelet's: an access mode is the CSI
``AccessMode`` enum value of the same name, a filesystem volume is a ``MountVolume``
(``fs_type``, ``mount_flags``) and a raw one a ``BlockVolume``, capacities are a
``CapacityRange``, topology segments are ``Topology`` messages. Every error the driver
answers becomes :class:`~kubetrio.providers.StorageDriverError` with the gRPC code's name,
so the core's retry rules (CSI's: ``INVALID_ARGUMENT`` and ``UNIMPLEMENTED`` are final) and
its events see what the driver said.

Before its first call a driver is asked its name (``GetPluginInfo``): a socket serving
another driver than the one configured refuses every call with ``FAILED_PRECONDITION``
instead of provisioning through the wrong driver.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import grpc

from kubetrio.providers import (
    CreatedVolume,
    CreateVolumeRequest,
    ExpandedVolume,
    StorageDriverError,
    StorageDriverInfo,
    StorageNodeInfo,
    VolumeCapability,
    VolumeStats,
)

from . import csi_pb2 as csi
from .grpc_trio import call, rpc_error

log = logging.getLogger(__name__)

Response = TypeVar("Response")

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # A driver that restarts is reconnected to within seconds, not after gRPC's default
    # back-off (up to two minutes); calls made while it is down fail at once (UNAVAILABLE).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


ACCESS_MODES = frozenset(csi.VolumeCapability.AccessMode.Mode.keys())
"""CSI's access mode names (``SINGLE_NODE_WRITER``, …)."""


def capability_message(capability: VolumeCapability) -> csi.VolumeCapability:
    """A CSI ``VolumeCapability`` from kubetrio's."""
    if capability.access_mode not in ACCESS_MODES:
        raise StorageDriverError(
            "INVALID_ARGUMENT", f"unknown CSI access mode {capability.access_mode!r}"
        )
    access_mode = csi.VolumeCapability.AccessMode(mode=capability.access_mode)
    if capability.block:
        return csi.VolumeCapability(
            block=csi.VolumeCapability.BlockVolume(), access_mode=access_mode
        )
    mount = csi.VolumeCapability.MountVolume(
        fs_type=capability.fs_type, mount_flags=list(capability.mount_flags)
    )
    return csi.VolumeCapability(mount=mount, access_mode=access_mode)


def _topology(segments: Mapping[str, str]) -> csi.Topology:
    return csi.Topology(segments=dict(segments))


class CSIDriver:
    """One external CSI driver, by its name and the unix socket it listens on.

    :param name: the CSI driver name (StorageClasses' ``provisioner``); the driver must
        answer ``GetPluginInfo`` with it.
    :param socket: the path of its unix socket (``/var/lib/kubelet/plugins/<name>/csi.sock``
        by convention) or a ``unix://`` address.
    :param timeout: each call's deadline, in seconds.
    """

    def __init__(self, name: str, socket: str, *, timeout: float = 30.0) -> None:
        self.name = name
        self.target = socket if socket.startswith("unix:") else f"unix://{socket}"
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self._methods: dict[str, grpc.UnaryUnaryMultiCallable[Any, Any]] = {}
        self._verified = False

    def __repr__(self) -> str:
        return f"CSIDriver({self.name!r}, {self.target!r})"

    def close(self) -> None:
        """Close the channel to the driver."""
        self._channel.close()

    # --- plumbing -------------------------------------------------------------------------

    def _method(
        self, service: str, rpc: str, response: type[Response]
    ) -> grpc.UnaryUnaryMultiCallable[Any, Response]:
        path = f"/csi.v1.{service}/{rpc}"
        method = self._methods.get(path)
        if method is None:
            method = self._channel.unary_unary(
                path,
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=response.FromString,  # type: ignore[attr-defined]
            )
            self._methods[path] = method
        return method

    async def _call(
        self, service: str, rpc: str, request: Any, response: type[Response]
    ) -> Response:
        if not self._verified:
            await self._verify()
        return await self._raw_call(service, rpc, request, response)

    async def _raw_call(
        self, service: str, rpc: str, request: Any, response: type[Response]
    ) -> Response:
        method = self._method(service, rpc, response)
        what = f"CSI driver {self.name} ({self.target}) {rpc}"
        return await call(method, request, timeout=self.timeout, what=what)

    def _name_mismatch(self, answered: str) -> StorageDriverError:
        return StorageDriverError(
            "FAILED_PRECONDITION",
            f"the CSI driver at {self.target} is named {answered!r}, not {self.name!r}: "
            f"check --csi-driver {self.name}=…",
        )

    async def _verify(self) -> None:
        info = await self._raw_call(
            "Identity", "GetPluginInfo", csi.GetPluginInfoRequest(), csi.GetPluginInfoResponse
        )
        if info.name != self.name:
            raise self._name_mismatch(info.name)
        self._verified = True

    def verify_now(self, timeout: float) -> None:
        """Ask the driver its name at once, blocking (at configure time, before trio runs).

        Raises :class:`StorageDriverError` when the driver answers another name; a driver
        that does not answer (not started yet) is only logged: every call checks again
        until one succeeds.
        """
        method = self._method("Identity", "GetPluginInfo", csi.GetPluginInfoResponse)
        try:
            info = method(csi.GetPluginInfoRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            error = rpc_error(exc, f"CSI driver {self.name} ({self.target}) GetPluginInfo")
            log.warning("%s; checking its name again at its first call", error)
            return
        if info.name != self.name:
            raise self._name_mismatch(info.name)
        self._verified = True

    # --- identity -------------------------------------------------------------------------

    async def get_info(self) -> StorageDriverInfo:
        """``GetPluginInfo``, ``GetPluginCapabilities`` and, for the services the driver
        offers, ``ControllerGetCapabilities`` and ``NodeGetCapabilities``."""
        info = await self._call(
            "Identity", "GetPluginInfo", csi.GetPluginInfoRequest(), csi.GetPluginInfoResponse
        )
        plugin = await self._call(
            "Identity",
            "GetPluginCapabilities",
            csi.GetPluginCapabilitiesRequest(),
            csi.GetPluginCapabilitiesResponse,
        )
        plugin_capabilities: set[str] = set()
        for capability in plugin.capabilities:
            if capability.HasField("service"):
                plugin_capabilities.add(
                    csi.PluginCapability.Service.Type.Name(capability.service.type)
                )
            elif capability.HasField("volume_expansion"):
                plugin_capabilities.add(
                    csi.PluginCapability.VolumeExpansion.Type.Name(capability.volume_expansion.type)
                )
        controller_capabilities: set[str] = set()
        if "CONTROLLER_SERVICE" in plugin_capabilities:
            controller = await self._call(
                "Controller",
                "ControllerGetCapabilities",
                csi.ControllerGetCapabilitiesRequest(),
                csi.ControllerGetCapabilitiesResponse,
            )
            controller_capabilities = {
                csi.ControllerServiceCapability.RPC.Type.Name(c.rpc.type)
                for c in controller.capabilities
                if c.HasField("rpc")
            }
        try:
            node = await self._call(
                "Node",
                "NodeGetCapabilities",
                csi.NodeGetCapabilitiesRequest(),
                csi.NodeGetCapabilitiesResponse,
            )
            node_capabilities = {
                csi.NodeServiceCapability.RPC.Type.Name(c.rpc.type)
                for c in node.capabilities
                if c.HasField("rpc")
            }
        except StorageDriverError as exc:
            if exc.code != "UNIMPLEMENTED":  # a controller-only deployment has no node service
                raise
            node_capabilities = set()
        return StorageDriverInfo(
            name=info.name,
            vendor_version=info.vendor_version,
            plugin_capabilities=frozenset(plugin_capabilities - {"UNKNOWN"}),
            controller_capabilities=frozenset(controller_capabilities - {"UNKNOWN"}),
            node_capabilities=frozenset(node_capabilities - {"UNKNOWN"}),
        )

    async def probe(self) -> bool:
        """``Probe``: an unset ``ready`` means ready (CSI); a driver that cannot be reached,
        or answers ``FAILED_PRECONDITION``, is not ready."""
        try:
            response = await self._call("Identity", "Probe", csi.ProbeRequest(), csi.ProbeResponse)
        except StorageDriverError as exc:
            if exc.code in ("UNAVAILABLE", "FAILED_PRECONDITION", "DEADLINE_EXCEEDED"):
                log.info("%s", exc)
                return False
            raise
        return not response.HasField("ready") or response.ready.value

    # --- controller -----------------------------------------------------------------------

    async def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        """``CreateVolume``."""
        message = csi.CreateVolumeRequest(
            name=request.name,
            volume_capabilities=[capability_message(c) for c in request.capabilities],
            parameters=dict(request.parameters),
            secrets=dict(request.secrets),
        )
        if request.capacity_bytes or request.limit_bytes:
            message.capacity_range.CopyFrom(
                csi.CapacityRange(
                    required_bytes=request.capacity_bytes, limit_bytes=request.limit_bytes
                )
            )
        if request.requisite_topology or request.preferred_topology:
            message.accessibility_requirements.CopyFrom(
                csi.TopologyRequirement(
                    requisite=[_topology(s) for s in request.requisite_topology],
                    preferred=[_topology(s) for s in request.preferred_topology],
                )
            )
        response = await self._call("Controller", "CreateVolume", message, csi.CreateVolumeResponse)
        volume = response.volume
        return CreatedVolume(
            volume_id=volume.volume_id,
            capacity_bytes=volume.capacity_bytes,
            volume_context=dict(volume.volume_context),
            accessible_topology=tuple(dict(t.segments) for t in volume.accessible_topology),
        )

    async def delete_volume(
        self, *, volume_id: str, secrets: Mapping[str, str] | None = None
    ) -> None:
        """``DeleteVolume``."""
        message = csi.DeleteVolumeRequest(volume_id=volume_id, secrets=dict(secrets or {}))
        await self._call("Controller", "DeleteVolume", message, csi.DeleteVolumeResponse)

    async def expand_volume(
        self, *, volume_id: str, capacity_bytes: int, capability: VolumeCapability
    ) -> ExpandedVolume:
        """``ControllerExpandVolume``."""
        message = csi.ControllerExpandVolumeRequest(
            volume_id=volume_id,
            capacity_range=csi.CapacityRange(required_bytes=capacity_bytes),
            volume_capability=capability_message(capability),
        )
        response = await self._call(
            "Controller", "ControllerExpandVolume", message, csi.ControllerExpandVolumeResponse
        )
        return ExpandedVolume(
            capacity_bytes=response.capacity_bytes,
            node_expansion_required=response.node_expansion_required,
        )

    async def get_capacity(
        self, *, parameters: Mapping[str, str], topology: Mapping[str, str] | None = None
    ) -> int | None:
        """``GetCapacity`` (``available_capacity``)."""
        message = csi.GetCapacityRequest(parameters=dict(parameters))
        if topology:
            message.accessible_topology.CopyFrom(_topology(topology))
        response = await self._call("Controller", "GetCapacity", message, csi.GetCapacityResponse)
        return response.available_capacity

    # --- node -----------------------------------------------------------------------------

    async def node_info(self, *, node_name: str) -> StorageNodeInfo:
        """``NodeGetInfo``: the driver's own node id (``node_name`` is not used)."""
        response = await self._call(
            "Node", "NodeGetInfo", csi.NodeGetInfoRequest(), csi.NodeGetInfoResponse
        )
        return StorageNodeInfo(
            node_id=response.node_id,
            max_volumes_per_node=response.max_volumes_per_node,
            accessible_topology=dict(response.accessible_topology.segments),
        )

    async def stage_volume(
        self,
        *,
        volume_id: str,
        staging_path: str,
        capability: VolumeCapability,
        volume_context: Mapping[str, str],
        publish_context: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """``NodeStageVolume``."""
        message = csi.NodeStageVolumeRequest(
            volume_id=volume_id,
            publish_context=dict(publish_context or {}),
            staging_target_path=staging_path,
            volume_capability=capability_message(capability),
            secrets=dict(secrets or {}),
            volume_context=dict(volume_context),
        )
        await self._call("Node", "NodeStageVolume", message, csi.NodeStageVolumeResponse)

    async def unstage_volume(self, *, volume_id: str, staging_path: str) -> None:
        """``NodeUnstageVolume``."""
        message = csi.NodeUnstageVolumeRequest(
            volume_id=volume_id, staging_target_path=staging_path
        )
        await self._call("Node", "NodeUnstageVolume", message, csi.NodeUnstageVolumeResponse)

    async def publish_volume(
        self,
        *,
        volume_id: str,
        target_path: str,
        capability: VolumeCapability,
        read_only: bool,
        volume_context: Mapping[str, str],
        staging_path: str = "",
        publish_context: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """``NodePublishVolume``."""
        message = csi.NodePublishVolumeRequest(
            volume_id=volume_id,
            publish_context=dict(publish_context or {}),
            staging_target_path=staging_path,
            target_path=target_path,
            volume_capability=capability_message(capability),
            readonly=read_only,
            secrets=dict(secrets or {}),
            volume_context=dict(volume_context),
        )
        await self._call("Node", "NodePublishVolume", message, csi.NodePublishVolumeResponse)

    async def unpublish_volume(self, *, volume_id: str, target_path: str) -> None:
        """``NodeUnpublishVolume``."""
        message = csi.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target_path)
        await self._call("Node", "NodeUnpublishVolume", message, csi.NodeUnpublishVolumeResponse)

    async def expand_node_volume(
        self, *, volume_id: str, volume_path: str, capacity_bytes: int, staging_path: str = ""
    ) -> int:
        """``NodeExpandVolume``; a driver answering no size (0) grew it to the request."""
        message = csi.NodeExpandVolumeRequest(
            volume_id=volume_id,
            volume_path=volume_path,
            capacity_range=csi.CapacityRange(required_bytes=capacity_bytes),
            staging_target_path=staging_path,
        )
        response = await self._call(
            "Node", "NodeExpandVolume", message, csi.NodeExpandVolumeResponse
        )
        return response.capacity_bytes or capacity_bytes

    async def volume_stats(self, *, volume_id: str, volume_path: str) -> VolumeStats:
        """``NodeGetVolumeStats``: the ``BYTES`` and ``INODES`` usage entries."""
        message = csi.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=volume_path)
        response = await self._call(
            "Node", "NodeGetVolumeStats", message, csi.NodeGetVolumeStatsResponse
        )
        found: dict[str, int] = {}
        for usage in response.usage:
            unit = {csi.VolumeUsage.BYTES: "bytes", csi.VolumeUsage.INODES: "inodes"}.get(
                usage.unit
            )
            if unit is not None:
                found[f"total_{unit}"] = usage.total
                found[f"used_{unit}"] = usage.used
                found[f"available_{unit}"] = usage.available
        return VolumeStats(**found)
