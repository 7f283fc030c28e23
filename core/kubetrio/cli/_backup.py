"""``kubetrio backup``, ``kubetrio restore`` and ``kubetrio migrate``.

``backup`` runs while the server does (SQLite: a page copy inside one read transaction;
etcd: every live key read at one revision). ``restore`` makes a new data directory (or
fills an empty etcd) from a backup, in a fresh revision epoch so clients relist.
``migrate`` moves the live state of a stopped server's store to another store.
``server --backup-schedule`` takes backups while it runs, keeping the newest few. The
mechanics are the store's (:mod:`kubetrio.store._backup`); these commands add the data
directory conventions, the server lock and progress output.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio
import typer

from ._admin import DATA_DIR_OPTION, data_dir_lock
from ._checks import checked_store_url
from ._console import console
from ._errors import CommandError
from ._retention import parse_duration

if TYPE_CHECKING:
    from kubetrio.store import Copied

log = logging.getLogger("kubetrio.backup")

STATE_DB = "state.db"
ENCRYPTION_NOTE = (
    "Secrets in it stay encrypted with the server's DATA_DIR/encryption-config.yaml: "
    "keep that file with the backup, and put it in the restored data directory."
)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _progress(what: str) -> Callable[[int], None]:
    """A callback printing how many keys went by, every 5,000."""
    shown = [0]

    def show(count: int) -> None:
        if count - shown[0] >= 5_000:
            shown[0] = count
            console.print(f"  {what} {count:,} keys …", highlight=False, soft_wrap=True)

    return show


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    from kubetrio.store import StoreError

    try:
        yield
    except StoreError as exc:
        raise CommandError(str(exc)) from None


async def take_backup(store_url: str, path: Path) -> Copied:
    """Back up the store at ``store_url`` to the new file ``path`` (see :func:`backup`)."""
    from kubetrio.store import backup_sqlite, copy_live, open_sqlite_store, open_store

    if store_url.startswith("sqlite://"):
        source = Path(store_url.removeprefix("sqlite://"))
        return await trio.to_thread.run_sync(backup_sqlite, source, path)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        async with (
            open_store(store_url) as store,
            open_sqlite_store(partial, wal_preallocate=0) as target,
        ):
            copied = await copy_live(store, target, progress=_progress("copied"))
        await trio.to_thread.run_sync(_single_file, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(path)
    return copied


def backup(
    path: Path = typer.Argument(..., help="The backup file to write (must not exist)."),
    data_dir: Path = DATA_DIR_OPTION,
    store: str = typer.Option(
        "", "--store", help="Back up this etcd instead: etcd://host:port[,host:port]."
    ),
) -> None:
    """Back up a server's store to one file, while the server runs.

    The embedded SQLite store (DATA_DIR/state.db) is copied page by page inside one read
    transaction: one consistent revision, with its object history. An etcd store is read
    at one revision, its live objects written to a new file in the same format. Restore
    either with `kubetrio restore`. `kubetrio server --backup-schedule 12h` takes them
    on a schedule.
    """
    path = path.expanduser()
    if path.exists():
        raise CommandError(f"{path} already exists: choose a new backup file")
    if store:
        url = checked_store_url(store)
    else:
        source = data_dir.expanduser() / STATE_DB
        if not source.exists():
            raise CommandError(
                f"{source} does not exist: is --data-dir the server's data directory?"
            )
        url = f"sqlite://{source.resolve()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _store_errors():
        copied = trio.run(take_backup, url, path)
    console.print(
        f"backed up {copied.keys:,} keys at revision {copied.revision} to {path} "
        f"({_mib(path.stat().st_size)})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(ENCRYPTION_NOTE, highlight=False, soft_wrap=True)


def _single_file(path: Path) -> None:
    """Fold a closed SQLite file's WAL into it, so the backup is one file."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


def restore(
    backup_file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="A file made by `kubetrio backup`."
    ),
    data_dir: Path = typer.Option(
        ...,
        "--data-dir",
        help="The new server's data directory; its store DATA_DIR/state.db must not exist.",
    ),
    store: str = typer.Option(
        "",
        "--store",
        help="Restore into this etcd instead (it must be empty): etcd://host:port.",
    ),
) -> None:
    """Make a new cluster's store from a backup, in a fresh revision epoch.

    The restored store's revisions jump far ahead and everything before counts as
    compacted (as etcdutl's --bump-revision --mark-compacted), so clients and
    controllers that knew the old cluster get 410 Gone and relist instead of missing
    changes. Start `kubetrio server --data-dir DATA_DIR` (with the old server's
    encryption-config.yaml copied in) afterwards.
    """
    from kubetrio.store import copy_live, open_sqlite_store, open_store, restore_sqlite

    data_dir = data_dir.expanduser()
    with _store_errors():
        if store:
            url = checked_store_url(store)

            async def into_etcd() -> Copied:
                # Read a scratch copy: opening a store file may write to it.
                with tempfile.TemporaryDirectory() as scratch:
                    copy = Path(scratch) / STATE_DB
                    await trio.to_thread.run_sync(shutil.copyfile, backup_file, copy)
                    async with (
                        open_sqlite_store(copy, wal_preallocate=0) as source,
                        open_store(url) as target,
                    ):
                        return await copy_live(source, target, progress=_progress("restored"))

            copied = trio.run(into_etcd)
            console.print(
                f"restored {copied.keys:,} keys into {url}",
                highlight=False,
                soft_wrap=True,
            )
            return
        target = data_dir / STATE_DB
        with data_dir_lock(data_dir, what="stop it before restoring into its directory"):
            if target.exists():
                raise CommandError(
                    f"{target} exists: restore into a new --data-dir (or move that store away)"
                )
            copied = restore_sqlite(backup_file, target)
    console.print(
        f"restored {copied.keys:,} keys into {target}; revisions continue from {copied.revision}",
        highlight=False,
        soft_wrap=True,
    )


