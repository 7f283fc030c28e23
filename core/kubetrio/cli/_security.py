"""The options ``server`` and ``up`` share for encryption at rest and the audit log.

Both are on by default for a cluster started from the command line, under the data
directory: ``encryption-config.yaml`` (made on first start, mode 0600: Secrets sealed
with a random secretbox key) and ``audit.log`` (every mutating request at ``Metadata``
level, rotated at 100 MB, 5 old files kept). The flags are kube-apiserver's; a bad file
is refused in one line before anything starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._errors import CommandError

if TYPE_CHECKING:  # the server's modules load only when a server starts
    import ssl

    from kubetrio import store as kv
    from kubetrio.apiserver import AuditLog

ENCRYPTION_CONFIG_FILE = "encryption-config.yaml"
AUDIT_LOG_FILE = "audit.log"

ENCRYPTION_CONFIG_OPTION = typer.Option(
    None,
    "--encryption-provider-config",
    dir_okay=False,
    help="An EncryptionConfiguration (apiserver.config.k8s.io/v1) saying which resources "
    "are encrypted in the store and with which keys (default: DATA_DIR/"
    f"{ENCRYPTION_CONFIG_FILE}, made on first start: Secrets with a random secretbox key).",
)
AUDIT_POLICY_OPTION = typer.Option(
    None,
    "--audit-policy-file",
    dir_okay=False,
    help="An audit.k8s.io/v1 Policy (default: every mutating request at Metadata level).",
)
AUDIT_LOG_PATH_OPTION = typer.Option(
    None,
    "--audit-log-path",
    help=f"Where audit Events go as JSON lines; '-' standard output, '' none "
    f"(default: DATA_DIR/{AUDIT_LOG_FILE}).",
)
AUDIT_LOG_MAXSIZE_OPTION = typer.Option(
    100,
    "--audit-log-maxsize",
    min=0,
    help="Megabytes an audit log grows to before it is rotated (0: never).",
)
AUDIT_LOG_MAXBACKUP_OPTION = typer.Option(
    5, "--audit-log-maxbackup", min=0, help="Rotated audit logs kept (0: all)."
)


def encryption_config(path: Path | None, data_dir: Path) -> kv.EncryptionConfig:
    """The encryption config of ``server``: ``path``, or the data directory's (made on
    first start). :raises CommandError: the file is missing or not valid."""
    from kubetrio import store as kv

    if path is None:
        path = data_dir / ENCRYPTION_CONFIG_FILE
        if not path.exists():
            kv.write_default_encryption_config(path)
    try:
        return kv.load_encryption_config(path)
    except kv.EncryptionConfigError as exc:
        raise CommandError(str(exc)) from None


def audit_log(
    policy_file: Path | None,
    log_path: str | None,
    data_dir: Path,
    *,
    max_size_mb: int,
    max_backups: int,
) -> AuditLog | None:
    """The audit log of ``server`` (None when ``--audit-log-path ''``).

    :raises CommandError: the policy file is missing or not valid.
    """
    from kubetrio.apiserver import AuditPolicyError, load_audit_policy, open_audit_log

    try:
        policy = load_audit_policy(policy_file)
    except AuditPolicyError as exc:
        raise CommandError(str(exc)) from None
    if log_path == "":
        return None
    path = log_path or str(data_dir / AUDIT_LOG_FILE)
    return open_audit_log(path, policy=policy, max_size_mb=max_size_mb, max_backups=max_backups)


def checked_security_files(encryption: Path | None, policy: Path | None) -> None:
    """Refuse, before ``up`` starts a server, files that server would refuse."""
    from kubetrio import store as kv
    from kubetrio.apiserver import AuditPolicyError, load_audit_policy

    try:
        if encryption is not None:
            kv.load_encryption_config(encryption)
        if policy is not None:
            load_audit_policy(policy)
    except (kv.EncryptionConfigError, AuditPolicyError) as exc:
        raise CommandError(str(exc)) from None


def security_arguments(
    encryption: Path | None,
    policy: Path | None,
    log_path: str | None,
    max_size_mb: int,
    max_backups: int,
) -> list[str]:
    """These options as ``kubetrio server`` arguments (what ``up`` passes on)."""
    args: list[str] = []
    if encryption is not None:
        args += ["--encryption-provider-config", str(encryption.resolve())]
    if policy is not None:
        args += ["--audit-policy-file", str(policy.resolve())]
    if log_path is not None:
        args += ["--audit-log-path", log_path]
    return [
        *args,
        *("--audit-log-maxsize", str(max_size_mb), "--audit-log-maxbackup", str(max_backups)),
    ]


@asynccontextmanager
async def open_encrypted_store(
    url: str,
    config: kv.EncryptionConfig | None,
    *,
    history: kv.HistoryPolicy | None = None,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[kv.Store]:
    """The store at ``url`` (etcd over TLS with ``tls``), encrypting by ``config``,
    keeping ``history``; refused (one line) when the configured keys cannot read what
    is stored."""
    from kubetrio import store as kv

    async with kv.open_store(url, history=history, tls=tls) as store:
        if config is None:
            yield store
            return
        encrypted = kv.EncryptedStore(store, config)
        try:
            await kv.check_readable(encrypted)
        except kv.EncryptionConfigError as exc:
            raise CommandError(str(exc)) from None
        yield encrypted
