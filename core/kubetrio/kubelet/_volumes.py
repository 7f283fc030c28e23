"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected,
nfs (a userspace client over FUSE, :mod:`kubetrio.kubelet._nfs`) and persistentVolumeClaim
(staged and published by the storage driver named in the PV's ``spec.csi``, through
:class:`~kubetrio.kubelet._csi.NodeVolumes`; PVs with ``spec.nfs`` are mounted as nfs).

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

``securityContext.fsGroup`` is applied as kubelet's ``SetVolumeOwnership`` does to
emptyDir, claim and API-backed volumes: every file's group becomes the fsGroup, files get
``g+rw`` (``g+r`` on read-only volumes), directories also ``g+x`` and the setgid bit;
``fsGroupChangePolicy: OnRootMismatch`` skips the walk when the root already looks right.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import re
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from kubetrio.api.quantity import Quantity
from kubetrio.client import Client, ClientError
from kubetrio.providers import KubeObject, StorageDriver, VolumeMount
from kubetrio.runtime._spec import expand

from ._csi import NodeVolumes, PublishError, directory_usage, remove_unmounted
from ._env import field_value, resource_value
from ._nfs import NfsMountError, unmount_pod
from ._nfs import mount as mount_nfs

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
        node: NodeVolumes | None = None,
    ) -> None:
        self.client = client
        self.pod = pod
        self.root = root
        self.node = node or NodeVolumes(
            drivers or {}, root_dir=root.parent.parent, pods_dir=root.parent
        )
        """The node's CSI bookkeeping (staging, publishing), shared by the pods of a node."""
        self.paths: dict[str, Path] = {}
        self._written: dict[str, Payload] = {}
        self._tmpfs: list[Path] = []
        self._tokens: dict[tuple[str, int], tuple[str, float]] = {}
        """Projected tokens by (audience, expirationSeconds): the token and when to
        refresh it."""
        self._read_only: set[str] = set()
        """Volumes whose source is read-only (a claim's or PV's ``readOnly``)."""
        self.claims: dict[str, tuple[str, str, Path]] = {}
        """Volume name → (claim name, PV name, target path) of published claims."""
        self.empty_dirs: dict[str, int | None] = {}
        """emptyDir volume name → its ``sizeLimit`` in bytes (None: no limit)."""

    @property
    def uid(self) -> str:
        """The pod's uid."""
        return str(self.pod["metadata"].get("uid", ""))

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

    def _fs_group(self) -> tuple[int | None, str]:
        context = (self.pod.get("spec") or {}).get("securityContext") or {}
        group = context.get("fsGroup")
        return (int(group) if group is not None else None), str(
            context.get("fsGroupChangePolicy") or "Always"
        )

    async def _set_ownership(self, path: Path, *, read_only: bool) -> None:
        group, policy = self._fs_group()
        if group is not None:
            await trio.to_thread.run_sync(set_volume_ownership, path, group, policy, read_only)

    async def setup(self) -> None:
        """Create every volume of the pod; raises VolumeError to be retried later.

        The message names the volume as kubelet's ``FailedMount`` events do
        (``MountVolume.SetUp failed for volume "config" : configmap "x" not found``).
        """
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if name in self.paths:
                continue
            try:
                await self._setup_one(volume)
            except PublishError as exc:
                raise VolumeError(str(exc)) from exc
            except VolumeError as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {exc}') from exc

    async def _setup_one(self, volume: KubeObject) -> None:
        name = volume["name"]
        if "hostPath" in volume:
            self.paths[name] = await trio.to_thread.run_sync(_host_path, volume["hostPath"])
            return
        path = self.root / "volumes" / name
        if "emptyDir" in volume:
            empty = volume["emptyDir"] or {}
            size = empty.get("sizeLimit")
            limit = Quantity(size).value() if size else None
            await trio.to_thread.run_sync(_make_dir, path)
            os.chmod(path, 0o777)  # kubelet makes emptyDir world-writable
            if empty.get("medium") == "Memory":
                # tmpfs sized by sizeLimit: writes past it fail with ENOSPC.
                options = f"mode=1777,size={limit}" if limit else "mode=1777"
                if not os.path.ismount(path):  # mounted already: adopted after a restart
                    await trio.to_thread.run_sync(_mount_tmpfs, path, options)
                self._tmpfs.append(path)
            else:
                self.empty_dirs[name] = limit
            await self._set_ownership(path, read_only=False)
            self.paths[name] = path
            return
        if "nfs" in volume:
            source = volume["nfs"] or {}
            read_only = bool(source.get("readOnly"))
            try:
                self.paths[name] = await mount_nfs(self.root, name, source, read_only=read_only)
            except NfsMountError as exc:
                raise VolumeError(str(exc)) from exc
            if read_only:
                self._read_only.add(name)
            return
        if "persistentVolumeClaim" in volume:
            self.paths[name] = await self._claim(name, volume["persistentVolumeClaim"])
            return
        if "ephemeral" in volume:
            # A generic ephemeral volume is the claim named <pod>-<volume>.
            claim = f"{self.pod['metadata']['name']}-{name}"
            self.paths[name] = await self._claim(name, {"claimName": claim})
            return
        payload = await self._payload(volume)
        if payload is None:
            kinds = [k for k in volume if k != "name"]
            raise VolumeError(f"unsupported volume type {kinds}")
        await trio.to_thread.run_sync(write_payload, path, payload)
        await self._set_ownership(path, read_only=True)
        self._written[name] = payload
        self.paths[name] = path

    async def _claim(self, name: str, source: KubeObject) -> Path:
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
        if "nfs" in spec:
            # Of the PV's mountOptions only "ro" means something to the FUSE client.
            read_only = (
                bool(source.get("readOnly"))
                or bool(spec["nfs"].get("readOnly"))
                or "ro" in (spec.get("mountOptions") or [])
            )
            if read_only:
                self._read_only.add(name)
            try:
                return await mount_nfs(self.root, volume_name, spec["nfs"], read_only=read_only)
            except NfsMountError as exc:
                raise PublishError(
                    f'MountVolume.SetUp failed for volume "{volume_name}" : {exc}'
                ) from exc
        if "csi" not in spec:
            kinds = sorted(k for k in spec if isinstance(spec[k], dict) and k != "claimRef")
            raise VolumeError(f"volume {volume_name}: unsupported PersistentVolume source {kinds}")
        read_only = bool(source.get("readOnly")) or bool(spec["csi"].get("readOnly"))
        if read_only:
            self._read_only.add(name)
        target = await self.node.publish(self.uid, volume, read_only=read_only)
        if not read_only:
            await self._set_ownership(target, read_only=False)
        self.claims[name] = (claim_name, str(volume_name), target)
        await self._expand_if_pending(claim, volume, target)
        return target

    async def _expand_if_pending(self, claim: KubeObject, pv: KubeObject, target: Path) -> None:
        """Finish a claim's expansion on the node, as kubelet does when it mounts (or, for
        a mounted volume, online): ``FileSystemResizePending`` → NodeExpandVolume, then the
        claim's ``status.capacity`` is the new size and the condition is gone."""
        status = claim.get("status") or {}
        conditions = status.get("conditions") or []
        if not any(c.get("type") == "FileSystemResizePending" for c in conditions):
            return
        wanted = ((pv.get("spec") or {}).get("capacity") or {}).get("storage")
        if not wanted:
            return
        size = await self.node.expand(pv, target, Quantity(wanted).value())
        if size is None:
            return
        capacity = wanted if size <= Quantity(wanted).value() else str(size)
        patch = {
            "status": {
                "capacity": {**(status.get("capacity") or {}), "storage": capacity},
                "conditions": [c for c in conditions if c.get("type") != "FileSystemResizePending"],
            }
        }
        await self.client.patch(
            "v1",
            "persistentvolumeclaims",
            claim["metadata"]["name"],
            patch,
            namespace=self.namespace,
            subresource="status",
        )

    async def refresh(self) -> None:
        """Re-read API-backed volumes and swap in changed content; finish pending node
        expansions of published claims."""
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
                await self._set_ownership(self.paths[name], read_only=True)
                self._written[name] = payload
        for claim_name, pv_name, target in list(self.claims.values()):
            try:
                claim = await self.client.get(
                    "v1", "persistentvolumeclaims", claim_name, namespace=self.namespace
                )
            except ClientError:
                continue  # deleted under the pod: its protection is the PV controller's
            if any(
                c.get("type") == "FileSystemResizePending"
                for c in (claim.get("status") or {}).get("conditions") or []
            ):
                pv = await self.client.get("v1", "persistentvolumes", pv_name)
                await self._expand_if_pending(claim, pv, target)

    def mounts_for(
        self, container: KubeObject, env: Sequence[tuple[str, str]] = ()
    ) -> list[VolumeMount]:
        """The bind mounts of a container's ``volumeMounts``; ``env`` is the container's
        environment, which ``subPathExpr`` expands (``$(POD_NAME)``)."""
        mounts = []
        variables = dict(env)
        for mount in container.get("volumeMounts") or []:
            source = self.paths.get(mount["name"])
            if source is None:
                raise VolumeError(f"volume {mount['name']!r} is not ready")
            host = source
            sub_path = mount.get("subPath") or ""
            if mount.get("subPathExpr"):
                sub_path = expand(str(mount["subPathExpr"]), variables)
                if re.search(r"\$\([A-Za-z_][A-Za-z0-9_.-]*\)", sub_path):
                    raise VolumeError(
                        f"failed to prepare subPath for volumeMount {mount['name']!r} of "
                        f"container {container.get('name')!r}: {sub_path} uses an undefined "
                        "variable"
                    )
            if sub_path:
                host = source / _safe_relative(sub_path)
                if not os.path.lexists(host):
                    host.mkdir(parents=True, exist_ok=True)
            mounts.append(
                VolumeMount(
                    container_path=mount["mountPath"],
                    host_path=str(host),
                    read_only=bool(mount.get("readOnly"))
                    or mount["name"] in self._written
                    or mount["name"] in self._read_only,
                )
            )
        return mounts

    def empty_dir_usage(self) -> list[tuple[str, int, int | None]]:
        """(name, bytes used, sizeLimit in bytes or None) of the pod's disk emptyDirs."""
        found = []
        for name, limit in self.empty_dirs.items():
            path = self.paths.get(name)
            if path is not None:
                found.append((name, directory_usage(path)[0], limit))
        return found

    async def teardown(self) -> None:
        """Unpublish claimed volumes (unstaging the last), unmount memory-backed emptyDirs,
        remove the rest."""
        await self.node.release_pod(self.uid)
        self.claims.clear()
        await trio.to_thread.run_sync(unmount_pod, self.root)
        for path in self._tmpfs:
            await trio.to_thread.run_sync(_umount, path)
        self._tmpfs.clear()
        await trio.to_thread.run_sync(remove_unmounted, self.root)


