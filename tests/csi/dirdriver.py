"""A small CSI driver for the tests: a real gRPC server on a unix socket, volumes are
directories.

It implements the Identity, Controller and Node services with the servicer base classes
generated from kubetrio_csi's csi.proto, so the adapter is proved against the CSI protocol
rather than against kubetrio's own hooks. Capabilities: CREATE_DELETE_VOLUME, EXPAND_VOLUME
and GET_CAPACITY (controller); STAGE_UNSTAGE_VOLUME, EXPAND_VOLUME and GET_VOLUME_STATS
(node); VOLUME_ACCESSIBILITY_CONSTRAINTS and ONLINE expansion (plugin).

Publishing bind-mounts the volume's directory at the target path when ``mounts`` is on
(root), and otherwise makes the target a symlink to it, so protocol tests need no root.
``staging=False`` drops STAGE_UNSTAGE_VOLUME (publishing then needs no staging).

Every request is recorded (``calls``); ``failures[rpc]`` makes an RPC answer a gRPC error
and ``delays[rpc]`` makes it wait, noting in ``cancelled`` a call its client gave up on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import wrappers_pb2
from kubetrio_csi import csi_pb2 as csi
from kubetrio_csi import csi_pb2_grpc as csi_grpc
from kubetrio_storage.local import is_mount_point

NAME = "dir.csi.kubetrio.test"
NODE_ID = "dir-node-7f3a"
ZONE_KEY = "topology.dir.csi.kubetrio.test/zone"
TOTAL_BYTES = 1 << 30
DEFAULT_BYTES = 1 << 20


class DirDriver:
    """The driver's state and its gRPC server; ``start``/``stop`` (or a ``with`` block)."""

    def __init__(
        self,
        root: Path,
        socket: Path,
        *,
        name: str = NAME,
        node_id: str = NODE_ID,
        zone: str = "zone-a",
        max_volumes: int = 7,
        mounts: bool = False,
        staging: bool = True,
    ) -> None:
        self.root = root
        self.socket = socket
        self.name = name
        self.node_id = node_id
        self.zone = zone
        self.max_volumes = max_volumes
        self.mounts = mounts
        self.staging = staging
        """Advertise STAGE_UNSTAGE_VOLUME (and require staging before publishing)."""
        self.ready: bool | None = None
        """Probe's answer; None leaves ``ready`` unset (CSI: ready)."""
        self.calls: list[tuple[str, Any]] = []
        self.failures: dict[str, tuple[grpc.StatusCode, str]] = {}
        self.delays: dict[str, float] = {}
        self.cancelled: list[str] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        (root / "volumes").mkdir(parents=True, exist_ok=True)

    # --- server -----------------------------------------------------------------------------

    def start(self) -> DirDriver:
        """Serve on the socket (a fresh server each time: a stopped one cannot restart)."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        csi_grpc.add_IdentityServicer_to_server(Identity(self), server)
        csi_grpc.add_ControllerServicer_to_server(Controller(self), server)
        csi_grpc.add_NodeServicer_to_server(Node(self), server)
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving at once and remove the socket."""
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> DirDriver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self, rpc: str) -> list[Any]:
        """The requests of one RPC received so far, oldest first."""
        with self._lock:
            return [request for name, request in self.calls if name == rpc]

    def enter(self, rpc: str, request: Any, context: grpc.ServicerContext) -> bool:
        """Record the call, apply a configured delay or failure; False when cancelled."""
        with self._lock:
            self.calls.append((rpc, request))
        delay = self.delays.get(rpc, 0.0)
        until = time.monotonic() + delay
        while time.monotonic() < until:
            if not context.is_active():
                with self._lock:
                    self.cancelled.append(rpc)
                return False
            time.sleep(0.01)
        failure = self.failures.get(rpc)
        if failure is not None:
            context.abort(*failure)
        return True

    # --- volumes ----------------------------------------------------------------------------

    def volume_dir(self, volume_id: str) -> Path:
        """Where a volume's files live."""
        return self.root / "volumes" / volume_id

    def size_of(self, volume_id: str) -> int:
        """The volume's recorded capacity."""
        meta = json.loads((self.volume_dir(volume_id) / ".meta").read_text())
        return int(meta["size"])

    def set_size(self, volume_id: str, size: int, name: str = "") -> None:
        """Record the volume's capacity (and the name it was created with)."""
        path = self.volume_dir(volume_id)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"size": size, "name": name or volume_id.removeprefix("vol-")}
        (path / ".meta").write_text(json.dumps(meta))

    def used_bytes(self) -> int:
        """The capacity every volume holds."""
        volumes = self.root / "volumes"
        return sum(self.size_of(v.name) for v in volumes.iterdir() if (v / ".meta").exists())


