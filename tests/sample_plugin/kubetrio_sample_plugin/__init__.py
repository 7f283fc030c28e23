"""A third-party kubetrio plugin, installed with pip by the test suite.

It refuses to admit pods without a ``team`` label and adds a ``kubetrio sample-hello``
command, so a test can see both a hook call and a CLI addition from an installed plugin.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("kubetrio")


@hookimpl
def kubetrio_admission_validate(request: Any) -> list[str] | None:
    """Refuse pods that have no ``team`` label."""
    if request.kind == "Pod" and "team" not in (request.object or {}).get("metadata", {}).get(
        "labels", {}
    ):
        return ["pods must carry a 'team' label (sample plugin)"]
    return None


@hookimpl
def kubetrio_register_commands(cli: Any) -> None:
    """Add ``kubetrio sample-hello``."""

    @cli.command("sample-hello")
    def sample_hello() -> None:
        """Say hello from the sample plugin."""
        print("hello from kubetrio-sample-plugin")
