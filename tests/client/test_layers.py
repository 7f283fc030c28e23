"""The client stands alone: a remote node agent that imports it loads no server code."""

from __future__ import annotations

import subprocess
import sys

SERVER_PACKAGES = (
    "kubetrio.apiserver",
    "kubetrio.store",
    "kubetrio.controllers",
    "kubetrio.cluster",
)


def test_importing_the_client_loads_no_server_module() -> None:
    code = (
        "import sys, kubetrio.client\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('kubetrio')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "kubetrio.client" in loaded
    assert [m for m in loaded if m.startswith(SERVER_PACKAGES)] == []
