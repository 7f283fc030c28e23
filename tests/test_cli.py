"""The command line: help everywhere, version, plugins table and JSON."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

import kubetrio
from kubetrio.cli import build_app
from kubetrio.cluster import agent_can_run
from tests.compat.kit import KUBECTL_DIR

runner = CliRunner()
COMMANDS = [
    "version",
    "plugins",
    "server",
    "agent",
    "up",
    "down",
    "status",
    "image",
    "admin",
    "admin list-raw",
    "admin delete-raw",
]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(
        build_app(), [*" ".join(command).split(), "--help"], env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version_reports_core_and_datapath() -> None:
    from kubetrio import _datapath

    result = runner.invoke(build_app(), ["version"])
    assert result.exit_code == 0
    assert f"kubetrio {kubetrio.__version__}" in result.output
    assert f"datapath {_datapath.__version__}" in result.output


def test_plugins_json_lists_built_ins_with_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETRIO_PLUGINS", raising=False)
    monkeypatch.delenv("KUBETRIO_BLOCKED_PLUGINS", raising=False)
    result = runner.invoke(build_app(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert {"auth", "cni_calico", "scheduler", "storage"} <= set(listed)
    assert listed["storage"]["hooks"] == [
        "kubetrio_add_options",
        "kubetrio_configure",
        "kubetrio_register_controllers",
        "kubetrio_register_storage_drivers",
    ]
    # Which provisioner names each driver serves (StorageClasses' `provisioner`).
    assert listed["storage"]["storage_drivers"] == ["kubetrio.io/local", "rancher.io/local-path"]
    assert "storage_drivers" not in listed["scheduler"]
    assert listed["cni_calico"]["options"] == ["--network-mode", "--pod-cidr"]
    assert listed["storage"]["error"] == ""


def test_plugins_block_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETRIO_PLUGINS", raising=False)
    result = runner.invoke(build_app(), ["plugins", "--json", "--block", "auth"])
    assert "auth" not in {p["name"] for p in json.loads(result.output)}


def _unwrapped(output: str) -> str:
    """Rich's error box as one line of words (it wraps long messages inside borders)."""
    return " ".join(output.replace("│", " ").split())


