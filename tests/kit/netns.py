"""Network-namespace helpers for root tests: commands, and a web server inside one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def root_or_skip() -> None:
    """Skip the test unless it runs as root with busybox (namespaces, nftables, httpd)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, nftables)")
    if shutil.which("busybox") is None:
        pytest.skip("busybox is not installed")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (``ip ...``, ``sysctl ...``); raise with its stderr when it fails."""
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


def netns_exec(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command inside network namespace ``netns``."""
    return sh("ip", "netns", "exec", netns, *args, check=check)


def serve_http_in(netns: str, root: Path, text: str, *, port: int = 80) -> subprocess.Popen[bytes]:
    """Start busybox httpd in ``netns`` serving ``text`` as index.html from ``root``.

    The caller stops it (``kill()`` then ``wait()``) when the test ends.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(text)
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, "busybox", "httpd", "-f", "-p", str(port), "-h", str(root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
