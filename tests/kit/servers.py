"""A ``kubetrio server --no-agent`` in the background, as a user starts one, for tests
that need a real server process (its data directory, its kubeconfig) but no node."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml


def server_command(tmp_path: Path, *args: str) -> list[str]:
    """The command line of a server keeping its data in TMP_PATH/data and merging its
    admin kubeconfig into TMP_PATH/kubeconfig."""
    return [
        sys.executable, "-m", "kubetrio", "server", "--no-agent", "--port", "0",
        "--data-dir", str(tmp_path / "data"), "--kubeconfig", str(tmp_path / "kubeconfig"),
        *args,
    ]  # fmt: skip


@contextmanager
def running_server(tmp_path: Path, *args: str) -> Iterator[str]:
    """``kubetrio server`` in the background until the block ends; yields its URL."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    with open(tmp_path / "server.log", "ab") as log:
        process = subprocess.Popen(
            server_command(tmp_path, *args), stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        url = ""
        while time.monotonic() < deadline and process.poll() is None:
            if kubeconfig.exists():
                config = yaml.safe_load(kubeconfig.read_text()) or {}
                clusters = config.get("clusters") or []
                if clusters:
                    url = clusters[0]["cluster"]["server"]
                    # HTTPS with the cluster's own CA, as the kubeconfig says.
                    ca = str(tmp_path / "data" / "pki" / "ca.crt")
                    if httpx.get(f"{url}/readyz", timeout=2, verify=ca).text == "ok":
                        break
            time.sleep(0.2)
        assert url and process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