def _exists(driver: DirDriver, volume_id: str, context: grpc.ServicerContext) -> Path:
    if not volume_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "volume_id is required")
    path = driver.volume_dir(volume_id)
    if not (path / ".meta").exists():
        context.abort(grpc.StatusCode.NOT_FOUND, f"volume {volume_id} does not exist")
    return path


class Identity(csi_grpc.IdentityServicer):
    """GetPluginInfo, GetPluginCapabilities, Probe."""

    def __init__(self, driver: DirDriver) -> None:
        self.d = driver

    def GetPluginInfo(self, request: Any, context: Any) -> csi.GetPluginInfoResponse:
        self.d.enter("GetPluginInfo", request, context)
        return csi.GetPluginInfoResponse(name=self.d.name, vendor_version="0.3.1")

    def GetPluginCapabilities(
        self, request: Any, context: Any
    ) -> csi.GetPluginCapabilitiesResponse:
        self.d.enter("GetPluginCapabilities", request, context)
        service = csi.PluginCapability.Service
        return csi.GetPluginCapabilitiesResponse(
            capabilities=[
                csi.PluginCapability(service=service(type=service.CONTROLLER_SERVICE)),
                csi.PluginCapability(
                    service=service(type=service.VOLUME_ACCESSIBILITY_CONSTRAINTS)
                ),
                csi.PluginCapability(
                    volume_expansion=csi.PluginCapability.VolumeExpansion(
                        type=csi.PluginCapability.VolumeExpansion.ONLINE
                    )
                ),
            ]
        )

    def Probe(self, request: Any, context: Any) -> csi.ProbeResponse:
        self.d.enter("Probe", request, context)
        if self.d.ready is None:
            return csi.ProbeResponse()
        return csi.ProbeResponse(ready=wrappers_pb2.BoolValue(value=self.d.ready))


class Controller(csi_grpc.ControllerServicer):
    """CreateVolume, DeleteVolume, ControllerExpandVolume, GetCapacity, capabilities."""

    def __init__(self, driver: DirDriver) -> None:
        self.d = driver

    def CreateVolume(self, request: Any, context: Any) -> csi.CreateVolumeResponse:
        if not self.d.enter("CreateVolume", request, context):
            return csi.CreateVolumeResponse()
        if not request.name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
        size = request.capacity_range.required_bytes or DEFAULT_BYTES
        volume_id = f"vol-{request.name}"
        if (self.d.volume_dir(volume_id) / ".meta").exists():
            if self.d.size_of(volume_id) != size:
                context.abort(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"volume {request.name} exists with another size",
                )
        elif self.d.used_bytes() + size > TOTAL_BYTES:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "not enough space")
        else:
            self.d.set_size(volume_id, size, request.name)
        requisite = list(request.accessibility_requirements.requisite)
        topology = requisite[0] if requisite else csi.Topology(segments={ZONE_KEY: self.d.zone})
        return csi.CreateVolumeResponse(
            volume=csi.Volume(
                volume_id=volume_id,
                capacity_bytes=size,
                volume_context={"dir": str(self.d.volume_dir(volume_id))},
                accessible_topology=[topology],
            )
        )

    def DeleteVolume(self, request: Any, context: Any) -> csi.DeleteVolumeResponse:
        self.d.enter("DeleteVolume", request, context)
        shutil.rmtree(self.d.volume_dir(request.volume_id), ignore_errors=True)
        return csi.DeleteVolumeResponse()

    def ControllerExpandVolume(
        self, request: Any, context: Any
    ) -> csi.ControllerExpandVolumeResponse:
        self.d.enter("ControllerExpandVolume", request, context)
        _exists(self.d, request.volume_id, context)
        size = max(request.capacity_range.required_bytes, self.d.size_of(request.volume_id))
        self.d.set_size(request.volume_id, size)
        return csi.ControllerExpandVolumeResponse(capacity_bytes=size, node_expansion_required=True)

    def GetCapacity(self, request: Any, context: Any) -> csi.GetCapacityResponse:
        self.d.enter("GetCapacity", request, context)
        segments = dict(request.accessible_topology.segments)
        if segments and segments.get(ZONE_KEY) != self.d.zone:
            return csi.GetCapacityResponse(available_capacity=0)
        return csi.GetCapacityResponse(available_capacity=TOTAL_BYTES - self.d.used_bytes())

    def ControllerGetCapabilities(
        self, request: Any, context: Any
    ) -> csi.ControllerGetCapabilitiesResponse:
        self.d.enter("ControllerGetCapabilities", request, context)
        rpc = csi.ControllerServiceCapability.RPC
        kinds = [rpc.CREATE_DELETE_VOLUME, rpc.EXPAND_VOLUME, rpc.GET_CAPACITY]
        return csi.ControllerGetCapabilitiesResponse(
            capabilities=[csi.ControllerServiceCapability(rpc=rpc(type=k)) for k in kinds]
        )


