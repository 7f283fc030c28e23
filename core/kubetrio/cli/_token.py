"""``kubetrio token``: bootstrap tokens, as ``kubeadm token`` makes them.

A bootstrap token ``<id>.<secret>`` is the Secret ``kube-system/bootstrap-token-<id>``
of type ``bootstrap.kubernetes.io/token`` (upstream's format, which the ``certificates``
plugin of kubetrio-auth authenticates): a new node presents it once, to ask for its
client certificate (``kubetrio agent --token``). ``create`` prints a new token, ``list``
shows them, ``delete`` revokes one. They reach the cluster as kubectl does, through a
kubeconfig (an administrator's: the one ``kubetrio up``/``server`` writes).
"""

from __future__ import annotations

import base64
import datetime
import re
import secrets
import string
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml

from ._errors import CommandError

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
DEFAULT_GROUPS = "system:bootstrappers:kubetrio:default-node-token"
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_ALPHABET = string.ascii_lowercase + string.digits
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
SECRETS = f"/api/v1/namespaces/{NAMESPACE}/secrets"

token_app = typer.Typer(
    name="token",
    help="Bootstrap tokens that let new nodes join (as `kubeadm token`).",
    no_args_is_help=True,
)

KUBECONFIG_OPTION = typer.Option(
    Path("~/.kube/config").expanduser(),
    "--kubeconfig",
    envvar="KUBECONFIG",
    help="The administrator's kubeconfig (what `kubetrio up`/`server` wrote).",
)
CONTEXT_OPTION = typer.Option("", "--context", help="Its context (default: the current one).")


def is_bootstrap_token(token: str) -> bool:
    """Whether ``token`` has a bootstrap token's shape, ``[a-z0-9]{6}.[a-z0-9]{16}``."""
    return TOKEN_RE.fullmatch(token) is not None


