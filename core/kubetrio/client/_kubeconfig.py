"""A client from a kubeconfig file, as kubectl finds and reads it (for tools such as the
``kubectl history`` plugin).

The file is ``path``, else the first file of ``$KUBECONFIG`` that exists, else
``~/.kube/config``; the context is ``context``, else ``current-context``. Supported: the
cluster's ``server``, ``certificate-authority(-data)`` and ``insecure-skip-tls-verify``;
the user's ``token``/``tokenFile`` and ``client-certificate(-data)``/``client-key(-data)``.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ._client import Client

DEFAULT_KUBECONFIG = Path.home() / ".kube" / "config"


def kubeconfig_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The kubeconfig kubectl would read."""
    if path:
        return Path(path)
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).exists():
            return Path(entry)
    return DEFAULT_KUBECONFIG


def _named(config: dict[str, Any], section: str, name: str, source: Path) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            found: dict[str, Any] = entry.get(section[:-1]) or {}
            return found
    raise ValueError(f"{source}: no {section[:-1]} named {name!r}")


def _data(entry: dict[str, Any], field: str, base: Path) -> bytes | None:
    """``field-data`` (base64) or the file ``field`` names (relative to the kubeconfig)."""
    if entry.get(f"{field}-data"):
        return base64.b64decode(str(entry[f"{field}-data"]))
    if entry.get(field):
        return (base / os.path.expanduser(str(entry[field]))).read_bytes()
    return None


def context_namespace(path: str | os.PathLike[str] | None = None, *, context: str = "") -> str:
    """The namespace of the kubeconfig's context (``default`` when it names none)."""
    source = kubeconfig_path(path)
    try:
        config = yaml.safe_load(source.read_text()) or {}
        name = context or config.get("current-context") or ""
        namespace = _named(config, "contexts", name, source).get("namespace")
    except (OSError, ValueError, AttributeError):
        return "default"
    return str(namespace or "default")


def from_kubeconfig(path: str | os.PathLike[str] | None = None, *, context: str = "") -> Client:
    """A :class:`Client` for the kubeconfig's context (see the module docstring).

    :raises ValueError: the file is missing, not a kubeconfig, or names no such context.
    """
    source = kubeconfig_path(path)
    try:
        config = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the kubeconfig {source}: {exc.strerror}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{source} is not a kubeconfig")
    name = context or config.get("current-context") or ""
    if not name:
        raise ValueError(f"{source}: no current-context; pass a context")
    ctx = _named(config, "contexts", name, source)
    cluster = _named(config, "clusters", ctx.get("cluster", ""), source)
    user = _named(config, "users", ctx.get("user", ""), source) if ctx.get("user") else {}
    base = source.parent
    server = str(cluster.get("server") or "")
    if not server:
        raise ValueError(f"{source}: cluster {ctx.get('cluster')!r} has no server")
    verify: bool | ssl.SSLContext = True
    if server.startswith("https://"):
        tls = ssl.create_default_context()
        ca = _data(cluster, "certificate-authority", base)
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        elif ca is not None:
            tls.load_verify_locations(cadata=ca.decode())
        cert = _data(user, "client-certificate", base)
        key = _data(user, "client-key", base)
        if cert is not None and key is not None:
            # ssl loads a certificate chain from files only: a private folder, gone at once.
            with tempfile.TemporaryDirectory() as folder:
                pem = Path(folder) / "client.pem"
                pem.touch(0o600)
                pem.write_bytes(cert.rstrip(b"\n") + b"\n" + key)
                tls.load_cert_chain(pem)
        verify = tls
    token = str(user.get("token") or "")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    return Client.connect(server, token=token, verify=verify)