_RW_MASK = 0o660
_RO_MASK = 0o440
_EXEC_MASK = 0o110


def _needs_ownership_change(root: Path, group: int, read_only: bool) -> bool:
    """kubelet's ``requiresPermissionChange``: the root's group, permissions or setgid."""
    try:
        info = os.stat(root)
    except OSError:
        return True
    if info.st_gid != group or not stat.S_ISDIR(info.st_mode):
        return True
    wanted = (_RO_MASK if read_only else _RW_MASK) | _EXEC_MASK
    return (info.st_mode & wanted) != wanted or not info.st_mode & stat.S_ISGID


def set_volume_ownership(root: Path, group: int, policy: str, read_only: bool) -> None:
    """Give a volume to ``fsGroup`` as kubelet's ``SetVolumeOwnership``: every entry's group
    (symlinks themselves, not their targets), ``g+rw`` (``g+r`` read-only) on files,
    plus ``g+x`` and setgid on directories; ``OnRootMismatch`` skips a root that fits."""
    if policy == "OnRootMismatch" and not _needs_ownership_change(root, group, read_only):
        return
    mask = _RO_MASK if read_only else _RW_MASK

    def change(path: str) -> None:
        info = os.lstat(path)
        os.lchown(path, -1, group)
        if stat.S_ISLNK(info.st_mode):
            return
        mode = stat.S_IMODE(info.st_mode) | mask
        if stat.S_ISDIR(info.st_mode):
            mode |= stat.S_ISGID | _EXEC_MASK
        os.chmod(path, mode)

    change(str(root))
    for directory, dirs, files in os.walk(root):
        for entry in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                change(os.path.join(directory, entry))


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


def unmount_memory_volumes(pod_dir: Path) -> None:
    """Unmount the tmpfs emptyDirs left in a pod's directory (a pod gone while the agent
    was down)."""
    volumes = pod_dir / "volumes"
    if not volumes.is_dir():
        return
    prefix = os.path.realpath(volumes) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            mount_point = fields[4].encode().decode("unicode_escape")
            fs_type = fields[fields.index("-") + 1]
            if mount_point.startswith(prefix) and fs_type == "tmpfs":
                _umount(Path(mount_point))
