"""Writing the admin kubeconfig, merged into an existing file as kind and k3d do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def merge_kubeconfig(
    path: Path, *, name: str, server: str, token: str, make_current: bool = True
) -> None:
    """Add or replace the cluster, user and context ``name`` in the kubeconfig at ``path``.

    Other clusters, users and contexts are kept; the file is written atomically, mode 0600.
    """
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
        "clusters": {"name": name, "cluster": {"server": server}},
        "users": {"name": name, "user": {"token": token}},
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
