"""Waiting for a condition: async for trio tests, sync for tests of blocking clients."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 20, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(interval)


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``.

    For blocking clients (kubectl, the ``kubernetes`` package): the predicate may raise
    until the condition holds; the last error is in the failure message.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # the condition may raise until it holds
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}: {last_error}"
    )
