"""``up --servers`` and ``server --join`` refuse what they cannot do before starting
anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubetrio.cli import build_app

runner = CliRunner()


def _unwrapped(output: str) -> str:
    """Click's error box without its borders and line breaks."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", output))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--servers", "3", "--nodes", "2"], "node namespaces are not wired to several servers"),
        (["--nodes", "0"], "0 nodes needs --servers 2 or more"),
        (["--servers", "3", "--store", "etcd://127.0.0.1:2379"], "--servers runs its own etcd"),
    ],
)
def test_up_refuses(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(build_app(), ["up", "--data-dir", str(tmp_path / "c"), *args])
    assert result.exit_code == 2, result.output
    assert message in _unwrapped(result.output)
    assert not list((tmp_path / "c").glob("*.pid"))


def test_join_needs_the_token_and_the_ca(tmp_path: Path) -> None:
    result = runner.invoke(
        build_app(),
        ["server", "--join", "https://127.0.0.1:1", "--data-dir", str(tmp_path), "--port", "0"],
        env={"KUBETRIO_TOKEN": ""},
    )
    assert result.exit_code == 2, result.output
    assert "--join needs --token and --certificate-authority" in _unwrapped(result.output)


def test_balancer_needs_backends(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    result = runner.invoke(
        build_app(), ["balancer", "--listen", "127.0.0.1:0", "--certificate-authority", str(ca)]
    )
    assert result.exit_code == 2, result.output
    assert "give --backend or --backends-file" in _unwrapped(result.output)
    help_text = runner.invoke(build_app(), ["balancer", "--help"], env={"COLUMNS": "120"})
    assert help_text.exit_code == 0 and "/readyz" in help_text.output
