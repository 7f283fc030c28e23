"""``kubetrio backup`` of a running server, ``kubetrio migrate`` of its stopped store, then
``kubetrio restore`` into a new data directory: kubectl sees every object of the backup
(Secrets still decrypt), nothing written after it, and the official client's watch from
an old resourceVersion gets 410 Gone — the signal that makes informers relist."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.kit.servers import running_server

KUBECTL = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent / "kubectl.1.33"

pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="needs kubectl.1.33 beside kubectl")


def kubectl(home: Path, *args: str) -> str:
    result = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={home / 'kubeconfig'}", f"--cache-dir={home}/cache", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def kubetrio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetrio", *args], capture_output=True, text=True, timeout=120
    )


def core_api(home: Path) -> client.CoreV1Api:
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(home / "kubeconfig"), client_configuration=configuration
    )
    return client.CoreV1Api(client.ApiClient(configuration))


def test_backup_of_a_running_server_restores_into_a_new_cluster(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    backup = tmp_path / "backups" / "cluster.db"
    with running_server(old):
        kubectl(old, "create", "namespace", "shop")
        kubectl(old, "-n", "shop", "create", "configmap", "prices", "--from-literal=tea=3")
        kubectl(old, "-n", "shop", "patch", "configmap", "prices", "-p", '{"data":{"tea":"4"}}')
        kubectl(old, "-n", "shop", "create", "secret", "generic", "till", "--from-literal=pin=2718")
        done = kubetrio("backup", str(backup), "--data-dir", str(old / "data"))
        assert done.returncode == 0, done.stderr
        assert f"to {backup}" in done.stdout and "encryption-config.yaml" in done.stdout
        kubectl(old, "-n", "shop", "create", "configmap", "after-the-backup")
        old_version = core_api(old).list_namespaced_config_map("shop").metadata.resource_version

    # The stopped server's live state moves to another store as it is.
    moved = tmp_path / "moved" / "state.db"
    migrated = kubetrio("migrate", "--from", f"sqlite://{old / 'data' / 'state.db'}", "--to",
                        f"sqlite://{moved}")  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    keys = kubetrio("admin", "list-raw", "/registry/core/configmaps/shop/", "--store",
                    f"sqlite://{moved}").stdout  # fmt: skip
    assert "shop/prices" in keys and "shop/after-the-backup" in keys
    refused = kubetrio("migrate", "--from", f"sqlite://{old / 'data' / 'state.db'}", "--to",
                       f"sqlite://{moved}")  # fmt: skip
    assert refused.returncode == 1 and "the target store is not empty" in refused.stderr

    again = kubetrio("backup", str(backup), "--data-dir", str(old / "data"))
    assert again.returncode == 1 and "already exists" in again.stderr

    restored = kubetrio("restore", str(backup), "--data-dir", str(new / "data"))
    assert restored.returncode == 0, restored.stderr
    assert f"into {new / 'data' / 'state.db'}" in restored.stdout
    twice = kubetrio("restore", str(backup), "--data-dir", str(new / "data"))
    assert twice.returncode == 1 and "exists: restore into a new --data-dir" in twice.stderr
    assert "Traceback" not in twice.stderr
    # Secrets were sealed with the old server's key: the key file goes with the backup.
    shutil.copy(old / "data" / "encryption-config.yaml", new / "data" / "encryption-config.yaml")

    with running_server(new):
        names = kubectl(new, "-n", "shop", "get", "configmaps", "-o", "name").split()
        assert "configmap/prices" in names and "configmap/after-the-backup" not in names
        prices = json.loads(kubectl(new, "-n", "shop", "get", "configmap", "prices", "-o", "json"))
        assert prices["data"] == {"tea": "4"}
        till = json.loads(kubectl(new, "-n", "shop", "get", "secret", "till", "-o", "json"))
        assert base64.b64decode(till["data"]["pin"]) == b"2718"
        # The old cluster's resourceVersions are in the past of the new epoch: a watch
        # from one is told 410 Gone, as after an etcd restore with --bump-revision.
        api = core_api(new)
        listed = api.list_namespaced_config_map("shop").metadata.resource_version
        assert int(str(listed)) > int(str(old_version))
        with pytest.raises(ApiException) as gone:
            for event in watch.Watch().stream(
                api.list_namespaced_config_map,
                "shop",
                resource_version=old_version,
                timeout_seconds=5,
            ):
                if event["type"] == "ERROR":  # the client may deliver it as an event
                    raise ApiException(status=event["raw_object"]["code"])
        assert gone.value.status == 410
        # Writes go on in the new epoch.
        kubectl(new, "-n", "shop", "create", "configmap", "after-the-restore")
    assert yaml.safe_load((new / "kubeconfig").read_text())["clusters"]


def test_the_server_backs_up_on_a_schedule_and_keeps_the_newest(tmp_path: Path) -> None:
    from tests.kit import wait_until

    backups = tmp_path / "data" / "backups"
    log = tmp_path / "server.log"
    with running_server(tmp_path, "--backup-schedule", "1s", "--backup-retention", "2"):
        kubectl(tmp_path, "create", "configmap", "scheduled", "--from-literal=a=1")
        wait_until(
            lambda: log.read_text().count("scheduled backup:") >= 4,
            timeout=60,
            what="four scheduled backups",
        )
        kept = sorted(backups.glob("kubetrio-*.db"))
        assert len(kept) == 2, kept
    assert log.read_text().count("removed (--backup-retention 2)") >= 2
    restored = kubetrio("restore", str(kept[-1]), "--data-dir", str(tmp_path / "restored"))
    assert restored.returncode == 0, restored.stderr
    keys = kubetrio("admin", "list-raw", "/registry/core/configmaps/default/", "--data-dir",
                    str(tmp_path / "restored")).stdout  # fmt: skip
    assert "default/scheduled" in keys


def test_a_bad_schedule_is_refused_in_one_line(tmp_path: Path) -> None:
    result = kubetrio("server", "--no-agent", "--data-dir", str(tmp_path), "--backup-schedule",
                      "soon")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: --backup-schedule 'soon': use a duration such as" in result.stderr
