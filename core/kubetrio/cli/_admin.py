"""``kubetrio admin``: repair a data directory offline.

``list-raw [PREFIX]`` shows the store's keys with the size of their values, so an object
that cannot be decoded or is too large to read can be found; ``delete-raw KEY`` removes
one key without decoding it. Both open the store directly, so the server must be
stopped: a running ``kubetrio server`` holds an exclusive lock on
``DATA_DIR/server.lock`` (with its pid inside), and these commands refuse while it does.
(While the server runs, a DELETE with ``?ignoreStoreReadErrorWithClusterBreakingPotential=
true`` removes a corrupt object through the API instead.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import typer

from ._checks import checked_store_url
from ._console import console
from ._errors import CommandError

LOCK_FILE = "server.lock"
"""Held (flock) by the process that has the data directory's store open."""

admin_app = typer.Typer(
    name="admin",
    help="Repair a stopped server's data directory: list and delete raw store keys.",
    no_args_is_help=True,
)

DATA_DIR_OPTION = typer.Option(
    Path("~/.local/share/kubetrio").expanduser(),
    "--data-dir",
    help="The stopped server's data directory (its store is DATA_DIR/state.db).",
)
STORE_OPTION = typer.Option(
    "",
    "--store",
    help="Use this etcd instead of the data directory's store: etcd://host:port "
    "(stop every server using it first; this is not checked).",
)


@contextlib.contextmanager
def data_dir_lock(data_dir: Path, *, what: str) -> Iterator[None]:
    """Hold ``DATA_DIR/server.lock`` exclusively for the block, with this pid inside.

    :raises CommandError: another process holds it (naming its pid); ``what`` says what
        cannot be done meanwhile.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise CommandError(
                f"a kubetrio server (pid {holder}) is running on {data_dir}: {what}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _store_url(data_dir: Path, store: str) -> str:
    if store:
        return checked_store_url(store)
    path = data_dir / "state.db"
    if not path.exists():
        raise CommandError(f"{path} does not exist: is --data-dir the server's data directory?")
    return f"sqlite://{path.resolve()}"


@contextlib.contextmanager
def _offline(data_dir: Path, store: str) -> Iterator[str]:
    """The store URL, with the directory of a SQLite store locked for the block."""
    url = _store_url(data_dir, store)
    if url.startswith("etcd://"):
        yield url
        return
    home = Path(url.removeprefix("sqlite://")).parent if store else data_dir
    with data_dir_lock(home, what="stop it first (admin commands work on a stopped server)"):
        yield url


def _printable(key: bytes) -> str:
    return key.decode(errors="backslashreplace")


@admin_app.command("list-raw")
def list_raw(
    prefix: str = typer.Argument("/registry/", help="Only keys starting with this."),
    data_dir: Path = DATA_DIR_OPTION,
    store: str = STORE_OPTION,
) -> None:
    """List the store's keys under PREFIX with the size of each value in bytes.

    Look for the key of an object the API server cannot read (its GET or LIST names it)
    or one far larger than the rest; remove it with `kubetrio admin delete-raw KEY`.
    """
    import trio

    from kubetrio.store import open_store

    async def run() -> int:
        count = 0
        async with open_store(url, **options) as kv:
            continue_key: bytes | None = None
            revision = 0
            while True:
                # Pages keep memory bounded by one page of values, whatever the store holds.
                page = await kv.list(
                    prefix, revision=revision, limit=100, continue_key=continue_key
                )
                revision = page.revision
                for entry in page.kvs:
                    line = f"{len(entry.value):>12}  {_printable(entry.key)}"
                    console.print(line, soft_wrap=True, markup=False, highlight=False)
                    count += 1
                if not page.more:
                    return count
                continue_key = page.continue_key

    from kubetrio.store import HISTORY_KEEP_ALL

    with _offline(data_dir, store) as url:
        # A brief offline session must not prune what the server's history policy keeps.
        options = {} if store else {"wal_preallocate": 0, "history": HISTORY_KEEP_ALL}
        count = trio.run(run)
    if not count:
        console.print(f"no keys start with {prefix!r}")


@admin_app.command("delete-raw")
def delete_raw(
    key: str = typer.Argument(..., help="The exact key, as `kubetrio admin list-raw` shows it."),
    data_dir: Path = DATA_DIR_OPTION,
    store: str = STORE_OPTION,
) -> None:
    """Delete one key from the store without decoding its value.

    For an object no API request can remove (it cannot be decoded, or it is too large
    to read). Nothing else happens: no finalizers, no garbage collection of what it
    owned, no cleanup; the server must be stopped.
    """
    import trio

    from kubetrio.store import NotFound, open_store

    async def run() -> tuple[int, int]:
        async with open_store(url, **options) as kv:
            try:
                deleted = await kv.delete(key)
            except NotFound:
                raise CommandError(
                    f"the store has no key {key!r}: `kubetrio admin list-raw` lists the keys"
                ) from None
            return len(deleted.prev_kv.value), deleted.revision

    from kubetrio.store import HISTORY_KEEP_ALL

    with _offline(data_dir, store) as url:
        # A brief offline session must not prune what the server's history policy keeps.
        options = {} if store else {"wal_preallocate": 0, "history": HISTORY_KEEP_ALL}
        size, revision = trio.run(run)
    console.print(
        f"deleted {key} ({size} bytes) at revision {revision}", markup=False, highlight=False
    )