class Node(csi_grpc.NodeServicer):
    """Stage, publish, expand, stats, capabilities and NodeGetInfo."""

    def __init__(self, driver: DirDriver) -> None:
        self.d = driver

    def NodeStageVolume(self, request: Any, context: Any) -> csi.NodeStageVolumeResponse:
        self.d.enter("NodeStageVolume", request, context)
        _exists(self.d, request.volume_id, context)
        if not request.staging_target_path:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "staging_target_path is required")
        staging = Path(request.staging_target_path)
        staging.mkdir(parents=True, exist_ok=True)
        (staging / ".staged").write_text(request.volume_id)
        return csi.NodeStageVolumeResponse()

    def NodeUnstageVolume(self, request: Any, context: Any) -> csi.NodeUnstageVolumeResponse:
        self.d.enter("NodeUnstageVolume", request, context)
        (Path(request.staging_target_path) / ".staged").unlink(missing_ok=True)
        return csi.NodeUnstageVolumeResponse()

    def NodePublishVolume(self, request: Any, context: Any) -> csi.NodePublishVolumeResponse:
        self.d.enter("NodePublishVolume", request, context)
        source = _exists(self.d, request.volume_id, context)
        staged = Path(request.staging_target_path) / ".staged"
        if self.d.staging and not staged.exists():
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "volume is not staged")
        target = Path(request.target_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.d.mounts:
            target.mkdir(exist_ok=True)
            if not is_mount_point(str(target)):
                subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
                if request.readonly:
                    subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        elif not target.is_symlink():
            if target.is_dir():
                target.rmdir()  # the kubelet made the mount point: it becomes the link
            target.symlink_to(source)
        return csi.NodePublishVolumeResponse()

    def NodeUnpublishVolume(self, request: Any, context: Any) -> csi.NodeUnpublishVolumeResponse:
        self.d.enter("NodeUnpublishVolume", request, context)
        target = Path(request.target_path)
        if is_mount_point(str(target)):
            subprocess.run(["umount", str(target)], check=True)
        if target.is_symlink():
            target.unlink()
        elif target.is_dir():
            target.rmdir()
        return csi.NodeUnpublishVolumeResponse()

    def NodeExpandVolume(self, request: Any, context: Any) -> csi.NodeExpandVolumeResponse:
        self.d.enter("NodeExpandVolume", request, context)
        _exists(self.d, request.volume_id, context)
        return csi.NodeExpandVolumeResponse(capacity_bytes=self.d.size_of(request.volume_id))

    def NodeGetVolumeStats(self, request: Any, context: Any) -> csi.NodeGetVolumeStatsResponse:
        self.d.enter("NodeGetVolumeStats", request, context)
        source = _exists(self.d, request.volume_id, context)
        if not os.path.exists(request.volume_path):
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.volume_path} is not published")
        total = self.d.size_of(request.volume_id)
        files = [p for p in source.rglob("*") if p.is_file() and p.name != ".meta"]
        used = sum(p.stat().st_size for p in files)
        usage = csi.VolumeUsage
        return csi.NodeGetVolumeStatsResponse(
            usage=[
                usage(unit=usage.BYTES, total=total, used=used, available=total - used),
                usage(unit=usage.INODES, total=1000, used=len(files), available=1000 - len(files)),
            ]
        )

    def NodeGetCapabilities(self, request: Any, context: Any) -> csi.NodeGetCapabilitiesResponse:
        self.d.enter("NodeGetCapabilities", request, context)
        rpc = csi.NodeServiceCapability.RPC
        kinds = [rpc.EXPAND_VOLUME, rpc.GET_VOLUME_STATS]
        if self.d.staging:
            kinds.insert(0, rpc.STAGE_UNSTAGE_VOLUME)
        return csi.NodeGetCapabilitiesResponse(
            capabilities=[csi.NodeServiceCapability(rpc=rpc(type=k)) for k in kinds]
        )

    def NodeGetInfo(self, request: Any, context: Any) -> csi.NodeGetInfoResponse:
        self.d.enter("NodeGetInfo", request, context)
        return csi.NodeGetInfoResponse(
            node_id=self.d.node_id,
            max_volumes_per_node=self.d.max_volumes,
            accessible_topology=csi.Topology(segments={ZONE_KEY: self.d.zone}),
        )
