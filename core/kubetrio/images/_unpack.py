"""Unpacking image layers into overlayfs lower directories, safely.

Each layer becomes its own directory, so a layer shared by many images is unpacked once
and a container's root is an overlay of the layer directories. OCI whiteouts are
translated into overlayfs' own form as they are met:

* ``dir/.wh.name`` (``name`` was deleted) → a 0:0 character device ``dir/name``;
* ``dir/.wh..wh..opq`` (``dir`` replaces whatever lower layers had) → the
  ``trusted.overlay.opaque=y`` extended attribute on ``dir``.

A layer is untrusted input. Entries whose path leaves the layer root (absolute paths,
``..``, or a parent that is a symlink written earlier), hard links pointing outside it,
and device nodes are refused: paths raise :class:`UnsafeLayer`, device nodes are skipped
(a container gets its devices from the runtime, never from an image).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


class UnsafeLayer(ValueError):
    """A layer entry would write outside the layer directory."""


def _clean_name(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeLayer(f"layer entry {name!r} leaves the root")
    return "/".join(parts)


def _check_parents(root: Path, relative: str) -> Path:
    """The target path, after checking that no parent inside the layer is a symlink."""
    current = root
    parts = relative.split("/")
    for part in parts[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            raise UnsafeLayer(f"layer entry {relative!r} goes through the symlink {part!r}")
        if not stat.S_ISDIR(mode):
            raise UnsafeLayer(f"layer entry {relative!r} has a non-directory parent")
    return root / relative


def _remove(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def unpack_layer(fileobj: IO[bytes], target: Path, *, lower_layers: Sequence[Path] = ()) -> None:
    """Unpack one (optionally gzip-compressed) layer tar into ``target`` in overlay form.

    ``lower_layers`` (top first) are searched for the source of a hard link that points
    at a file of an earlier layer, which is then copied (overlay layers cannot share inodes).
    """
    target.mkdir(parents=True, exist_ok=True)
    directories: list[tuple[Path, tarfile.TarInfo]] = []
    seen = False
    with tarfile.open(fileobj=fileobj, mode="r|*") as archive:
        members = iter(archive)
        while True:
            try:
                member = next(members)
            except StopIteration:
                break
            except tarfile.ReadError:
                # Some writers (umoci) end a layer without the end-of-archive blocks or
                # the last padding; the blob's digest was checked, so this is its end.
                if directories or seen:
                    break
                raise
            seen = True
            relative = _clean_name(member.name)
            if not relative:
                continue  # the root directory entry itself
            path = _check_parents(target, relative)
            base = path.name
            if base == OPAQUE_MARKER:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.setxattr(path.parent, "trusted.overlay.opaque", b"y")
                continue
            if base.startswith(WHITEOUT_PREFIX):
                hidden = path.parent / base[len(WHITEOUT_PREFIX) :]
                path.parent.mkdir(parents=True, exist_ok=True)
                _remove(hidden)
                os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if member.isdir():
                if path.is_symlink() or (path.exists() and not path.is_dir()):
                    _remove(path)
                path.mkdir(exist_ok=True)
                directories.append((path, member))
                continue
            _remove(path)
            if member.isreg():
                source = archive.extractfile(member)
                assert source is not None
                with open(path, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                link = _clean_name(member.linkname)
                source_path = _check_parents(target, link)
                if not os.path.lexists(source_path):
                    for lower in lower_layers:
                        candidate = lower / link
                        if os.path.lexists(candidate):
                            shutil.copy2(candidate, path, follow_symlinks=False)
                            break
                    else:
                        raise UnsafeLayer(f"hard link {relative!r} to missing {link!r}")
                else:
                    os.link(source_path, path, follow_symlinks=False)
                continue  # a hard link shares its source's owner and mode
            elif member.isfifo():
                os.mkfifo(path)
            else:
                # Character/block devices: the runtime gives containers their /dev.
                log.warning("layer entry %s: device nodes are not unpacked", relative)
                continue
            os.lchown(path, member.uid, member.gid)
            if not member.issym():
                os.chmod(path, member.mode & 0o7777)
                os.utime(path, (member.mtime, member.mtime))
            for key, value in (member.pax_headers or {}).items():
                if key.startswith("SCHILY.xattr.") and not member.issym():
                    # An xattr this filesystem refuses is not fatal.
                    with contextlib.suppress(OSError):
                        os.setxattr(path, key[len("SCHILY.xattr.") :], value.encode("latin-1"))
    # Directory modes and times last, so writing into them above was never refused.
    for path, member in reversed(directories):
        os.lchown(path, member.uid, member.gid)
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))
