"""Building small images offline: a busybox base plus a directory, pushed to a registry.

``kubetrio image build`` and the tests use this to make images without network access:
one layer holding the static busybox binary with a symlink per applet, a minimal
``/etc/passwd``/``/etc/group`` (root and nobody), the usual empty directories, and the
files of a context directory on top. The layer is written deterministically (sorted
entries, zero mtimes, gzip without a timestamp), so building the same input twice gives
the same digests and a registry stores it once.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from ._distribution import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    RegistryClient,
    machine_platform,
)
from ._reference import ImageReference, RegistryConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnobody:x:65534:\n"


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuiltImage:
    """What :func:`build_image` pushed."""

    reference: str
    """``registry/repository:tag`` as a pod's ``image`` field can name it."""
    digest: str
    """The manifest digest."""
    layer_digests: tuple[str, ...]


def _busybox_path() -> str:
    found = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(found):
        raise FileNotFoundError("busybox is not installed (Debian: busybox-static)")
    return os.path.realpath(found)


def _add(
    archive: tarfile.TarFile,
    name: str,
    *,
    kind: bytes = tarfile.DIRTYPE,
    mode: int = 0o755,
    data: bytes | None = None,
    link: str = "",
    uid: int = 0,
    gid: int = 0,
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = 0
    info.linkname = link
    if data is not None:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    else:
        archive.addfile(info)


def busybox_layer_entries(archive: tarfile.TarFile) -> None:
    """Write the busybox base (binary, applet links, /etc files, directories) into a tar."""
    busybox = _busybox_path()
    applets = subprocess.run(
        [busybox, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    dirs = {
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "root",
        "var",
        "var/www",
        "home",
        "run",
    }
    dirs.update(os.path.dirname(a) for a in applets if os.path.dirname(a))
    for directory in sorted(dirs):
        _add(archive, directory, mode=0o700 if directory == "root" else 0o755)
    _add(archive, "tmp", mode=0o1777)
    with open(busybox, "rb") as f:
        _add(archive, "bin/busybox", kind=tarfile.REGTYPE, mode=0o755, data=f.read())
    for applet in sorted(set(applets)):
        if applet != "bin/busybox":
            _add(archive, applet, kind=tarfile.SYMTYPE, mode=0o777, link="/bin/busybox")
    _add(archive, "etc/passwd", kind=tarfile.REGTYPE, mode=0o644, data=_PASSWD.encode())
    _add(archive, "etc/group", kind=tarfile.REGTYPE, mode=0o644, data=_GROUP.encode())


def make_layer(
    context: Path | None, *, base: bool = True, extra: Mapping[str, bytes] | None = None
) -> tuple[bytes, str]:
    """Build a gzip layer; return ``(compressed bytes, diff id)``.

    :param context: a directory whose files are added at the root (owned by root).
    :param base: include the busybox base.
    :param extra: more files, path → content (mode 0644; a name ending in ``/`` is a dir).
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        if base:
            busybox_layer_entries(archive)
        if context is not None:
            for path in sorted(Path(context).rglob("*")):
                name = path.relative_to(context).as_posix()
                info = archive.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        archive.addfile(info, f)
                else:
                    archive.addfile(info)
        for name, content in sorted((extra or {}).items()):
            if name.endswith("/"):
                _add(archive, name.rstrip("/"))
            else:
                _add(archive, name, kind=tarfile.REGTYPE, mode=0o644, data=content)
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return gzip.compress(tar_bytes, mtime=0), diff_id


async def push_image(
    reference: str,
    layers: Sequence[tuple[bytes, str]],
    *,
    cmd: Sequence[str] = ("sh",),
    entrypoint: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    working_dir: str = "",
    user: str = "",
    registries: RegistryConfig | None = None,
    client: RegistryClient | None = None,
    credentials: tuple[str, str] | None = None,
) -> BuiltImage:
    """Push layers (bottom first, from :func:`make_layer`) with an image config.

    ``credentials`` (user, password) are used when the registry asks for them.
    """
    ref = ImageReference.parse(reference)
    os_name, arch = machine_platform()
    environment = {"PATH": DEFAULT_PATH, **(env or {})}
    image_config: dict[str, object] = {
        "Env": [f"{k}={v}" for k, v in environment.items()],
        "Cmd": list(cmd),
    }
    if entrypoint:
        image_config["Entrypoint"] = list(entrypoint)
    if working_dir:
        image_config["WorkingDir"] = working_dir
    if user:
        image_config["User"] = user
    config = {
        "architecture": arch,
        "os": os_name,
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
        "history": [{"created_by": "kubetrio image build"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    own = client or RegistryClient(registries)
    try:
        endpoint = own.config.endpoints(ref.registry)[0]
        layer_digests = []
        descriptors = []
        for blob, _ in layers:
            digest = await own.push_blob(endpoint, ref.repository, blob, credentials=credentials)
            layer_digests.append(digest)
            descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": len(blob)})
        config_digest = await own.push_blob(
            endpoint, ref.repository, config_bytes, credentials=credentials
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": descriptors,
        }
        manifest_digest = await own.push_manifest(
            endpoint,
            ref.repository,
            ref.tag or "latest",
            json.dumps(manifest, sort_keys=True).encode(),
            credentials=credentials,
        )
    finally:
        if client is None:
            await own.aclose()
    return BuiltImage(
        reference=str(ref), digest=manifest_digest, layer_digests=tuple(layer_digests)
    )


async def build_image(
    reference: str,
    context: str | Path | None = None,
    *,
    cmd: Sequence[str] = ("sh",),
    entrypoint: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    working_dir: str = "",
    user: str = "",
    registries: RegistryConfig | None = None,
    client: RegistryClient | None = None,
    credentials: tuple[str, str] | None = None,
) -> BuiltImage:
    """Build a busybox-based image from a directory and push it (``kubetrio image build``).

    :param reference: where to push, e.g. ``127.0.0.1:5000/web:1`` (or a name that
        ``registries`` mirrors to a local registry, e.g. ``busybox``).
    :param context: a directory copied onto the image root; None for plain busybox.
    :param cmd: the image's ``Cmd``; ``entrypoint``, ``env``, ``working_dir``, ``user``
        fill the rest of its config (PATH is always set).
    :returns: the pushed reference and manifest digest.
    """
    source = Path(context) if context is not None else None
    layer = await trio.to_thread.run_sync(lambda: make_layer(source))
    return await push_image(
        reference,
        [layer],
        cmd=cmd,
        entrypoint=entrypoint,
        env=env,
        working_dir=working_dir,
        user=user,
        registries=registries,
        client=client,
        credentials=credentials,
    )


def parse_buildfile(text: str) -> dict[str, Any]:
    """Read a small Dockerfile subset into :func:`build_image` arguments.

    Supported: ``FROM busybox`` (or ``scratch`` for no base), ``COPY src dest`` (paths in
    the context), ``ENV k=v`` / ``ENV k v``, ``CMD``/``ENTRYPOINT`` (JSON or shell form),
    ``WORKDIR``, ``USER``, comments and ``\\`` line continuations. Anything else is an
    error rather than silently ignored.
    """
    joined = re.sub(r"\\\n", " ", text)
    result: dict[str, Any] = {"base": True, "copies": [], "env": {}}
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            if rest not in ("busybox", "busybox:latest", "scratch"):
                raise ValueError(f"FROM {rest}: only busybox or scratch bases are built")
            result["base"] = rest != "scratch"
        elif word == "COPY":
            parts = shlex.split(rest)
            if len(parts) != 2:
                raise ValueError(f"COPY needs a source and a destination: {line}")
            result["copies"].append((parts[0], parts[1]))
        elif word == "ENV":
            if "=" in rest.split(" ", 1)[0]:
                for item in shlex.split(rest):
                    key, _, value = item.partition("=")
                    result["env"][key] = value
            else:
                key, _, value = rest.partition(" ")
                result["env"][key] = value.strip()
        elif word in ("CMD", "ENTRYPOINT"):
            argv = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
            result["cmd" if word == "CMD" else "entrypoint"] = argv
        elif word == "WORKDIR":
            result["working_dir"] = rest
        elif word == "USER":
            result["user"] = rest
        else:
            raise ValueError(f"unsupported instruction {word}")
    return result


async def build_from_file(
    reference: str,
    buildfile: str | Path,
    context: str | Path | None = None,
    *,
    registries: RegistryConfig | None = None,
    client: RegistryClient | None = None,
) -> BuiltImage:
    """Build from a Dockerfile-like file (see :func:`parse_buildfile`) and push it.

    ``COPY`` sources are relative to ``context`` (default: the file's directory).
    """
    path = Path(buildfile)
    spec = parse_buildfile(path.read_text())
    root = Path(context) if context is not None else path.parent

    def layer() -> tuple[bytes, str]:
        extra: dict[str, bytes] = {}
        for source, dest in spec["copies"]:
            src = (root / source).resolve()
            if not src.is_relative_to(root.resolve()):
                raise ValueError(f"COPY {source}: outside the build context")
            target = dest.lstrip("/")
            if src.is_dir():
                for item in sorted(src.rglob("*")):
                    name = f"{target.rstrip('/')}/{item.relative_to(src).as_posix()}"
                    extra[name + ("/" if item.is_dir() else "")] = (
                        b"" if item.is_dir() else item.read_bytes()
                    )
            else:
                if dest.endswith("/"):
                    target += src.name
                extra[target] = src.read_bytes()
        return make_layer(None, base=spec["base"], extra=extra)

    built = await trio.to_thread.run_sync(layer)
    return await push_image(
        reference,
        [built],
        cmd=spec.get("cmd", ("sh",)),
        entrypoint=spec.get("entrypoint", ()),
        env=spec["env"],
        working_dir=spec.get("working_dir", ""),
        user=spec.get("user", ""),
        registries=registries,
        client=client,
    )
