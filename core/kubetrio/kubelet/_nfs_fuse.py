"""A userspace NFS client mounted through FUSE: libnfs (Debian's ``libnfs13``, through
ctypes) speaks NFSv4 to the server, mfusepy (ctypes bindings of libfuse3) serves the mount.

The kubelet runs this file as a program for every ``nfs:`` volume it mounts (see
:mod:`kubetrio.kubelet._nfs`), because the node's kernel has no NFS client::

    python _nfs_fuse.py SERVER EXPORT MOUNTPOINT [--read-only]

It first mounts the export with libnfs; when that fails it prints ``mount.nfs: <why>`` on
stderr and exits with status 32 (``mount``'s "mount failure"), before anything is mounted.
Then it serves the FUSE mount in the foreground until it is unmounted (``fusermount3 -u``)
or sent SIGTERM. It imports only the standard library and mfusepy, and is run by path, so
it starts without loading the kubelet.

One request at a time (``-s``): a libnfs context is not thread-safe. Every request is sent
with the caller's uid and gid (AUTH_SYS), so the server sees who writes; the kernel checks
permissions against the attributes (``default_permissions``), and ``allow_other`` lets the
pod's processes (not the kubelet's) use the mount.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from typing import Any

NFS_V4 = 4
NFS_PORT = 2049
MOUNT_FAILURE = 32
"""``mount``'s exit status for a failed mount."""
TIMEOUT_MS = 30_000
"""How long one NFS call may take before it fails with EIO instead of hanging the pod."""
UNCHANGED = 0xFFFFFFFF
"""``(uid_t)-1``: chown leaves that id as it is."""
WRITE_CHUNK = 2048
"""The most one NFSv4 WRITE carries: libnfs 4.0 (Debian 12) encodes a COMPOUND into a 4 KiB
buffer, so a bigger write fails ("Failed to encode COMPOUND4args") and leaves garbage in
the file's attributes (fixed upstream after 4.0 by sizing the buffer for the data)."""
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class NfsStat64(ctypes.Structure):
    """libnfs's ``struct nfs_stat_64``."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "dev",
            "ino",
            "mode",
            "nlink",
            "uid",
            "gid",
            "rdev",
            "size",
            "blksize",
            "blocks",
            "atime",
            "mtime",
            "ctime",
            "atime_nsec",
            "mtime_nsec",
            "ctime_nsec",
            "used",
        )
    ]


class NfsStatvfs64(ctypes.Structure):
    """libnfs's ``struct nfs_statvfs_64``."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "bsize",
            "frsize",
            "blocks",
            "bfree",
            "bavail",
            "files",
            "ffree",
            "favail",
            "fsid",
            "flag",
            "namemax",
        )
    ]


class NfsDirent(ctypes.Structure):
    """The head of libnfs's ``struct nfsdirent`` (only the fields read here)."""


NfsDirent._fields_ = [("next", ctypes.POINTER(NfsDirent)), ("name", ctypes.c_char_p)]


