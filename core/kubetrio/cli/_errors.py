"""Expected failures of the commands, told as one sentence: what went wrong, what to do.

``kubetrio`` prints ``error: <sentence>`` and exits 1 for these; anything else is a bug
and keeps its traceback. ``--debug`` shows the traceback for every failure.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

from kubetrio.images import ImageImportError, RegistryError
from kubetrio.store import Unavailable


class CommandError(Exception):
    """A failure a command explains itself (the message is the whole sentence)."""


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (possibly nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def explain(exc: BaseException) -> str | None:
    """One line for an expected failure (the first explainable one inside a group)."""
    for leaf in leaves(exc):
        sentence = _explain_one(leaf)
        if sentence is not None:
            return sentence
    return None


def _explain_one(exc: BaseException) -> str | None:
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, Unavailable):
        return f"the store does not answer ({exc}); start etcd or check --store"
    if isinstance(exc, RegistryError | ImageImportError):
        return f"registry: {exc}; check the image name and that the registry is running"
    if isinstance(exc, ValueError) and "is not a kubeconfig" in str(exc):
        return f"{exc}: repair or move that file, or choose another --kubeconfig"
    if isinstance(exc, ValueError) and "unknown store scheme" in str(exc):
        return f"{exc}: use sqlite:///path/state.db or etcd://host:port[,host:port]"
    if isinstance(exc, OSError):
        return _explain_os_error(exc)
    return None


def _explain_os_error(exc: OSError) -> str | None:
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use by another process: stop it or choose another --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this host has no such address: choose another --host"
    if exc.errno in (errno.EACCES, errno.EPERM) and exc.filename is None:
        return f"{exc.strerror}: a port below 1024 needs root"
    if exc.filename is not None:
        path = Path(str(exc.filename))
        if path.name.endswith(".kubetrio-tmp"):
            path = path.with_name(path.name.removesuffix(".kubetrio-tmp"))
        return f"cannot write or read {path}: {exc.strerror}; choose a path you may write"
    return None
