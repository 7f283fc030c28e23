"""Writing the admin kubeconfig, merged into an existing file as kind and k3d do."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml


def merge_kubeconfig(
    path: Path,
    *,
    name: str,
    server: str,
    token: str = "",
    make_current: bool = True,
    certificate_authority: bytes | None = None,
    client_certificate: tuple[bytes, bytes] | None = None,
) -> None:
    """Add or replace the cluster, user and context ``name`` in the kubeconfig at ``path``.

    The user authenticates with ``token`` and/or ``client_certificate`` (certificate and
    key PEM); ``certificate_authority`` (PEM) is what the server's certificate is verified
    against. They go in inline (``*-data``, base64), so the file stands alone.
    Other clusters, users and contexts are kept; the file is written atomically, mode 0600.
    """
    cluster: dict[str, str] = {"server": server}
    if certificate_authority is not None:
        cluster["certificate-authority-data"] = _base64(certificate_authority)
    user: dict[str, str] = {}
    if client_certificate is not None:
        user["client-certificate-data"] = _base64(client_certificate[0])
        user["client-key-data"] = _base64(client_certificate[1])
    if token:
        user["token"] = token
    config: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} is not a kubeconfig (not a YAML mapping)")
        config = loaded
    config.setdefault("apiVersion", "v1")
    config.setdefault("kind", "Config")
    config.setdefault("preferences", {})
    entries = {
        "clusters": {"name": name, "cluster": cluster},
        "users": {"name": name, "user": user},
        "contexts": {"name": name, "context": {"cluster": name, "user": name}},
    }
    for section, entry in entries.items():
        kept = [e for e in config.get(section) or [] if e.get("name") != name]
        config[section] = [*kept, entry]
    if make_current or not config.get("current-context"):
        config["current-context"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".kubetrio-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, default_flow_style=False, sort_keys=False)
    os.replace(tmp, path)


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
