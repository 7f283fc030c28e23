"""The node's image store: content-addressed blobs, unpacked layers, and pulled images.

Layout under ``root``::

    blobs/sha256/<hex>      every manifest, config and compressed layer, by digest
    layers/<diff-id hex16>/ one unpacked layer (overlay lower dir), unpacked once
    images.json             reference → manifest digest, config digest, layer diff ids

Blobs are written to a temporary file, their digest checked, then renamed into place;
layers are unpacked into a temporary directory and renamed, so an interrupted pull
leaves nothing half-done that a later pull would trust. Short layer directory names keep
overlayfs' ``lowerdir=`` option under the one-page mount option limit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from ._distribution import (
    INDEX_TYPES,
    Credentials,
    RegistryClient,
    RegistryError,
)
from ._reference import ImageReference
from ._unpack import unpack_layer


@dataclasses.dataclass(frozen=True, kw_only=True)
class Image:
    """A pulled image: its config and the unpacked layer directories (bottom first)."""

    reference: str
    """The fully qualified reference it was pulled as (``docker.io/library/busybox:latest``)."""
    digest: str
    """The manifest digest (the ``imageID`` of container statuses is the config digest)."""
    config_digest: str
    config: Mapping[str, Any]
    """The OCI image config (``config.Cmd``, ``config.Env``, …)."""
    layers: tuple[Path, ...]
    size: int

    @property
    def image_id(self) -> str:
        """What Kubernetes reports as ``imageID``: the config digest."""
        return self.config_digest

    @property
    def repo_digest(self) -> str:
        """``registry/repository@digest``, as in ``status.containerStatuses[].imageID``."""
        ref = ImageReference.parse(self.reference)
        return f"{ref.registry}/{ref.repository}@{self.digest}"


class ImageStore:
    """Pulls images into a content-addressed store and hands out their layer directories."""

    def __init__(self, root: str | Path, registry: RegistryClient) -> None:
        self.root = Path(root)
        self.registry = registry
        self.blobs = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "images.json"
        self._index: dict[str, dict[str, Any]] = {}
        if self._index_path.exists():
            self._index = json.loads(self._index_path.read_text())
        self._locks: dict[str, trio.Lock] = {}

    def _lock(self, key: str) -> trio.Lock:
        return self._locks.setdefault(key, trio.Lock())

    # --- queries ------------------------------------------------------------------------

    def get(self, image: str) -> Image | None:
        """The stored image for a reference, or None if it was never pulled."""
        key = str(ImageReference.parse(image))
        entry = self._index.get(key)
        if entry is None:
            return None
        config = json.loads(self.blob_path(entry["config"]).read_bytes())
        layers = tuple(self._layer_path(d) for d in entry["diffIds"])
        if not all(p.is_dir() for p in layers):
            return None
        return Image(
            reference=key,
            digest=entry["digest"],
            config_digest=entry["config"],
            config=config,
            layers=layers,
            size=entry.get("size", 0),
        )

    def list(self) -> list[Image]:
        """Every stored image."""
        return [i for i in (self.get(key) for key in list(self._index)) if i is not None]

    def blob_path(self, digest: str) -> Path:
        """Where a blob is (or would be) stored."""
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64:
            raise ValueError(f"unsupported digest {digest!r}")
        return self.blobs / hex_digest

    def _layer_path(self, diff_id: str) -> Path:
        return self.layers_dir / diff_id.partition(":")[2][:16]

    # --- pull ---------------------------------------------------------------------------

    async def pull(
        self, image: str, *, credentials: Mapping[str, Credentials] | None = None
    ) -> Image:
        """Pull an image (manifest, config, layers), unpacking layers not yet present."""
        ref = ImageReference.parse(image)
        creds = (credentials or {}).get(ref.registry)
        async with self._lock(str(ref)):
            endpoint, digest, manifest, media_type = await self.registry.resolve(
                ref, credentials=creds
            )
            if media_type in INDEX_TYPES:
                raise RegistryError(f"{ref}: nested image index")
            config_digest = manifest["config"]["digest"]
            await self._fetch_blob(endpoint, ref.repository, config_digest, creds)
            config = json.loads(self.blob_path(config_digest).read_bytes())
            diff_ids: list[str] = list((config.get("rootfs") or {}).get("diff_ids") or [])
            layers = manifest.get("layers") or []
            if len(diff_ids) != len(layers):
                raise RegistryError(
                    f"{ref}: config has {len(diff_ids)} diff ids, {len(layers)} layers"
                )
            done: list[Path] = []
            size = 0
            for layer, diff_id in zip(layers, diff_ids, strict=True):
                media = str(layer.get("mediaType", ""))
                if "zstd" in media:
                    raise RegistryError(f"{ref}: zstd layers are not supported")
                size += int(layer.get("size", 0))
                target = self._layer_path(diff_id)
                async with self._lock("layer:" + diff_id):
                    if not target.is_dir():
                        await self._fetch_blob(endpoint, ref.repository, layer["digest"], creds)
                        await trio.to_thread.run_sync(
                            self._unpack, layer["digest"], target, tuple(reversed(done))
                        )
                done.append(target)
            self._index[str(ref)] = {
                "digest": digest,
                "config": config_digest,
                "diffIds": diff_ids,
                "size": size,
            }
            await trio.to_thread.run_sync(self._save_index)
        stored = self.get(str(ref))
        assert stored is not None
        return stored

    async def _fetch_blob(
        self, endpoint: str, repository: str, digest: str, creds: Credentials | None
    ) -> None:
        path = self.blob_path(digest)
        if path.exists():
            return
        async with self._lock("blob:" + digest):
            if path.exists():
                return
            hasher = hashlib.sha256()
            fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
            try:
                async with await trio.open_file(fd, "wb") as out:
                    async for chunk in self.registry.blob_chunks(
                        endpoint, repository, digest, credentials=creds
                    ):
                        hasher.update(chunk)
                        await out.write(chunk)
                got = "sha256:" + hasher.hexdigest()
                if got != digest:
                    raise RegistryError(f"blob {digest} arrived with digest {got}")
                os.rename(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _unpack(self, blob_digest: str, target: Path, lower: tuple[Path, ...]) -> None:
        tmp = Path(tempfile.mkdtemp(dir=self.layers_dir, prefix=".tmp-"))
        try:
            with open(self.blob_path(blob_digest), "rb") as source:
                unpack_layer(source, tmp, lower_layers=lower)
            os.chmod(tmp, 0o755)
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _save_index(self) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._index, indent=1, sort_keys=True))
        os.replace(tmp, self._index_path)

    # --- removal ------------------------------------------------------------------------

    async def remove(self, image: str) -> None:
        """Forget an image; its blobs and layers go at the next :meth:`collect_garbage`."""
        self._index.pop(str(ImageReference.parse(image)), None)
        await trio.to_thread.run_sync(self._save_index)

    async def collect_garbage(self, *, in_use: frozenset[Path] = frozenset()) -> int:
        """Delete blobs and layers no stored image refers to (nor ``in_use``); return count."""
        keep_blobs: set[str] = set()
        keep_layers = set(in_use)
        for entry in self._index.values():
            keep_blobs.add(entry["config"].partition(":")[2])
            for diff_id in entry["diffIds"]:
                keep_layers.add(self._layer_path(diff_id))
        removed = 0
        for path in list(self.layers_dir.iterdir()):
            if path not in keep_layers and not path.name.startswith(".tmp-"):
                await trio.to_thread.run_sync(shutil.rmtree, path)
                removed += 1
        for path in list(self.blobs.iterdir()):
            if path.name not in keep_blobs and not path.name.startswith(".tmp-"):
                path.unlink()
                removed += 1
        return removed