def migrate(
    source: str = typer.Option(
        ..., "--from", help="The store to read: sqlite:///path/state.db or etcd://host:port."
    ),
    target: str = typer.Option(
        ..., "--to", help="The empty store to fill: sqlite:///path/state.db or etcd://host:port."
    ),
) -> None:
    """Copy the live state of a stopped server's store into another, empty store.

    Every live key is read at one revision and created in the target; the target is then
    compacted at its head. Revisions restart in the target, so clients relist (the old
    resourceVersions mean nothing there) and watch history before the move stays behind.
    Stop the servers using the source first (a SQLite source is checked by its lock).
    """
    from kubetrio.store import HISTORY_KEEP_ALL, copy_live, open_store

    source, target = checked_store_url(source), checked_store_url(target)
    if source == target:
        raise CommandError("--from and --to name the same store")

    async def run() -> Copied:
        options = {"wal_preallocate": 0, "history": HISTORY_KEEP_ALL}
        from_options = options if source.startswith("sqlite://") else {}
        to_options = {"wal_preallocate": 0} if target.startswith("sqlite://") else {}
        async with (
            open_store(source, **from_options) as src,
            open_store(target, **to_options) as dst,
        ):
            return await copy_live(src, dst, progress=_progress("copied"))

    with contextlib.ExitStack() as locks, _store_errors():
        for url, what in ((source, "stop it before migrating its store"), (target, "")):
            if url.startswith("sqlite://"):
                home = Path(url.removeprefix("sqlite://")).parent
                locks.enter_context(
                    data_dir_lock(home, what=what or "stop it: the target must not be in use")
                )
        copied = trio.run(run)
    console.print(
        f"copied {copied.keys:,} keys (read at revision {copied.revision}) "
        f"from {source} to {target}",
        highlight=False,
        soft_wrap=True,
    )


# --- scheduled backups (`server --backup-schedule`) ---------------------------------------

BACKUP_SCHEDULE_OPTION = typer.Option(
    "0",
    "--backup-schedule",
    help="Back the store up every DURATION while the server runs (12h, 1d; 0: never), as "
    "`kubetrio backup` does, into --backup-dir.",
)
BACKUP_RETENTION_OPTION = typer.Option(
    5, "--backup-retention", min=1, help="Scheduled backups kept; the oldest go first."
)
BACKUP_DIR_OPTION = typer.Option(
    None, "--backup-dir", help="Where scheduled backups go (default: DATA_DIR/backups)."
)
SCHEDULED_PREFIX = "kubetrio-"
"""Scheduled backups are ``kubetrio-<UTC time>.db``; only such files are pruned."""


@dataclass(frozen=True)
class BackupSchedule:
    """How often the server backs its store up, and how many backups it keeps where."""

    interval: float
    retention: int
    directory: Path


def backup_schedule(
    schedule: str, retention: int, directory: Path | None, data_dir: Path
) -> BackupSchedule | None:
    """The schedule the options ask for (None: none), refused in one line if bad."""
    interval = parse_duration(schedule, "--backup-schedule")
    if interval <= 0:
        return None
    return BackupSchedule(interval, retention, (directory or data_dir / "backups").expanduser())


def backup_arguments(schedule: str, retention: int, directory: Path | None) -> list[str]:
    """The same options for the ``server`` that ``up`` starts (checked first)."""
    parse_duration(schedule, "--backup-schedule")
    args = ["--backup-schedule", schedule, "--backup-retention", str(retention)]
    return args + (["--backup-dir", str(directory)] if directory else [])


async def run_scheduled_backups(schedule: BackupSchedule, store_url: str) -> None:
    """Back ``store_url`` up every ``schedule.interval`` seconds, keeping the newest
    ``schedule.retention``; a failed backup is logged and tried again next time."""
    from kubetrio.store import StoreError

    schedule.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    while True:
        await trio.sleep(schedule.interval)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = schedule.directory / f"{SCHEDULED_PREFIX}{stamp}.db"
        try:
            copied = await take_backup(store_url, path)
        except (StoreError, OSError) as exc:
            log.warning("scheduled backup to %s failed: %s", path, exc)
            continue
        log.info(
            "scheduled backup: %d keys at revision %d to %s", copied.keys, copied.revision, path
        )
        for old in sorted(schedule.directory.glob(f"{SCHEDULED_PREFIX}*.db"))[
            : -schedule.retention
        ]:
            old.unlink(missing_ok=True)
            log.info("scheduled backup %s removed (--backup-retention %d)", old, schedule.retention)
