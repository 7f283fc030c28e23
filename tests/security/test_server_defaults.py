"""``kubetrio server``'s defaults: Secrets encrypted and mutations audited under the data
directory; bad or wrong key files refused in one line before anything serves."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.kit.servers import running_server, server_command

from .conftest import KUBECTL_DIR, encryption_yaml, key, keyed

PLAINTEXT = "do-not-store-me-in-clear-9931"


def kubectl(tmp_path: Path, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [str(KUBECTL_DIR / "kubectl.1.33"), f"--cache-dir={tmp_path}/cache", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line a failed command printed (and no traceback)."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def failed_start(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        server_command(tmp_path, *args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_server_encrypts_secrets_and_audits_by_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path):
        kubectl(tmp_path, "create", "secret", "generic", "db", f"--from-literal=pw={PLAINTEXT}")
        kubectl(tmp_path, "delete", "secret", "db", "--wait=false")
        kubectl(tmp_path, "create", "secret", "generic", "kept", f"--from-literal=pw={PLAINTEXT}")
        got = json.loads(kubectl(tmp_path, "get", "secret", "kept", "-o", "json"))
        assert base64.b64decode(got["data"]["pw"]).decode() == PLAINTEXT
    config = data / "encryption-config.yaml"
    assert config.stat().st_mode & 0o777 == 0o600
    providers = yaml.safe_load(config.read_text())["resources"][0]["providers"]
    assert list(providers[0]) == ["secretbox"] and providers[1] == {"identity": {}}
    stored = b"".join(p.read_bytes() for p in data.glob("state.db*"))
    assert b"k8s:enc:secretbox:v1:key1:" in stored
    assert PLAINTEXT.encode() not in stored
    assert base64.b64encode(PLAINTEXT.encode()) not in stored
    events = [json.loads(line) for line in (data / "audit.log").read_text().splitlines()]
    # kubectl presents the kubeconfig's admin client certificate.
    secrets = [
        (e["verb"], e["objectRef"].get("name"), e["responseStatus"]["code"], e["user"]["username"])
        for e in events
        if e["objectRef"]["resource"] == "secrets" and e.get("userAgent", "").startswith("kubectl")
    ]
    assert secrets == [
        ("create", "db", 201, "kubernetes-admin"),
        ("delete", "db", 200, "kubernetes-admin"),
        ("create", "kept", 201, "kubernetes-admin"),
    ]
    assert {e["level"] for e in events} == {"Metadata"}
    assert {e["verb"] for e in events} <= {
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    }
    # A restart reads with the same generated key.
    with running_server(tmp_path):
        got = json.loads(kubectl(tmp_path, "get", "secret", "kept", "-o", "json"))
        assert base64.b64decode(got["data"]["pw"]).decode() == PLAINTEXT
    # Another key, without the one that wrote: refused before serving, in one line.
    config.write_text(encryption_yaml(keyed("secretbox", "key1", key(1))))
    line = one_error_line(failed_start(tmp_path))
    assert f"encryption provider config {config}" in line
    assert "/registry/core/secrets/default/kept" in line
    assert 'secretbox key "key1"' in line


def test_missing_or_bad_files_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    line = one_error_line(failed_start(tmp_path, "--encryption-provider-config", str(missing)))
    assert f"encryption provider config {missing}: No such file or directory" in line
    short = tmp_path / "short.yaml"
    short.write_text(encryption_yaml(keyed("aesgcm", "k", key(1, 7))))
    line = one_error_line(failed_start(tmp_path, "--encryption-provider-config", str(short)))
    assert f"{short}: resources[0].providers[0].aesgcm.keys[0].secret" in line
    assert "got 7, expected one of [16, 24, 32]" in line
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]\n")
    line = one_error_line(failed_start(tmp_path, "--audit-policy-file", str(policy)))
    assert f'{policy}: rules[0].level: Unsupported value: "Loud"' in line
    assert not (tmp_path / "data" / "state.db").exists()


def test_up_refuses_bad_files_before_starting_and_forwards_good_ones(tmp_path: Path) -> None:
    from kubetrio.cli._security import audit_log, security_arguments

    bad = tmp_path / "enc.yaml"
    bad.write_text(encryption_yaml("kms: {name: vault}"))
    result = subprocess.run(
        [sys.executable, "-m", "kubetrio", "up", "--data-dir", str(tmp_path / "c"),
         "--encryption-provider-config", str(bad)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert "kubetrio has no KMS provider" in one_error_line(result)
    assert not (tmp_path / "c" / "server.pid").exists()
    policy = tmp_path / "policy.yaml"
    assert security_arguments(None, policy, "-", 10, 2) == [
        "--audit-policy-file", str(policy.resolve()), "--audit-log-path", "-",
        "--audit-log-maxsize", "10", "--audit-log-maxbackup", "2",
    ]  # fmt: skip
    assert audit_log(None, "", tmp_path, max_size_mb=1, max_backups=1) is None  # '' is off
    assert not (tmp_path / "audit.log").exists()
