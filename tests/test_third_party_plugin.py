"""A third-party plugin installed with pip shows up, is called, and goes away.

The sample plugin (tests/sample_plugin) is installed into the running virtualenv, then
uninstalled — also when the test fails — so the environment is left as it was.
"""

from __future__ import annotations

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