def parse_duration(text: str) -> datetime.timedelta:
    """A Go duration of hours, minutes and seconds (``24h``, ``1h30m``, ``90s``, ``0``).

    :raises ValueError: anything else.
    """
    text = text.strip()
    if text == "0":
        return datetime.timedelta(0)
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (like 24h, 1h30m, 90s, or 0 for never)")
    units = {"h": 3600, "m": 60, "s": 1}
    return datetime.timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def new_token() -> str:
    """A random ``<id>.<secret>``."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return token_id + "." + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def token_secret(
    token: str, ttl: datetime.timedelta, description: str = "", groups: str = DEFAULT_GROUPS
) -> dict[str, Any]:
    """The Secret of a bootstrap token (no ``expiration`` for a zero ``ttl``)."""
    token_id, token_value = token.split(".")
    data = {
        "token-id": token_id,
        "token-secret": token_value,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
    }
    if ttl:
        expires = datetime.datetime.now(datetime.UTC) + ttl
        data["expiration"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    if groups:
        data["auth-extra-groups"] = groups
    if description:
        data["description"] = description
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_PREFIX + token_id, "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "stringData": data,
    }


def create_bootstrap_token(
    http: httpx.Client,
    ttl: datetime.timedelta,
    description: str = "",
    groups: str = DEFAULT_GROUPS,
) -> str:
    """Store a new bootstrap token through ``http`` (an administrator's client); return it.

    :raises CommandError: the API refused it.
    """
    token = new_token()
    answer = http.post(SECRETS, json=token_secret(token, ttl, description, groups))
    if answer.status_code != 201:
        raise CommandError(f"creating the bootstrap token failed: {_message(answer)}")
    return token


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message") or answer.text)
    except ValueError:
        return f"{answer.status_code} {answer.text[:200]}"


@contextmanager
def kubeconfig_client(path: Path, context: str = "") -> Iterator[httpx.Client]:
    """An HTTP client to the cluster of a kubeconfig's context, with its credentials
    (CA, client certificate and key inline or as files, or a bearer token)."""
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CommandError(f"cannot read the kubeconfig {path}: {exc}") from exc
    name = context or config.get("current-context", "")
    by_name = {
        kind: {e.get("name"): e.get(kind[:-1]) or {} for e in config.get(kind) or []}
        for kind in ("contexts", "clusters", "users")
    }
    chosen = by_name["contexts"].get(name)
    if chosen is None:
        raise CommandError(f"{path}: no context {name!r}")
    cluster = by_name["clusters"].get(chosen.get("cluster"), {})
    user = by_name["users"].get(chosen.get("user"), {})
    if not cluster.get("server"):
        raise CommandError(f"{path}: context {name!r} names no cluster with a server")
    with tempfile.TemporaryDirectory(prefix="kubetrio-token-") as folder:

        def file_of(key: str) -> str | None:
            source = cluster if key.startswith("certificate-authority") else user
            if source.get(f"{key}-data"):
                written = Path(folder) / key
                written.write_bytes(base64.b64decode(source[f"{key}-data"]))
                return str(written)
            return source.get(key)

        ca, cert, key = (
            file_of("certificate-authority"),
            file_of("client-certificate"),
            file_of("client-key"),
        )
        headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        verify: Any = httpx.create_ssl_context(verify=ca or True)
        if cert and key:
            verify.load_cert_chain(cert, key)
        with httpx.Client(
            base_url=cluster["server"], verify=verify, headers=headers, timeout=30
        ) as http:
            yield http


@token_app.command("create")
def create(
    ttl: str = typer.Option(
        "24h", "--ttl", help="How long the token is valid (24h, 1h30m; 0: never expires)."
    ),
    description: str = typer.Option("", "--description", help="What the token is for."),
    groups: str = typer.Option(
        DEFAULT_GROUPS,
        "--groups",
        help="Extra groups the token authenticates with (each system:bootstrappers:...).",
    ),
    kubeconfig: Path = KUBECONFIG_OPTION,
    context: str = CONTEXT_OPTION,
) -> None:
    """Create a bootstrap token and print it (for `kubetrio agent --token`)."""
    try:
        duration = parse_duration(ttl)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from exc
    with kubeconfig_client(kubeconfig, context) as http:
        print(create_bootstrap_token(http, duration, description, groups))


@token_app.command("list")
def list_tokens(kubeconfig: Path = KUBECONFIG_OPTION, context: str = CONTEXT_OPTION) -> None:
    """List the bootstrap tokens: TOKEN, TTL, EXPIRES, USAGES, DESCRIPTION, EXTRA GROUPS."""
    with kubeconfig_client(kubeconfig, context) as http:
        answer = http.get(SECRETS)
        if answer.status_code != 200:
            raise CommandError(f"listing the bootstrap tokens failed: {_message(answer)}")
        items = answer.json().get("items") or []
    rows = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]]
    now = datetime.datetime.now(datetime.UTC)
    for secret in items:
        if secret.get("type") != SECRET_TYPE:
            continue
        data = {
            key: base64.b64decode(value).decode(errors="replace")
            for key, value in (secret.get("data") or {}).items()
        }
        expires, ttl_left = data.get("expiration", ""), "<forever>"
        if expires:
            when = datetime.datetime.fromisoformat(expires.replace("Z", "+00:00"))
            left = when - now
            ttl_left = "<invalid>" if left.total_seconds() <= 0 else _short(left)
        usages = ",".join(
            key.removeprefix("usage-bootstrap-")
            for key, value in sorted(data.items())
            if key.startswith("usage-bootstrap-") and value == "true"
        )
        rows.append(
            [
                f"{data.get('token-id', '')}.{data.get('token-secret', '')}",
                ttl_left,
                expires or "<never>",
                usages,
                data.get("description", "<none>"),
                data.get("auth-extra-groups", ""),
            ]
        )
    # Plain columns as kubeadm's tabwriter prints them, never cut to the terminal's width.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@token_app.command("delete")
def delete(
    token: str = typer.Argument(..., help="The token, or its id (the part before the dot)."),
    kubeconfig: Path = KUBECONFIG_OPTION,
    context: str = CONTEXT_OPTION,
) -> None:
    """Delete a bootstrap token: nodes can no longer join with it."""
    token_id = token.split(".")[0]
    with kubeconfig_client(kubeconfig, context) as http:
        answer = http.delete(f"{SECRETS}/{SECRET_PREFIX}{token_id}")
    if answer.status_code not in (200, 202):
        raise CommandError(f"deleting bootstrap token {token_id} failed: {_message(answer)}")
    print(f"bootstrap token {token_id!r} deleted")


def _short(left: datetime.timedelta) -> str:
    seconds = int(left.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h" if hours else f"{rest // 60}m"
