"""A third-party plugin installed with pip shows up, is called, and goes away.

The sample plugin (tests/sample_plugin) is installed into the running virtualenv, then
uninstalled — also when the test fails — so the environment is left as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent / "sample_plugin"
KUBETRIO = [sys.executable, "-m", "kubetrio"]


def pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True
    )


def kubetrio(
    *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "COLUMNS": "200", **(env_extra or {})}
    env.pop("KUBETRIO_PLUGINS", None)
    return subprocess.run([*KUBETRIO, *args], capture_output=True, text=True, env=env, check=False)


@pytest.fixture
def installed_sample() -> Iterator[None]:
    pip("install", "--no-deps", str(SAMPLE))
    try:
        yield
    finally:
        pip("uninstall", "-y", "kubetrio-sample-plugin")


@pytest.mark.slow
def test_installed_plugin_is_listed_called_and_removable(installed_sample: None) -> None:
    listing = kubetrio("plugins")
    assert listing.returncode == 0, listing.stderr
    assert "kubetrio-sample-plugin" in listing.stdout
    assert "1.2.3" in listing.stdout
    assert "kubetrio_admission_validate" in listing.stdout

    # Its CLI command is there, and its admission hook is called through the facade.
    hello = kubetrio("sample-hello")
    assert hello.returncode == 0, hello.stderr
    assert "hello from kubetrio-sample-plugin" in hello.stdout
    script = (
        "from kubetrio import plugins\n"
        "from kubetrio.providers import AdmissionRequest, UserInfo\n"
        "m = plugins.load(only=['sample'])\n"
        "r = AdmissionRequest(operation='CREATE', user=UserInfo(name='u'), api_group='',\n"
        "    api_version='v1', kind='Pod', resource='pods', object={'metadata': {'name': 'p'}})\n"
        "print(m.admission_validate(request=r))"
    )
    check = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "must carry a 'team' label" in check.stdout

    blocked = kubetrio("plugins", env_extra={"KUBETRIO_BLOCKED_PLUGINS": "sample"})
    assert "kubetrio-sample-plugin" not in blocked.stdout
    assert "kubetrio-scheduler" in blocked.stdout

    pip("uninstall", "-y", "kubetrio-sample-plugin")
    try:
        gone = kubetrio("plugins")
        assert "kubetrio-sample-plugin" not in gone.stdout
        assert "kubetrio-scheduler" in gone.stdout
    finally:
        pip("install", "--no-deps", str(SAMPLE))  # the fixture uninstalls it again


# Runs `kubetrio <args>` through the real command line in a fresh interpreter, with the
# server's body replaced by one that prints what it was given.
CLI_SCRIPT = """
import json, sys
from typer.testing import CliRunner
import kubetrio.cli._serve as serve
from kubetrio.cli import build_app
seen = {}
async def fake_run_server(**kwargs):
    seen.update(kwargs)
serve.run_server = fake_run_server
result = CliRunner().invoke(build_app(), sys.argv[1:])
print(result.output)
print("PLUGIN_CONFIG", json.dumps(seen.get("plugin_config")))
sys.exit(result.exit_code)
"""


def server_config(*args: str) -> dict[str, object]:
    run = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, "server", "--no-agent", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("PLUGIN_CONFIG"))
    config: dict[str, object] = json.loads(line.split(" ", 1)[1])
    return config


@pytest.mark.slow
def test_installed_plugin_owns_a_cli_option_and_a_config_section(
    installed_sample: None, tmp_path: Path
) -> None:
    """The sample plugin's --required-label is in `kubetrio server --help`, reaches the
    plugin from the flag or from its section of config.yaml (the flag winning), and the
    plugin configured so refuses pods by that label."""
    helped = kubetrio("server", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--required-label" in helped.stdout
    assert "Options of plugin sample" in helped.stdout

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "config.yaml").write_text("sample:\n  required-label: owner\n")
    from_file = server_config("--data-dir", str(data_dir))
    assert from_file["sample"] == {"label": "owner"}
    flag_wins = server_config("--data-dir", str(data_dir), "--required-label", "squad")
    assert flag_wins["sample"] == {"label": "squad"}

    (data_dir / "config.yaml").write_text("sample:\n  required-labl: owner\n")
    bad = kubetrio("server", "--data-dir", str(data_dir), "--no-agent")
    assert bad.returncode == 2
    assert f"{data_dir / 'config.yaml'}: sample.required-labl: not an option" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr

    script = (
        "from kubetrio import plugins\n"
        "from kubetrio.providers import AdmissionRequest, UserInfo\n"
        "m = plugins.load(only=['sample'])\n"
        "m.configure(config={'sample': {'label': 'owner'}})\n"
        "r = AdmissionRequest(operation='CREATE', user=UserInfo(name='u'), api_group='',\n"
        "    api_version='v1', kind='Pod', resource='pods',\n"
        "    object={'metadata': {'name': 'p', 'labels': {'team': 'a'}}})\n"
        "print(m.admission_validate(request=r))"
    )
    check = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "must carry a 'owner' label" in check.stdout