def test_server_refuses_a_bad_pool_or_mode(tmp_path: Path) -> None:
    for args, message in (
        (["--lb-pool", "nonsense"], "--lb-pool"),
        (["--network-mode", "x"], "'x'"),
    ):
        result = runner.invoke(build_app(), ["server", "--data-dir", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
        assert message in _unwrapped(result.output)


def test_agent_needs_a_server(tmp_path: Path) -> None:
    result = runner.invoke(build_app(), ["agent", "--token", "t"])
    assert result.exit_code == 2
    assert "--server" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "gre"], "'gre' is not one of vxlan, ipip, bgp"),
        (["--nodes", "3", "--underlay", "10.99.0.0/30"], "no room for 3 nodes"),
        (["--nodes", "0"], "--nodes"),
        (["--lb-pool", "10.0.0.9-10.0.0.1"], "runs backwards"),
    ],
)
def test_up_refuses_bad_options_before_starting_anything(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(build_app(), ["up", "--data-dir", str(tmp_path / "c"), *args])
    assert result.exit_code == 2, result.output
    assert message in _unwrapped(result.output)
    assert not (tmp_path / "c" / "server.pid").exists()


def _check_https_only_with_the_admin_certificate(
    tmp_path: Path, env: dict[str, str], port: str
) -> None:
    """The API is HTTPS only; the kubeconfig trusts the cluster CA and presents the admin's
    client certificate (system:masters), not a token; the keys are private."""
    plain = httpx.get(f"http://127.0.0.1:{port}/api")
    assert plain.status_code == 400
    assert plain.text == "Client sent an HTTP request to an HTTPS server.\n"
    config = yaml.safe_load((tmp_path / ".kube" / "config").read_text())
    [cluster] = config["clusters"]
    assert cluster["cluster"]["server"] == f"https://127.0.0.1:{port}"
    assert cluster["cluster"]["certificate-authority-data"]
    [user] = config["users"]
    assert set(user["user"]) == {"client-certificate-data", "client-key-data"}
    pki = tmp_path / ".local/share/kubetrio/clusters/kubetrio/data/pki"
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    keys = sorted(pki.glob("*.key"))
    assert {k.name for k in keys} >= {"ca.key", "client-ca.key", "apiserver.key", "admin.key"}
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    kubectl = KUBECTL_DIR / "kubectl.1.33"
    if kubectl.exists():
        whoami = subprocess.run(
            [str(kubectl), "auth", "whoami", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert whoami.returncode == 0, whoami.stderr
        info = json.loads(whoami.stdout)["status"]["userInfo"]
        assert info["username"] == "kubernetes-admin"
        assert "system:masters" in info["groups"]


def test_up_and_down_run_a_background_cluster(tmp_path: Path) -> None:
    """`kubetrio up` starts a server that kubectl can use; `down` stops it."""
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("KUBETRIO_PLUGINS", None)
    kubetrio = [sys.executable, "-m", "kubetrio"]
    port = "16702"
    try:
        up = subprocess.run(
            [*kubetrio, "up", "--port", port, "--registry-port", "15702",
             "--proxy-mode", "maglev"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert "is up at https://127.0.0.1:16702" in up.stdout
        again = subprocess.run(
            [*kubetrio, "up", "--port", port, "--registry-port", "15702"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "already running" in again.stdout
        namespaces = subprocess.run(
            ["kubectl", "get", "ns", "-o", "name"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "namespace/default" in namespaces.stdout, namespaces.stderr
        _check_https_only_with_the_admin_certificate(tmp_path, env, port)
        if shutil.which("docker-registry"):  # the local registry holds busybox
            tags = httpx.get("http://127.0.0.1:15702/v2/library/busybox/tags/list").json()
            assert tags["tags"] == ["latest"]
        home = tmp_path / ".local/share/kubetrio/clusters/kubetrio"
        status = subprocess.run(
            [*kubetrio, "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "API server https://127.0.0.1:16702" in status.stdout
        assert f"log: {home / 'server.log'}\n" in status.stdout
        assert "plugins: " in status.stdout
        assert "open files: " in status.stdout
        if agent_can_run() is None:  # the node's proxy runs --proxy-mode, says so, shows it
            deadline = time.monotonic() + 60
            while ", proxy mode maglev" not in status.stdout and time.monotonic() < deadline:
                time.sleep(0.5)
                status = subprocess.run(
                    [*kubetrio, "status"], env=env, capture_output=True, text=True, timeout=60
                )
            assert ", proxy mode maglev" in status.stdout, status.stdout
            server_log = (home / "server.log").read_text()
            assert "maglev mode (a Service may choose" in server_log
        # Only the owner reads the data directory, the database and the admin token.
        data = home / "data"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for secret in ("state.db", "state.db-wal", "state.db-shm", "admin-token"):
            assert stat.S_IMODE((data / secret).stat().st_mode) == 0o600, secret
        # The log file has plain one-line records (time, level, logger, message), not a
        # terminal's rich columns.
        log_lines = (home / "server.log").read_text().splitlines()
        assert any(" INFO kubetrio." in line for line in log_lines), log_lines[:5]
        assert any("open-file limit" in line for line in log_lines), log_lines[:5]
        assert any("connections: at most" in line for line in log_lines), log_lines[:5]
        assert not any("│" in line or "╭" in line for line in log_lines)
    finally:
        down = subprocess.run(
            [*kubetrio, "down", "--delete-data"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert "stopped" in down.stdout, down.stdout + down.stderr
    assert not (tmp_path / ".local/share/kubetrio/clusters/kubetrio").exists()
    gone = subprocess.run([*kubetrio, "status"], env=env, capture_output=True, text=True)
    assert gone.returncode == 1 and "is not running" in gone.stdout


def _server(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubetrio server`` (control plane only) with ``args``; its output, as text."""
    return subprocess.run(
        [sys.executable, "-m", "kubetrio", "server", "--no-agent", "--data-dir",
         str(tmp_path / "data"), "--kubeconfig", str(tmp_path / "kubeconfig"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line a failed command printed (and nothing like a traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_port_in_use_is_one_sentence_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        line = _one_error_line(_server(tmp_path, "--port", port))
        assert f"port {port} on 127.0.0.1 is in use" in line and "--port" in line
        debug = subprocess.run(
            [sys.executable, "-m", "kubetrio", "--debug", "server", "--no-agent",
             "--port", port, "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert debug.returncode == 1
        assert "CommandError" in debug.stderr and "Traceback" in debug.stderr


def test_unreachable_etcd_and_unwritable_kubeconfig_are_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as nobody:  # a port nothing listens on
        nobody.bind(("127.0.0.1", 0))
        closed = nobody.getsockname()[1]
    line = _one_error_line(
        _server(tmp_path, "--port", "0", "--store", f"etcd://127.0.0.1:{closed}")
    )
    assert "the store does not answer" in line and "--store" in line
    (tmp_path / "a-file").write_text("not a folder")
    line = _one_error_line(
        _server(tmp_path, "--port", "0", "--kubeconfig", str(tmp_path / "a-file" / "kc"))
    )
    assert f"cannot write or read {tmp_path / 'a-file'}" in line
    (tmp_path / "kc").write_text("- a list\n")
    line = _one_error_line(_server(tmp_path, "--port", "0", "--kubeconfig", str(tmp_path / "kc")))
    assert f"{tmp_path / 'kc'} is not a kubeconfig" in line


def test_bad_port_and_store_url_are_refused_before_starting(tmp_path: Path) -> None:
    bad_port = _server(tmp_path, "--port", "70000")
    assert bad_port.returncode == 2 and "70000 is not a TCP port" in _unwrapped(bad_port.stderr)
    bad_store = _server(tmp_path, "--port", "0", "--store", "foo://x")
    assert bad_store.returncode == 2
    assert "'foo://x' is not sqlite:///path/state.db or etcd://" in _unwrapped(bad_store.stderr)
    assert not (tmp_path / "data" / "state.db").exists()


def _data_dir_with_keys(tmp_path: Path) -> Path:
    """A stopped server's data directory whose store holds a small and a huge value."""
    import trio

    from kubetrio.store import open_store

    data = tmp_path / "data"
    data.mkdir()

    async def fill() -> None:
        async with open_store(f"sqlite://{data}/state.db", wal_preallocate=0) as kv:
            await kv.create("/registry/core/configmaps/default/small", b'{"a":1}')
            await kv.create(HUGE_KEY, b"x" * 300_000)

    trio.run(fill)
    return data


HUGE_KEY = "/registry/core/configmaps/default/huge"


def _admin(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetrio", "admin", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_admin_lists_and_deletes_raw_keys_of_a_stopped_server(tmp_path: Path) -> None:
    data = _data_dir_with_keys(tmp_path)
    listed = _admin(data, "list-raw", "/registry/core/")
    assert listed.returncode == 0, listed.stderr
    assert [line.split() for line in listed.stdout.splitlines()] == [
        ["300000", HUGE_KEY],
        ["7", "/registry/core/configmaps/default/small"],
    ]
    deleted = _admin(data, "delete-raw", HUGE_KEY)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted {HUGE_KEY} (300000 bytes)" in deleted.stdout
    listed = _admin(data, "list-raw")
    assert HUGE_KEY not in listed.stdout and "default/small" in listed.stdout
    line = _one_error_line(_admin(data, "delete-raw", HUGE_KEY))
    assert f"the store has no key '{HUGE_KEY}'" in line and "list-raw" in line


def test_admin_refuses_while_a_server_holds_the_data_dir(tmp_path: Path) -> None:
    from kubetrio.cli._admin import data_dir_lock

    data = _data_dir_with_keys(tmp_path)
    with data_dir_lock(data, what="held by the test"):
        line = _one_error_line(_admin(data, "delete-raw", HUGE_KEY))
        assert f"a kubetrio server (pid {os.getpid()}) is running on {data}: stop it" in line
        # The server takes the same lock: a second one on this directory is refused too.
        line = _one_error_line(_server(tmp_path, "--port", "0"))
        assert f"(pid {os.getpid()}) is running on {data}" in line
    assert HUGE_KEY in _admin(data, "list-raw").stdout


@pytest.mark.root
def test_image_build_pushes_to_a_registry(tmp_path: Path) -> None:
    """`kubetrio image build` makes a busybox image a registry then serves."""
    import httpx

    from kubetrio.images import local_registry

    context = tmp_path / "site"
    context.mkdir()
    (context / "index.html").write_text("hello")
    with local_registry(tmp_path / "registry") as host:
        result = runner.invoke(
            build_app(),
            [
                "image",
                "build",
                str(context),
                "--tag",
                f"{host}/site:1",
                "--cmd",
                "httpd",
                "--cmd",
                "-f",
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"pushed {host}/site:1" in result.output
        tags = httpx.get(f"http://{host}/v2/site/tags/list").json()
    assert tags["tags"] == ["1"]


def test_an_old_data_dir_is_made_private_on_start(tmp_path: Path) -> None:
    """A data directory of an older version (0755, files 0644) is tightened by the server."""
    from kubetrio.cli._serve import admin_token, secure_data_dir

    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    for name in ("admin-token", "state.db", "state.db-wal", "service-account.key"):
        (data / name).write_text("x\n")
        os.chmod(data / name, 0o644)
    os.chmod(data, 0o755)
    secure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("admin-token", "state.db", "state.db-wal", "service-account.key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    fresh = tmp_path / "fresh" / "data"
    secure_data_dir(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert admin_token(fresh) and stat.S_IMODE((fresh / "admin-token").stat().st_mode) == 0o600
