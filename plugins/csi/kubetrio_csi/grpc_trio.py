"""Calling a gRPC method from trio: grpcio's thread-safe futures, awaited without a thread.

kubetrio runs on trio, and grpcio's asyncio API (``grpc.aio``) needs an asyncio event loop.
Rather than run one on a thread beside trio (two event loops, each call hopping between
them), the adapter uses grpcio's synchronous channel, whose ``future()`` calls are
non-blocking: gRPC's own completion-queue thread completes the future, and its done
callback wakes the trio task through :meth:`trio.lowlevel.TrioToken.run_sync_soon` (the one
thread-safe entry into a trio run). No worker thread is held per call, so a hundred
concurrent calls cost a hundred futures, not a hundred threads.

Deadlines are gRPC's own (``timeout=`` on each call: the driver sees the deadline too, as
CSI's sidecars set it). When the trio task is cancelled, the gRPC call is cancelled
(``future.cancel()``), which the driver observes as a cancelled RPC — the same as a sidecar
giving up.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

import grpc
import trio

from kubetrio.providers import StorageDriverError

Response = TypeVar("Response")


async def call(
    method: grpc.UnaryUnaryMultiCallable[Any, Response],
    request: Any,
    *,
    timeout: float,
    what: str,
) -> Response:
    """Call ``method(request)`` with a deadline of ``timeout`` seconds.

    A gRPC error becomes :class:`~kubetrio.providers.StorageDriverError` with the status
    code's name (``NOT_FOUND``, ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, …); see
    :func:`rpc_error` for its message.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        # Runs on a gRPC thread (or at once, here, if the call already ended).
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future = method.future(request, timeout=timeout)
    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        future.cancel()  # cancelled (or interrupted): the driver sees the RPC cancelled
        raise
    try:
        return future.result()
    except grpc.RpcError as exc:
        raise rpc_error(exc, what) from None


TRANSPORT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
"""Codes gRPC itself answers when the driver cannot be reached or is too slow."""


def rpc_error(exc: grpc.RpcError, what: str) -> StorageDriverError:
    """The :class:`StorageDriverError` for a failed call: the gRPC code's name and details.

    A driver's own answer keeps its words (upstream's events show them as the ``desc`` of
    ``rpc error: code = … desc = …``); an unreachable or slow driver's message starts with
    ``what`` (the driver, its socket and the RPC), since gRPC's words do not name them.
    """
    if isinstance(exc, grpc.Call):
        code, details = exc.code(), exc.details() or ""
    else:  # every RpcError grpcio raises for a unary call is a Call; be safe anyway
        code, details = grpc.StatusCode.UNKNOWN, str(exc)
    if code in TRANSPORT_CODES or not details:
        return StorageDriverError(code.name, f"{what}: {details}" if details else what)
    return StorageDriverError(code.name, details)
