"""A third-party kubetrio plugin, installed with pip by the test suite.

It refuses to admit pods without a label (``team`` unless ``--required-label`` — or the
``sample`` section of the configuration file — names another), and adds a
``kubetrio sample-hello`` command, so a test can see a hook call, a CLI option, a
configuration section and a CLI command from an installed plugin.

The plugin is a class (named by ``__kubetrio_plugin__``): each plugin manager, that is
each cluster, gets an instance of its own, so two clusters may require different labels.
It imports nothing of kubetrio: the hook marker is pluggy's, by the project name.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("kubetrio")


class SamplePlugin:
    """Pods must carry ``self.label``."""

    def __init__(self) -> None:
        self.label = "team"

    @hookimpl
    def kubetrio_add_options(self, options: Any) -> None:
        """``--required-label`` for ``kubetrio server`` and ``kubetrio up``."""
        options.add(
            "required-label",
            help="Pods must carry this label (sample plugin).",
            default="team",
            commands=("server", "up"),
            section="sample",
            key="label",
        )

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """Take the label from ``config["sample"]["label"]``."""
        self.label = (config.get("sample") or {}).get("label") or "team"

    @hookimpl
    def kubetrio_admission_validate(self, request: Any) -> list[str] | None:
        """Refuse pods that lack the label."""
        labels = (request.object or {}).get("metadata", {}).get("labels") or {}
        if request.kind == "Pod" and self.label not in labels:
            return [f"pods must carry a {self.label!r} label (sample plugin)"]
        return None

    @hookimpl
    def kubetrio_register_commands(self, cli: Any) -> None:
        """Add ``kubetrio sample-hello``."""

        @cli.command("sample-hello")
        def sample_hello() -> None:
            """Say hello from the sample plugin."""
            print("hello from kubetrio-sample-plugin")


__kubetrio_plugin__ = SamplePlugin
