"""Backups, restores and migrations of a store.

A backup is one SQLite file in the store's own schema, whatever store it came from, so
one restore path serves both backends:

* :func:`backup_sqlite` copies a SQLite store with SQLite's online backup API: the pages
  are read inside one read transaction (WAL snapshot isolation), so the copy is one
  consistent revision while the server keeps writing, and it keeps everything the file
  holds — revisions, object history, the writers' notes.
* :func:`copy_live` copies every live object key of one store, read at a single
  revision, into an empty one. It backs up etcd (into a new SQLite file), restores into etcd, and
  migrates between backends. Revisions restart in the target: only the live state moves.
* :func:`new_epoch` gives a restored SQLite store a fresh revision epoch, as
  ``etcdutl snapshot restore --bump-revision N --mark-compacted`` does: the head revision
  jumps by N and everything below it counts as compacted. A client still holding a
  resourceVersion of the old cluster then gets 410 Gone (or "too large") and relists,
  instead of watching from a revision that now means something else. :func:`copy_live`
  compacts its target at the head for the same reason.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from ._errors import StoreError
from ._protocol import Store

BUMP_REVISION = 1_000_000_000
"""How far a restore moves the head revision: far past any revision the old cluster can
have reached after its backup (etcd's documentation uses the same figure)."""

OBJECTS = b"/registry/"
"""Where the API server keeps everything it stores; a backend's own bookkeeping (etcd's
``/kubetrio/notes/``) lives elsewhere and is not copied key by key."""

COPY_PAGE = 500
"""Keys read per page (and written concurrently) by :func:`copy_live`."""


@dataclass(frozen=True)
class Copied:
    """What a backup, restore or migration moved."""

    #: Live keys copied.
    keys: int
    #: The source's revision they were read at (for a page copy: the file's head).
    revision: int
    #: Bytes of the values copied (for a page copy: of the backup file).
    size: int


def backup_sqlite(source: Path, target: Path) -> Copied:
    """Copy the SQLite store at ``source`` (in use or not) to a new file ``target``.

    Blocking: run it in a thread. ``target`` is written beside itself and renamed into
    place only when complete, mode 0600 (it holds what the store holds).

    :raises StoreError: ``source`` is not a kubetrio store, or ``target`` exists.
    """

    def finish(dst: sqlite3.Connection) -> tuple[int, int]:
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        return _live_keys(dst)

    keys, revision = _page_copy(source, target, finish)
    return Copied(keys, revision, target.stat().st_size)


def _page_copy(
    source: Path, target: Path, finish: Callable[[sqlite3.Connection], tuple[int, int]]
) -> tuple[int, int]:
    """Copy the store file ``source`` page by page, in one read transaction, into the new
    file ``target`` (0600, written beside it and renamed into place when complete);
    ``finish`` works on the copy before the rename and says (keys, revision)."""
    if target.exists():
        raise StoreError(f"{target} already exists")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            _check_schema(src, source)
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # all pages in one step: one read transaction
                result = finish(dst)
            finally:
                dst.close()
        finally:
            src.close()
        partial.rename(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return result


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()
        conn.execute("SELECT id FROM log LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a kubetrio SQLite store: {exc}") from None


def _live_keys(conn: sqlite3.Connection) -> tuple[int, int]:
    """(live keys, head revision) of a store file."""
    (keys,) = conn.execute(
        "SELECT COUNT(*) FROM log AS l WHERE deleted = 0 AND id ="
        " (SELECT MAX(id) FROM log WHERE name = l.name)"
    ).fetchone()
    return int(keys), _head(conn)


def _head(conn: sqlite3.Connection) -> int:
    """A store file's head revision (as :class:`SQLiteStore` reads it on open)."""
    (meta,) = conn.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()
    (max_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM log").fetchone()
    return max(int(meta), int(max_id))


def restore_sqlite(backup: Path, target: Path, *, bump: int = BUMP_REVISION) -> Copied:
    """Make ``target`` (which must not exist) a store restored from ``backup``, in a fresh
    revision epoch (:func:`new_epoch`). Blocking: run it in a thread.

    :raises StoreError: ``backup`` is not a kubetrio store, or ``target`` exists.
    """
    if target.exists():
        raise StoreError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)

    def finish(dst: sqlite3.Connection) -> tuple[int, int]:
        keys, _ = _live_keys(dst)
        return keys, new_epoch(dst, bump)

    keys, head = _page_copy(backup, target, finish)
    return Copied(keys, head, target.stat().st_size)


def new_epoch(conn: sqlite3.Connection, bump: int = BUMP_REVISION) -> int:
    """Move the store's head revision ``bump`` ahead and compact everything below it;
    returns the new head. The store must not be open elsewhere."""
    head = _head(conn) + bump
    with conn:
        conn.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (head,))
        conn.execute("UPDATE meta SET v = ? WHERE k = 'compact_revision'", (head,))
    return head


async def copy_live(
    source: Store,
    target: Store,
    *,
    progress: Callable[[int], None] | None = None,
) -> Copied:
    """Create every object key (under ``/registry/``) live in ``source``, read at one
    revision, in ``target``, which must hold none; then compact ``target`` at its head,
    so revisions of the source can't be watched from there. ``progress`` hears the
    running count after each page.

    :raises StoreError: ``target`` holds keys.
    """
    if await target.count(OBJECTS):
        raise StoreError("the target store is not empty")
    keys = size = 0
    revision = 0
    continue_key: bytes | None = None
    while True:
        page = await source.list(
            OBJECTS, revision=revision, limit=COPY_PAGE, continue_key=continue_key
        )
        revision = page.revision
        async with trio.open_nursery() as nursery:
            # Concurrent creates share the target's group commits.
            for kv in page.kvs:
                nursery.start_soon(target.create, kv.key, kv.value)
        keys += len(page.kvs)
        size += sum(len(kv.value) for kv in page.kvs)
        if progress is not None:
            progress(keys)
        if not page.more:
            break
        continue_key = page.continue_key
    head = await target.current_revision()
    if head > await target.compact_revision():
        await target.compact(head)
    return Copied(keys, revision, size)
