"""``open_store(url)``: pick a backend from a URL.

* ``sqlite:///var/lib/kubetrio/state.db`` (absolute path) or ``sqlite://relative.db``
* ``etcd://127.0.0.1:2379,127.0.0.1:22379``: over TLS when the ``tls`` option (an
  ``ssl.SSLContext``) is given, as kube-apiserver's ``--etcd-cafile``/``--etcd-certfile``
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._etcd import open_etcd_store
from ._protocol import Store
from ._sqlite import open_sqlite_store


@asynccontextmanager
async def open_store(url: str, **options: Any) -> AsyncIterator[Store]:
    """Open the store named by ``url`` and run it for the duration of the block.

    ``options`` go to the backend (see :func:`open_sqlite_store`, :func:`open_etcd_store`).
    ``history`` (a :class:`HistoryPolicy`) is the SQLite store's; etcd keeps the history
    its own compaction leaves, so it is not passed there; ``tls`` is etcd's only.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store URL needs a scheme: {url!r}")
    if scheme == "sqlite":
        options.pop("tls", None)
        async with open_sqlite_store(rest, **options) as sqlite_store:
            yield sqlite_store
    elif scheme == "etcd":
        options.pop("history", None)
        endpoints = [e for e in rest.strip("/").split(",") if e]
        async with open_etcd_store(endpoints, **options) as etcd_store:
            yield etcd_store
    else:
        raise ValueError(f"unknown store scheme {scheme!r} in {url!r}")
