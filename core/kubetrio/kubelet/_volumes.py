"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected,
and persistentVolumeClaim (published by the storage driver named in the PV's ``spec.csi``).

Each pod has ``<root>/pods/<uid>/volumes/<name>``. Volumes whose content comes from the
API (configMap, secret, downwardAPI, projected) are written the way kubelet's atomic
writer does, so a reader never sees a half-updated set of files::

    <volume>/..2026_11_27_13_45_01.123456789/   the current payload (a fresh dir per update)
    <volume>/..data -> ..2026_…                  swapped with one rename(2)
    <volume>/<key>  -> ..data/<key>              one symlink per top-level entry

An update writes a new payload directory, renames a new ``..data`` symlink over the old
one, then removes the old payload. The agent calls :meth:`PodVolumes.refresh`
periodically, so ConfigMap and Secret changes reach running pods within one period.

A projected ``serviceAccountToken`` source is a token of the pod's ServiceAccount bound
to the pod (TokenRequest with ``boundObjectRef``), so it dies with the pod; it is
replaced once 80% of its lifetime has passed.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from kubetrio.api.quantity import Quantity
from kubetrio.client import Client, ClientError
from kubetrio.providers import (
    ACCESS_MODES_TO_CSI,
    KubeObject,
    StorageDriver,
    VolumeCapability,
    VolumeMount,
)

from ._env import field_value, resource_value

DATA_LINK = "..data"
TOKEN_EXPIRATION = 3600
"""A ``serviceAccountToken`` projection's default ``expirationSeconds``."""
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_MAX_AGE = 24 * 3600.0
"""A projected token is asked for again after 80% of its lifetime, at most after a day."""
Payload = dict[str, tuple[bytes, int]]
"""Relative file path → (content, mode)."""

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class VolumeError(Exception):
    """A volume cannot be set up yet (a missing ConfigMap, an unsupported type)."""


def _safe_relative(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or path.startswith("/"):
        raise VolumeError(f"invalid path {path!r} in volume items")
    return "/".join(parts)


def write_payload(target: Path, payload: Payload) -> None:
    """Make ``target`` show exactly ``payload``, switching atomically via ``..data``."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}"
    data_dir = target / f"..{stamp}"
    data_dir.mkdir()
    for relative, (content, mode) in payload.items():
        path = data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.chmod(path, mode)
    os.chmod(data_dir, 0o755)
    link = target / DATA_LINK
    old = os.readlink(link) if link.is_symlink() else None
    tmp = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(data_dir.name, tmp)
    os.rename(tmp, link)
    tops = {relative.split("/")[0] for relative in payload}
    for name in tops:
        entry = target / name
        if not entry.is_symlink():
            os.symlink(f"{DATA_LINK}/{name}", entry)
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops and entry.is_symlink():
            entry.unlink()
    if old and old != data_dir.name:
        shutil.rmtree(target / old, ignore_errors=True)


def _items_payload(
    data: Mapping[str, bytes], items: Any, default_mode: int, *, what: str
) -> Payload:
    payload: Payload = {}
    if items:
        for item in items:
            key = item.get("key", "")
            if key not in data:
                raise VolumeError(f"{what}: key {key!r} not found")
            payload[_safe_relative(item.get("path", key))] = (
                data[key],
                int(item.get("mode", default_mode)),
            )
    else:
        for key, value in data.items():
            payload[_safe_relative(key)] = (value, default_mode)
    return payload


class PodVolumes:
    """The volumes of one pod on this node."""

    def __init__(
        self,
        client: Client,
        pod: KubeObject,
        root: Path,
        *,
        drivers: Mapping[str, StorageDriver] | None = None,
    ) -> None:
        self.client = client
        self.pod = pod
        self.root = root
        self.drivers = dict(drivers or {})
        """Storage drivers by name, for PersistentVolumes with a ``spec.csi`` source."""
        self.paths: dict[str, Path] = {}
        self._written: dict[str, Payload] = {}
        self._tmpfs: list[Path] = []
        self._published: list[tuple[StorageDriver, str, Path]] = []
        """(driver, volume id, target path) of each published volume."""
        self._tokens: dict[tuple[str, int], tuple[str, float]] = {}
        """Projected tokens by (audience, expirationSeconds): the token and when to
        refresh it."""

    @property
    def namespace(self) -> str:
        """The pod's namespace."""
        return str(self.pod["metadata"].get("namespace") or "default")

    async def _object_data(
        self, kind: str, name: str, *, optional: bool
    ) -> dict[str, bytes] | None:
        resource = "configmaps" if kind == "configMap" else "secrets"
        try:
            obj = await self.client.get("v1", resource, name, namespace=self.namespace)
        except ClientError as exc:
            if exc.not_found:
                if optional:
                    return None
                word = "configmap" if kind == "configMap" else "secret"
                raise VolumeError(f'{word} "{name}" not found') from None
            raise
        result: dict[str, bytes] = {}
        if kind == "configMap":
            for key, value in (obj.get("data") or {}).items():
                result[key] = str(value).encode()
            for key, value in (obj.get("binaryData") or {}).items():
                result[key] = base64.b64decode(value)
        else:
            for key, value in (obj.get("data") or {}).items():
                result[key] = base64.b64decode(value)
            for key, value in (obj.get("stringData") or {}).items():
                result[key] = str(value).encode()
        return result

    async def _payload(self, volume: KubeObject) -> Payload | None:
        """The files of an API-backed volume, or None for other kinds."""
        if "configMap" in volume or "secret" in volume:
            kind = "configMap" if "configMap" in volume else "secret"
            source = volume[kind]
            name = source.get("name") if kind == "configMap" else source.get("secretName")
            data = await self._object_data(kind, str(name), optional=bool(source.get("optional")))
            mode = int(source.get("defaultMode", 0o644))
            return _items_payload(data or {}, source.get("items"), mode, what=f"{kind} {name}")
        if "downwardAPI" in volume:
            return self._downward(
                volume["downwardAPI"].get("items") or [],
                int(volume["downwardAPI"].get("defaultMode", 0o644)),
            )
        if "projected" in volume:
            projected = volume["projected"]
            mode = int(projected.get("defaultMode", 0o644))
            payload: Payload = {}
            for source in projected.get("sources") or []:
                if "configMap" in source or "secret" in source:
                    kind = "configMap" if "configMap" in source else "secret"
                    spec = source[kind]
                    data = await self._object_data(
                        kind, str(spec.get("name")), optional=bool(spec.get("optional"))
                    )
                    payload.update(
                        _items_payload(data or {}, spec.get("items"), mode, what=f"{kind}")
                    )
                elif "downwardAPI" in source:
                    payload.update(self._downward(source["downwardAPI"].get("items") or [], mode))
                elif "serviceAccountToken" in source:
                    spec = source["serviceAccountToken"]
                    token = await self._token(spec)
                    payload[_safe_relative(str(spec.get("path", "")))] = (token.encode(), mode)
                # clusterTrustBundle sources are not served.
            return payload
        return None

    async def _token(self, projection: KubeObject) -> str:
        """The token of a ``serviceAccountToken`` projection: the pod's ServiceAccount's,
        bound to the pod, from the TokenRequest API; asked again once 80% of its
        lifetime has passed (or after a day), as kubelet's token manager does."""
        audience = str(projection.get("audience") or "")
        seconds = int(projection.get("expirationSeconds") or TOKEN_EXPIRATION)
        cached = self._tokens.get((audience, seconds))
        now = time.time()
        if cached is not None and now < cached[1]:
            return cached[0]
        meta = self.pod["metadata"]
        account = str((self.pod.get("spec") or {}).get("serviceAccountName") or "default")
        request: KubeObject = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta.get("uid", ""),
                },
            },
        }
        try:
            answer = await self.client.create(
                "v1",
                "serviceaccounts",
                request,
                namespace=self.namespace,
                name=account,
                subresource="token",
            )
        except ClientError as exc:
            raise VolumeError(
                f'failed to fetch token for service account "{account}": {exc}'
            ) from None
        status = answer.get("status") or {}
        lifetime = int((answer.get("spec") or {}).get("expirationSeconds") or seconds)
        refresh_at = now + min(lifetime * TOKEN_REFRESH_FRACTION, TOKEN_MAX_AGE)
        token = str(status.get("token", ""))
        self._tokens[(audience, seconds)] = (token, refresh_at)
        return token

    def _downward(self, items: Any, default_mode: int) -> Payload:
        payload: Payload = {}
        for item in items:
            if "fieldRef" in item:
                value = field_value(self.pod, item["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in item:
                value = resource_value(self.pod, item["resourceFieldRef"])
            else:
                continue
            payload[_safe_relative(item["path"])] = (
                value.encode(),
                int(item.get("mode", default_mode)),
            )
        return payload

    async def setup(self) -> None:
        """Create every volume of the pod; raises VolumeError to be retried later."""
        base = self.root / "volumes"
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if name in self.paths:
                continue
            if "hostPath" in volume:
                self.paths[name] = await trio.to_thread.run_sync(_host_path, volume["hostPath"])
                continue
            path = base / name
            if "emptyDir" in volume:
                empty = volume["emptyDir"] or {}
                await trio.to_thread.run_sync(_make_dir, path)
                os.chmod(path, 0o777)  # kubelet makes emptyDir world-writable
                if empty.get("medium") == "Memory":
                    size = empty.get("sizeLimit")
                    options = f"mode=1777,size={Quantity(size).value()}" if size else "mode=1777"
                    if not os.path.ismount(path):  # mounted already: adopted after a restart
                        await trio.to_thread.run_sync(_mount_tmpfs, path, options)
                    self._tmpfs.append(path)
                self.paths[name] = path
                continue
            if "persistentVolumeClaim" in volume:
                self.paths[name] = await self._claim(volume["persistentVolumeClaim"], path)
                continue
            payload = await self._payload(volume)
            if payload is None:
                kinds = [k for k in volume if k != "name"]
                raise VolumeError(f"volume {name!r}: unsupported volume type {kinds}")
            await trio.to_thread.run_sync(write_payload, path, payload)
            self._written[name] = payload
            self.paths[name] = path

    async def _claim(self, source: KubeObject, target: Path) -> Path:
        """Where a PersistentVolumeClaim's volume is on this node, publishing it if needed."""
        claim_name = str(source.get("claimName", ""))
        try:
            claim = await self.client.get(
                "v1", "persistentvolumeclaims", claim_name, namespace=self.namespace
            )
        except ClientError as exc:
            if exc.not_found:
                raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found') from None
            raise
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name or (claim.get("status") or {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound')
        volume = await self.client.get("v1", "persistentvolumes", volume_name)
        spec = volume.get("spec") or {}
        if "hostPath" in spec:
            return await trio.to_thread.run_sync(_host_path, spec["hostPath"])
        if "local" in spec:
            return Path(spec["local"]["path"])
        driver_name = (spec.get("csi") or {}).get("driver", "")
        driver = self.drivers.get(driver_name)
        if driver is None:
            raise VolumeError(f"volume {volume_name}: no storage driver {driver_name!r} here")
        csi = spec.get("csi") or {}
        read_only = bool(source.get("readOnly")) or bool(csi.get("readOnly"))
        modes = spec.get("accessModes") or ["ReadWriteOnce"]
        capability = VolumeCapability(
            access_mode=ACCESS_MODES_TO_CSI.get(modes[0], "SINGLE_NODE_WRITER"),
            fs_type=str(csi.get("fsType") or ""),
            mount_flags=tuple(spec.get("mountOptions") or ()),
        )
        volume_id = str(csi.get("volumeHandle", ""))
        await driver.publish_volume(
            volume_id=volume_id,
            target_path=str(target),
            capability=capability,
            read_only=read_only,
            volume_context=dict(csi.get("volumeAttributes") or {}),
        )
        self._published.append((driver, volume_id, target))
        return target

    async def refresh(self) -> None:
        """Re-read API-backed volumes and swap in changed content."""
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if name not in self._written:
                continue
            try:
                payload = await self._payload(volume)
            except (VolumeError, ClientError):
                continue  # keep the last good content, as kubelet does
            if payload is not None and payload != self._written[name]:
                await trio.to_thread.run_sync(write_payload, self.paths[name], payload)
                self._written[name] = payload

    def mounts_for(self, container: KubeObject) -> list[VolumeMount]:
        """The bind mounts of a container's ``volumeMounts``."""
        mounts = []
        for mount in container.get("volumeMounts") or []:
            source = self.paths.get(mount["name"])
            if source is None:
                raise VolumeError(f"volume {mount['name']!r} is not ready")
            host = source
            if mount.get("subPath"):
                host = source / _safe_relative(mount["subPath"])
                if not os.path.lexists(host):
                    host.mkdir(parents=True, exist_ok=True)
            mounts.append(
                VolumeMount(
                    container_path=mount["mountPath"],
                    host_path=str(host),
                    read_only=bool(mount.get("readOnly")) or mount["name"] in self._written,
                )
            )
        return mounts

    async def teardown(self) -> None:
        """Unpublish claimed volumes, unmount memory-backed emptyDirs, remove the rest."""
        for driver, volume_id, target in self._published:
            await driver.unpublish_volume(volume_id=volume_id, target_path=str(target))
        self._published.clear()
        for path in self._tmpfs:
            await trio.to_thread.run_sync(_umount, path)
        self._tmpfs.clear()
        await trio.to_thread.run_sync(lambda: shutil.rmtree(self.root, ignore_errors=True))


def _host_path(source: KubeObject) -> Path:
    path = Path(source["path"])
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(0o644)
    elif kind == "Directory" and not path.is_dir():
        raise VolumeError(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise VolumeError(f"hostPath type check failed: {path} is not a file")
    return path


def _mount_tmpfs(path: Path, options: str) -> None:
    if _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", 0, options.encode()) != 0:
        errno = ctypes.get_errno()
        raise VolumeError(f"mounting tmpfs on {path}: {os.strerror(errno)}")


def _umount(path: Path) -> None:
    _libc.umount2(str(path).encode(), 2)  # MNT_DETACH; not mounted is fine


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
