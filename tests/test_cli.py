"""The command line: help everywhere, version, plugins table and JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import kubetrio
from kubetrio.cli import build_app

runner = CliRunner()
COMMANDS = ["version", "plugins", "server", "agent", "up", "down"]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(build_app(), [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version_reports_core_and_datapath() -> None:
    from kubetrio import _datapath

    result = runner.invoke(build_app(), ["version"])
    assert result.exit_code == 0
    assert f"kubetrio {kubetrio.__version__}" in result.output
    assert f"datapath {_datapath.__version__}" in result.output


def test_plugins_json_lists_built_ins_with_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETRIO_PLUGINS", raising=False)
    monkeypatch.delenv("KUBETRIO_BLOCKED_PLUGINS", raising=False)
    result = runner.invoke(build_app(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert {"auth", "cni_calico", "scheduler", "storage"} <= set(listed)
    assert listed["storage"]["hooks"] == [
        "kubetrio_configure",
        "kubetrio_register_storage_drivers",
    ]


def test_plugins_block_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETRIO_PLUGINS", raising=False)
    result = runner.invoke(build_app(), ["plugins", "--json", "--block", "auth"])
    assert "auth" not in {p["name"] for p in json.loads(result.output)}


def test_unbuilt_components_say_so_and_fail() -> None:
    result = runner.invoke(build_app(), ["up"])
    assert result.exit_code == 2
    assert "not part of this build" in result.output