class Timeval(ctypes.Structure):
    """``struct timeval``."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


def load_libnfs() -> ctypes.CDLL:
    """libnfs with the prototypes of the calls used here."""
    name = ctypes.util.find_library("nfs") or "libnfs.so.13"
    lib = ctypes.CDLL(name)
    ptr, s, i, u64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64
    pptr = ctypes.POINTER(ctypes.c_void_p)
    prototypes: dict[str, tuple[Any, list[Any]]] = {
        "nfs_init_context": (ptr, []),
        "nfs_destroy_context": (None, [ptr]),
        "nfs_get_error": (s, [ptr]),
        "nfs_set_version": (i, [ptr, i]),
        "nfs4_set_client_name": (None, [ptr, s]),
        "nfs_set_timeout": (None, [ptr, i]),
        "nfs_set_uid": (None, [ptr, i]),
        "nfs_set_gid": (None, [ptr, i]),
        "nfs_mount": (i, [ptr, s, s]),
        "nfs_umount": (i, [ptr]),
        "nfs_lstat64": (i, [ptr, s, ctypes.POINTER(NfsStat64)]),
        "nfs_fstat64": (i, [ptr, ptr, ctypes.POINTER(NfsStat64)]),
        "nfs_open": (i, [ptr, s, i, pptr]),
        "nfs_create": (i, [ptr, s, i, i, pptr]),
        "nfs_close": (i, [ptr, ptr]),
        "nfs_pread": (i, [ptr, ptr, u64, u64, ctypes.c_void_p]),
        "nfs_pwrite": (i, [ptr, ptr, u64, u64, ctypes.c_char_p]),
        "nfs_fsync": (i, [ptr, ptr]),
        "nfs_truncate": (i, [ptr, s, u64]),
        "nfs_ftruncate": (i, [ptr, ptr, u64]),
        "nfs_mkdir2": (i, [ptr, s, i]),
        "nfs_rmdir": (i, [ptr, s]),
        "nfs_unlink": (i, [ptr, s]),
        "nfs_rename": (i, [ptr, s, s]),
        "nfs_link": (i, [ptr, s, s]),
        "nfs_symlink": (i, [ptr, s, s]),
        "nfs_readlink": (i, [ptr, s, ctypes.c_char_p, i]),
        "nfs_chmod": (i, [ptr, s, i]),
        "nfs_chown": (i, [ptr, s, i, i]),
        "nfs_utimes": (i, [ptr, s, ctypes.POINTER(Timeval)]),
        "nfs_statvfs64": (i, [ptr, s, ctypes.POINTER(NfsStatvfs64)]),
        "nfs_opendir": (i, [ptr, s, pptr]),
        "nfs_readdir": (ctypes.POINTER(NfsDirent), [ptr, ptr]),
        "nfs_closedir": (None, [ptr, ptr]),
    }
    for function, (restype, argtypes) in prototypes.items():
        call = getattr(lib, function)
        call.restype = restype
        call.argtypes = argtypes
    return lib


def tcp_reachable(server: str, port: int = NFS_PORT, timeout: float = 10.0) -> str | None:
    """None when ``server:port`` accepts a TCP connection, else why not (libnfs alone only
    says "nfs_service failed" when nothing listens)."""
    try:
        with socket.create_connection((server, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"connecting to {server}:{port}: {exc.strerror or exc}"


class NfsClient:
    """One mounted NFSv4 export; every method raises OSError(errno) as the kernel would."""

    def __init__(self, lib: ctypes.CDLL, server: str, export: str, *, name: str) -> None:
        self.lib = lib
        self.ctx = lib.nfs_init_context()
        if not self.ctx:
            raise OSError(errno.ENOMEM, "nfs_init_context failed")
        lib.nfs_set_version(self.ctx, NFS_V4)
        # The NFSv4 client id: a second context with the same name would reset this
        # one's open state on the server.
        lib.nfs4_set_client_name(self.ctx, name.encode())
        lib.nfs_set_timeout(self.ctx, TIMEOUT_MS)
        if lib.nfs_mount(self.ctx, server.encode(), export.encode()) != 0:
            why = self.error()
            lib.nfs_destroy_context(self.ctx)
            raise OSError(errno.EIO, why)

    def error(self) -> str:
        """libnfs's last error message."""
        message = self.lib.nfs_get_error(self.ctx)
        return message.decode(errors="replace") if message else "unknown error"

    def check(self, result: int) -> int:
        """libnfs's sync calls return -errno on failure."""
        if result < 0:
            raise OSError(-result, os.strerror(-result))
        return result

    def as_caller(self, uid: int, gid: int) -> None:
        """Send the next calls with these AUTH_SYS credentials."""
        self.lib.nfs_set_uid(self.ctx, uid)
        self.lib.nfs_set_gid(self.ctx, gid)

    def close(self) -> None:
        """Unmount and free the context."""
        self.lib.nfs_umount(self.ctx)
        self.lib.nfs_destroy_context(self.ctx)


def _attrs(st: NfsStat64) -> dict[str, int]:
    return {
        "st_mode": st.mode,
        "st_ino": st.ino,
        "st_nlink": st.nlink,
        "st_uid": st.uid,
        "st_gid": st.gid,
        "st_rdev": st.rdev,
        "st_size": st.size,
        "st_blksize": st.blksize,
        "st_blocks": st.blocks,
        "st_atime": st.atime * 10**9 + st.atime_nsec,
        "st_mtime": st.mtime * 10**9 + st.mtime_nsec,
        "st_ctime": st.ctime * 10**9 + st.ctime_nsec,
    }


