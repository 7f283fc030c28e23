"""What the security tests share: EncryptionConfiguration documents and a kubectl runner."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import trio

KUBECTL_DIR = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent


def key(byte: int, size: int = 32) -> str:
    """A base64 key of ``size`` bytes, all ``byte`` (distinct keys, readable tests)."""
    return base64.b64encode(bytes([byte]) * size).decode()


def encryption_yaml(*providers: str, resources: str = "[secrets]") -> str:
    """An EncryptionConfiguration with one resource entry and ``providers`` (YAML items
    such as ``"aesgcm: {keys: [{name: k1, secret: ...}]}"``)."""
    items = "".join(f"      - {p}\n" for p in providers)
    return (
        "apiVersion: apiserver.config.k8s.io/v1\n"
        "kind: EncryptionConfiguration\n"
        "resources:\n"
        f"  - resources: {resources}\n"
        "    providers:\n" + items
    )


def keyed(provider: str, name: str, secret: str) -> str:
    """One keyed provider item."""
    return f"{provider}: {{keys: [{{name: {name}, secret: '{secret}'}}]}}"


class Kubectl:
    """kubectl 1.<minor> against one kubeconfig, isolated from ~/.kube."""

    def __init__(self, kubeconfig: Path, cache: Path, minor: int = 33) -> None:
        self.binary = str(KUBECTL_DIR / f"kubectl.1.{minor}")
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(cache)}
        self.cache = cache

    async def run(self, *args: str, stdin: bytes = b"", check: bool = True) -> str:
        """Run kubectl; stdout and stderr as one text (asserting success with ``check``)."""
        with trio.fail_after(60):
            result = await trio.run_process(
                [self.binary, f"--cache-dir={self.cache}/cache", *args],
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self.env,
            )
        out = result.stdout.decode() + result.stderr.decode()
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{out}"
        return out

    async def json(self, *args: str) -> Any:
        """kubectl ... -o json, decoded."""
        import json

        return json.loads(await self.run(*args, "-o", "json"))
