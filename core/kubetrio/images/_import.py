"""``kubetrio image import``: push an OCI image layout or a ``docker save`` archive.

Both forms are read without unpacking layers:

* **OCI layout** (a directory, or a tar of one): ``index.json`` names manifests, whose
  blobs (config, layers) sit under ``blobs/sha256/``; they are pushed as they are.
* **docker-archive** (``docker save`` / ``skopeo copy … docker-archive:``): a tar with
  ``manifest.json`` listing each image's config file, ``RepoTags`` and uncompressed layer
  tars; layers are pushed uncompressed (``…layer.v1.tar``) so their digest is the diff id.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._distribution import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, RegistryClient
from ._reference import ImageReference, RegistryConfig

OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


class ImageImportError(ValueError):
    """The archive is neither an OCI layout nor a docker-archive, or is inconsistent."""


def _reader(source: Path) -> tuple[Callable[[str], bytes], Callable[[], None]]:
    """A function reading a member by path, from a directory or a tar; and a closer."""
    if source.is_dir():
        return (lambda name: (source / name).read_bytes()), (lambda: None)
    archive = tarfile.open(source)  # noqa: SIM115  # closed by the returned closer

    def read(name: str) -> bytes:
        try:
            member = archive.extractfile(name.lstrip("./"))
        except KeyError:
            member = None
        if member is None:
            raise ImageImportError(f"{source}: no member {name}")
        return member.read()

    return read, archive.close


async def import_image(
    source: str | Path,
    reference: str = "",
    *,
    registries: RegistryConfig | None = None,
    client: RegistryClient | None = None,
) -> list[str]:
    """Push the images of an OCI layout or docker-archive; return the references pushed.

    :param source: a directory (OCI layout) or a tar file (OCI layout or docker-archive).
    :param reference: where to push (``127.0.0.1:5000/app:1``); default: the tag recorded
        in the archive (``org.opencontainers.image.ref.name`` or ``RepoTags``).
    """
    read, close = _reader(Path(source))
    own = client or RegistryClient(registries)
    try:
        try:
            index = json.loads(read("index.json"))
        except (ImageImportError, FileNotFoundError, KeyError):
            index = None
        if index is not None:
            return await _push_oci(read, index, reference, own)
        try:
            manifest = json.loads(read("manifest.json"))
        except (ImageImportError, FileNotFoundError) as exc:
            raise ImageImportError(f"{source}: neither an OCI layout nor a docker-archive") from exc
        return await _push_docker_archive(read, manifest, reference, own)
    finally:
        close()
        if client is None:
            await own.aclose()


def _blob(read: Callable[[str], bytes], digest: str) -> bytes:
    return read(f"blobs/{digest.replace(':', '/')}")


async def _push_oci(
    read: Callable[[str], bytes], index: dict[str, Any], reference: str, client: RegistryClient
) -> list[str]:
    pushed: list[str] = []
    for entry in index.get("manifests") or []:
        name = reference or (entry.get("annotations") or {}).get(
            "org.opencontainers.image.ref.name", ""
        )
        if not name:
            raise ImageImportError("the layout's manifest has no ref name: give a reference")
        if ":" not in name.rsplit("/", 1)[-1] and "/" not in name and not reference:
            raise ImageImportError(f"ref name {name!r} is only a tag: give a reference")
        ref = ImageReference.parse(name)
        endpoint = client.config.endpoints(ref.registry)[0]
        manifest_bytes = _blob(read, entry["digest"])
        manifest = json.loads(manifest_bytes)
        if entry.get("mediaType") == OCI_INDEX or "manifests" in manifest:
            raise ImageImportError("nested image indexes are not supported by import")
        for descriptor in [manifest["config"], *manifest.get("layers", [])]:
            await client.push_blob(endpoint, ref.repository, _blob(read, descriptor["digest"]))
        await client.push_manifest(
            endpoint,
            ref.repository,
            ref.tag or "latest",
            manifest_bytes,
            media_type=manifest.get("mediaType") or entry.get("mediaType") or OCI_MANIFEST,
        )
        pushed.append(str(ref))
        if reference:
            break
    return pushed


async def _push_docker_archive(
    read: Callable[[str], bytes],
    manifest: list[dict[str, Any]],
    reference: str,
    client: RegistryClient,
) -> list[str]:
    pushed: list[str] = []
    for image in manifest:
        tags = list(image.get("RepoTags") or [])
        name = reference or (tags[0] if tags else "")
        if not name:
            raise ImageImportError("the archive's image has no RepoTags: give a reference")
        ref = ImageReference.parse(name)
        endpoint = client.config.endpoints(ref.registry)[0]
        config = read(image["Config"])
        descriptors = []
        for layer_path in image.get("Layers") or []:
            data = read(layer_path)
            digest = await client.push_blob(endpoint, ref.repository, data)
            descriptors.append({"mediaType": OCI_LAYER_TAR, "digest": digest, "size": len(data)})
        config_digest = await client.push_blob(endpoint, ref.repository, config)
        oci_manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": descriptors,
        }
        await client.push_manifest(
            endpoint,
            ref.repository,
            ref.tag or "latest",
            json.dumps(oci_manifest, sort_keys=True).encode(),
        )
        pushed.append(str(ref))
        if reference:
            break
    return pushed