def make_operations(files: NfsClient, paths: NfsClient, mfusepy: Any) -> Any:
    """The FUSE operations (an ``mfusepy.Operations``) serving an export through two
    mounts of it: ``files`` opens, reads and writes files; ``paths`` does every call
    by path. libnfs 4.0 loses track of an NFSv4 open's sequence ids when a SETATTR by path
    (chmod, utimes, truncate) is sent on the context that holds the open (the next call
    fails with BAD_STATEID or BAD_SEQID); a second client keeps them apart."""
    lib, ctx, meta = files.lib, files.ctx, paths.ctx
    check = files.check

    def as_caller(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any) -> Any:
            uid, gid, _pid = mfusepy.fuse_get_context()
            files.as_caller(uid, gid)
            paths.as_caller(uid, gid)
            return method(*args)

        wrapped.__name__ = method.__name__
        return wrapped

    class NfsOperations(mfusepy.Operations):  # type: ignore[misc]
        """Each FUSE call is one libnfs call on the same path."""

        use_ns = True

        def __init__(self) -> None:
            self.handles: dict[int, ctypes.c_void_p] = {}
            self.next_handle = 1

        def _keep(self, handle: ctypes.c_void_p) -> int:
            number = self.next_handle
            self.next_handle += 1
            self.handles[number] = handle
            return number

        @as_caller
        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            st = NfsStat64()
            if fh is not None and fh in self.handles:
                check(lib.nfs_fstat64(ctx, self.handles[fh], ctypes.byref(st)))
            else:
                check(lib.nfs_lstat64(meta, path.encode(), ctypes.byref(st)))
            return _attrs(st)

        @as_caller
        def readdir(self, path: str, fh: int) -> list[str]:
            directory = ctypes.c_void_p()
            check(lib.nfs_opendir(meta, path.encode(), ctypes.byref(directory)))
            names = [".", ".."]
            try:
                while entry := lib.nfs_readdir(meta, directory):
                    name = entry.contents.name.decode(errors="surrogateescape")
                    if name not in (".", ".."):
                        names.append(name)
            finally:
                lib.nfs_closedir(meta, directory)
            return names

        @as_caller
        def open(self, path: str, flags: int) -> int:
            handle = ctypes.c_void_p()
            # Not O_APPEND: the kernel already writes appends at the end of the file.
            wanted = flags & (os.O_ACCMODE | os.O_TRUNC | os.O_SYNC)
            check(lib.nfs_open(ctx, path.encode(), wanted, ctypes.byref(handle)))
            return self._keep(handle)

        @as_caller
        def create(self, path: str, mode: int, flags: int = os.O_RDWR) -> int:
            handle = ctypes.c_void_p()
            wanted = (flags & (os.O_ACCMODE | os.O_EXCL)) | os.O_CREAT
            check(lib.nfs_create(ctx, path.encode(), wanted, mode & 0o7777, ctypes.byref(handle)))
            number = self._keep(handle)
            # libnfs 4.0's NFSv4 OPEN creates files 0600 whatever the mode asked for.
            check(lib.nfs_chmod(meta, path.encode(), mode & 0o7777))
            return number

        @as_caller
        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            buffer = ctypes.create_string_buffer(size)
            count = check(lib.nfs_pread(ctx, self.handles[fh], offset, size, buffer))
            return buffer.raw[:count]

        @as_caller
        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            written = 0
            while written < len(data):
                chunk = data[written : written + WRITE_CHUNK]
                count = check(
                    lib.nfs_pwrite(ctx, self.handles[fh], offset + written, len(chunk), chunk)
                )
                if count == 0:
                    break
                written += count
            return written

        @as_caller
        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            if fh is not None and fh in self.handles:
                return check(lib.nfs_ftruncate(ctx, self.handles[fh], length))
            return check(lib.nfs_truncate(meta, path.encode(), length))

        def flush(self, path: str, fh: int) -> int:
            return 0

        @as_caller
        def fsync(self, path: str, datasync: int, fh: int) -> int:
            return check(lib.nfs_fsync(ctx, self.handles[fh]))

        @as_caller
        def release(self, path: str, fh: int) -> int:
            handle = self.handles.pop(fh, None)
            if handle is not None:
                lib.nfs_close(ctx, handle)
            return 0

        @as_caller
        def mkdir(self, path: str, mode: int) -> int:
            return check(lib.nfs_mkdir2(meta, path.encode(), mode & 0o7777))

        @as_caller
        def rmdir(self, path: str) -> int:
            return check(lib.nfs_rmdir(meta, path.encode()))

        @as_caller
        def unlink(self, path: str) -> int:
            return check(lib.nfs_unlink(meta, path.encode()))

        @as_caller
        def rename(self, old: str, new: str) -> int:
            return check(lib.nfs_rename(meta, old.encode(), new.encode()))

        @as_caller
        def link(self, target: str, source: str) -> int:
            return check(lib.nfs_link(meta, source.encode(), target.encode()))

        @as_caller
        def symlink(self, target: str, source: str) -> int:
            return check(lib.nfs_symlink(meta, source.encode(), target.encode()))

        @as_caller
        def readlink(self, path: str) -> str:
            buffer = ctypes.create_string_buffer(4096)
            check(lib.nfs_readlink(meta, path.encode(), buffer, len(buffer)))
            return buffer.value.decode(errors="surrogateescape")

        @as_caller
        def chmod(self, path: str, mode: int) -> int:
            return check(lib.nfs_chmod(meta, path.encode(), stat.S_IMODE(mode)))

        @as_caller
        def chown(self, path: str, uid: int, gid: int) -> int:
            if uid == UNCHANGED or gid == UNCHANGED:
                current = self.getattr(path)
                uid = current["st_uid"] if uid == UNCHANGED else uid
                gid = current["st_gid"] if gid == UNCHANGED else gid
            return check(lib.nfs_chown(meta, path.encode(), uid, gid))

        @as_caller
        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            now = time.time_ns()
            atime, mtime = times or (now, now)
            # libfuse passes utimensat's special values as tv_nsec with tv_sec 0.
            if UTIME_OMIT in (atime, mtime):
                current = self.getattr(path)
                atime = current["st_atime"] if atime == UTIME_OMIT else atime
                mtime = current["st_mtime"] if mtime == UTIME_OMIT else mtime
            atime = now if atime == UTIME_NOW else atime
            mtime = now if mtime == UTIME_NOW else mtime
            pair = (Timeval * 2)(
                Timeval(atime // 10**9, atime % 10**9 // 1000),
                Timeval(mtime // 10**9, mtime % 10**9 // 1000),
            )
            return check(lib.nfs_utimes(meta, path.encode(), pair))

        @as_caller
        def statfs(self, path: str) -> dict[str, int]:
            sv = NfsStatvfs64()
            check(lib.nfs_statvfs64(meta, path.encode(), ctypes.byref(sv)))
            return {
                "f_bsize": sv.bsize,
                "f_frsize": sv.frsize or sv.bsize,
                "f_blocks": sv.blocks,
                "f_bfree": sv.bfree,
                "f_bavail": sv.bavail,
                "f_files": sv.files,
                "f_ffree": sv.ffree,
                "f_favail": sv.favail,
                "f_namemax": sv.namemax or 255,
            }

        def destroy(self, path: str) -> None:
            files.close()
            paths.close()

    return NfsOperations()


def main(argv: list[str] | None = None) -> int:
    """Mount ``SERVER:EXPORT`` on ``MOUNTPOINT`` and serve it until unmounted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server")
    parser.add_argument("export")
    parser.add_argument("mountpoint")
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args(argv)

    def fail(why: str) -> int:
        print(f"mount.nfs: {why}", file=sys.stderr, flush=True)
        return MOUNT_FAILURE

    if not os.path.exists("/dev/fuse"):
        return fail("/dev/fuse is missing: this node cannot mount FUSE file systems")
    try:
        import mfusepy
    except (ImportError, OSError) as exc:  # OSError: mfusepy found no libfuse
        return fail(f"no FUSE library (mfusepy with libfuse3): {exc}")
    try:
        lib = load_libnfs()
    except OSError as exc:
        return fail(f"no NFS client library (libnfs13): {exc}")
    unreachable = tcp_reachable(args.server)
    if unreachable is not None:
        return fail(unreachable)
    name = f"kubetrio-{socket.gethostname()}-{os.getpid()}"
    try:
        files = NfsClient(lib, args.server, args.export, name=f"{name}-files")
        paths = NfsClient(lib, args.server, args.export, name=f"{name}-paths")
    except OSError as exc:
        return fail(f"mounting {args.server}:{args.export} failed: {exc.strerror}")
    options: dict[str, Any] = {
        "foreground": True,
        "nothreads": True,
        "allow_other": True,
        "default_permissions": True,
        "fsname": f"{args.server}:{args.export}",
        "subtype": "nfs",
    }
    if args.read_only:
        options["ro"] = True
    try:
        mfusepy.FUSE(make_operations(files, paths, mfusepy), args.mountpoint, **options)
    except RuntimeError as exc:
        return fail(f"FUSE mount on {args.mountpoint} failed: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
