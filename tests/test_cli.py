"""The command line: help everywhere, version, plugins table and JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import kubetrio
from kubetrio.cli import build_app

runner = CliRunner()
COMMANDS = ["version", "plugins", "server", "agent", "up", "down", "image"]


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
        "kubetrio_add_options",
        "kubetrio_configure",
        "kubetrio_register_storage_drivers",
    ]
    assert listed["cni_calico"]["options"] == ["--network-mode", "--pod-cidr"]
    assert listed["storage"]["error"] == ""


def test_plugins_block_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETRIO_PLUGINS", raising=False)
    result = runner.invoke(build_app(), ["plugins", "--json", "--block", "auth"])
    assert "auth" not in {p["name"] for p in json.loads(result.output)}


def _unwrapped(output: str) -> str:
    """Rich's error box as one line of words (it wraps long messages inside borders)."""
    return " ".join(output.replace("│", " ").split())


def test_server_refuses_a_bad_pool_or_mode(tmp_path: Path) -> None:
    for args, message in (
        (["--lb-pool", "nonsense"], "--lb-pool"),
        (["--network-mode", "x"], "'x'"),
    ):
        result = runner.invoke(build_app(), ["server", "--data-dir", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
        assert message in _unwrapped(result.output)


def test_agent_needs_a_server(tmp_path: Path) -> None:
    result = runner.invoke(build_app(), ["agent", "--token", "t"])
    assert result.exit_code == 2
    assert "--server" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "gre"], "'gre' is not one of vxlan, ipip, bgp"),
        (["--nodes", "3", "--underlay", "10.99.0.0/30"], "no room for 3 nodes"),
        (["--nodes", "0"], "--nodes"),
        (["--lb-pool", "10.0.0.9-10.0.0.1"], "runs backwards"),
    ],
)
def test_up_refuses_bad_options_before_starting_anything(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(build_app(), ["up", "--data-dir", str(tmp_path / "c"), *args])
    assert result.exit_code == 2, result.output
    assert message in _unwrapped(result.output)
    assert not (tmp_path / "c" / "server.pid").exists()


def test_up_and_down_run_a_background_cluster(tmp_path: Path) -> None:
    """`kubetrio up` starts a server that kubectl can use; `down` stops it."""
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("KUBETRIO_PLUGINS", None)
    kubetrio = [sys.executable, "-m", "kubetrio"]
    port = "16702"
    try:
        up = subprocess.run(
            [*kubetrio, "up", "--port", port, "--registry-port", "15702"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert "is up at http://127.0.0.1:16702" in up.stdout
        again = subprocess.run(
            [*kubetrio, "up", "--port", port, "--registry-port", "15702"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "already running" in again.stdout
        namespaces = subprocess.run(
            ["kubectl", "get", "ns", "-o", "name"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "namespace/default" in namespaces.stdout, namespaces.stderr
        if shutil.which("docker-registry"):  # the local registry holds busybox
            tags = httpx.get("http://127.0.0.1:15702/v2/library/busybox/tags/list").json()
            assert tags["tags"] == ["latest"]
    finally:
        down = subprocess.run(
            [*kubetrio, "down", "--delete-data"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert "stopped" in down.stdout, down.stdout + down.stderr
    assert not (tmp_path / ".local/share/kubetrio/clusters/kubetrio").exists()


@pytest.mark.root
def test_image_build_pushes_to_a_registry(tmp_path: Path) -> None:
    """`kubetrio image build` makes a busybox image a registry then serves."""
    import httpx

    from kubetrio.images import local_registry

    context = tmp_path / "site"
    context.mkdir()
    (context / "index.html").write_text("hello")
    with local_registry(tmp_path / "registry") as host:
        result = runner.invoke(
            build_app(),
            [
                "image",
                "build",
                str(context),
                "--tag",
                f"{host}/site:1",
                "--cmd",
                "httpd",
                "--cmd",
                "-f",
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"pushed {host}/site:1" in result.output
        tags = httpx.get(f"http://{host}/v2/site/tags/list").json()
    assert tags["tags"] == ["1"]
