"""Interactive streams as real clients drive them: exec, attach, run -i, cp, logs -f, port-forward.

The official Python client (WebSocket v5, and v4 through websocket-client as kr8s speaks
it) and kubectl 1.27 (SPDY) and 1.33 (WebSocket v5; SPDY tunnelled in WebSocket for
port-forward) against busybox pods on the suite's runc node.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compat.kit import KUBECTL_DIR, CompatCluster, free_port, ssl_context
from tests.kit import wait_until

VERSIONS = ("1.27", "1.33")

SERVER = "echo hello-from-pod > /tmp/index.html; httpd -p 8080 -h /tmp; exec nc -ll -p 9000 -e cat"
"""A pod serving HTTP on 8080 and a raw TCP echo on 9000 (one process per connection)."""


def pod_manifest(name: str, command: str, **container: Any) -> dict[str, Any]:
    """A busybox pod running ``sh -c command``; ``container`` adds container fields."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", command], **container}
            ],
        },
    }


def start_pod(
    cluster: CompatCluster, namespace: str, name: str, command: str, **container: Any
) -> None:
    """Create the pod and wait until it runs."""
    body = json.dumps(pod_manifest(name, command, **container))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)
    wait_until(
        lambda: phase(cluster, namespace, name) == "Running",
        timeout=60,
        what=f"pod {name} to run",
    )


def phase(cluster: CompatCluster, namespace: str, name: str) -> str:
    """The pod's phase (empty while unknown)."""
    out = cluster.kubectl(
        "get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}", check=False
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def core(cluster: CompatCluster) -> Any:
    """The official client's CoreV1Api on the suite's kubeconfig."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return client.CoreV1Api(api_client)


def exec_stream(core: Any, namespace: str, pod: str, command: list[str], **options: Any) -> Any:
    """An interactive exec as the client's docs show it (``_preload_content=False``)."""
    from kubernetes.stream import stream

    settings: dict[str, Any] = {
        "stdin": True,
        "stdout": True,
        "stderr": True,
        "tty": False,
        "_preload_content": False,
    }
    settings.update(options)
    return stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=command, **settings)


def read_until(resp: Any, done: Callable[[str], bool], *, timeout: float = 30) -> str:
    """Stdout gathered (``update``/``read_stdout``) until ``done`` holds; fails on timeout.

    ``read_stdout`` is given ``timeout=0``: its default (None) waits for stdout without
    end when the update brought none (a resize echo on another channel, or nothing yet),
    which hung this module for 10 minutes in CI.
    """
    seen = ""
    deadline = time.monotonic() + timeout
    while not done(seen):
        if time.monotonic() > deadline or not resp.is_open():
            raise AssertionError(f"stdout so far: {seen!r}")
        resp.update(timeout=1)
        seen += resp.read_stdout(timeout=0) or ""
    return seen


# --- the Python client's exec ---------------------------------------------------------------


def test_python_exec_stdin_lines_come_back(
    cluster: CompatCluster, namespace: str, core: Any
) -> None:
    start_pod(cluster, namespace, "box", "sleep 3600")
    resp = exec_stream(core, namespace, "box", ["cat"])
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"
        resp.write_stdin("first line\n")
        assert resp.readline_stdout(timeout=20) == "first line"
        resp.write_stdin(b"second line\n")  # bytes go as a binary message
        assert resp.readline_stdout(timeout=20) == "second line"
        # Closing stdin (v5) is EOF for cat: it exits 0 and the connection ends.
        resp.close_channel(0)
        resp.run_forever(timeout=30)
        assert not resp.is_open()
        assert resp.returncode == 0
    finally:
        resp.close()


def test_python_exec_close_stdin_then_read_rest_and_exit_code(
    cluster: CompatCluster, namespace: str, core: Any
) -> None:
    start_pod(cluster, namespace, "box", "sleep 3600")
    resp = exec_stream(core, namespace, "box", ["sh", "-c", "wc -c; echo to-stderr >&2; exit 7"])
    try:
        resp.write_stdin("x" * 100_000)
        resp.close_channel(0)
        resp.run_forever(timeout=30)
        assert not resp.is_open()
        assert resp.read_stdout().strip() == "100000"
        assert resp.read_stderr() == "to-stderr\n"
        status = yaml.safe_load(resp.read_channel(3))
        assert status["status"] == "Failure"
        assert status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
        assert status["message"].startswith("command terminated with non-zero exit code: ")
        assert status["message"].endswith("exit code 7")
    finally:
        resp.close()
    resp = exec_stream(core, namespace, "box", ["sh", "-c", "exit 42"], stdin=False)
    resp.run_forever(timeout=30)
    assert resp.returncode == 42


def test_python_exec_tty_and_resize(cluster: CompatCluster, namespace: str, core: Any) -> None:
    start_pod(cluster, namespace, "box", "sleep 3600")
    script = "tty; [ -t 0 ] && echo stdin-is-a-tty; stty size; while read x; do stty size; done"
    resp = exec_stream(core, namespace, "box", ["sh", "-c", script], tty=True)
    try:
        resp.write_channel(4, json.dumps({"Width": 100, "Height": 30}))
        seen = read_until(resp, lambda s: "30 100" in s)
        assert "/dev/pts/" in seen and "stdin-is-a-tty" in seen
        # A resize while it runs: each line asks the size again until the new one shows.
        resp.write_channel(4, json.dumps({"Width": 120, "Height": 40}))
        deadline = time.monotonic() + 30
        while "40 120" not in seen:
            assert time.monotonic() < deadline, seen
            resp.write_stdin("again\n")
            resp.update(timeout=1)
            seen += resp.read_stdout(timeout=0) or ""
        assert "\r\n" in seen  # a terminal's line discipline, not a pipe
    finally:
        resp.close()


def test_python_exec_binary_and_large_output(
    cluster: CompatCluster, namespace: str, core: Any
) -> None:
    start_pod(cluster, namespace, "box", "sleep 3600")
    every_byte = 'i=0; while [ $i -lt 256 ]; do printf "\\\\$(printf %o $i)"; i=$((i+1)); done'
    resp = exec_stream(core, namespace, "box", ["sh", "-c", every_byte], stdin=False, binary=True)
    resp.run_forever(timeout=60)
    assert resp.read_stdout() == bytes(range(256))
    assert resp.returncode == 0
    # A few MB of random bytes arrive intact.
    made = exec_stream(
        core,
        namespace,
        "box",
        ["sh", "-c", "head -c 3000000 /dev/urandom > /tmp/blob; sha256sum /tmp/blob"],
        stdin=False,
    )
    made.run_forever(timeout=60)
    digest = made.read_stdout().split()[0]
    resp = exec_stream(core, namespace, "box", ["cat", "/tmp/blob"], stdin=False, binary=True)
    resp.run_forever(timeout=120)
    data = resp.read_stdout()
    assert len(data) == 3_000_000
    assert hashlib.sha256(data).hexdigest() == digest
    # Binary stdin round trip.
    resp = exec_stream(core, namespace, "box", ["cat"], binary=True)
    try:
        payload = bytes(range(256)) * 64
        resp.write_stdin(payload)
        resp.close_channel(0)
        resp.run_forever(timeout=60)
        assert resp.read_stdout() == payload
    finally:
        resp.close()


def test_python_client_29_to_36_exec(cluster: CompatCluster, namespace: str, core: Any) -> None:
    """The client's releases 29-36 (pyproject allows them) put ``stdin=True`` in the URL.

    They hand the query parameters to ``get_websocket_url`` as Python values, so the
    booleans arrive capitalised, and they offer only ``v4.channel.k8s.io``; the same
    ``WSClient`` then talks. apimachinery reads ``True`` as true: stdin and the terminal
    must be there.
    """
    from kubernetes.stream.ws_client import WSClient, get_websocket_url

    start_pod(cluster, namespace, "box", "sleep 3600")
    configuration = core.api_client.configuration
    headers = {"sec-websocket-protocol": "v4.channel.k8s.io"}
    if configuration.api_key.get("authorization"):
        headers["authorization"] = configuration.api_key["authorization"]
    base = f"{configuration.host}/api/v1/namespaces/{namespace}/pods/box/exec"

    def open_exec(command: list[str], tty: bool) -> Any:
        query = [("command", command), ("stderr", True), ("stdin", True), ("stdout", True)]
        url = get_websocket_url(base, [*query, ("tty", tty)])
        assert "stdin=True" in url
        return WSClient(configuration, url, headers, capture_all=True)

    resp = open_exec(["cat"], tty=False)
    try:
        resp.write_stdin("from an older client\n")
        assert resp.readline_stdout(timeout=20) == "from an older client"
    finally:
        resp.close()
    resp = open_exec(["sh", "-c", "[ -t 0 ] && echo has-a-terminal"], tty=True)
    try:
        resp.run_forever(timeout=30)
        assert "has-a-terminal" in resp.read_all()
    finally:
        resp.close()


def test_python_client_29_to_36_log_follow(
    cluster: CompatCluster, namespace: str, core: Any
) -> None:
    """Their ``read_namespaced_pod_log(follow=True)`` sends ``follow=True``: still a follow."""
    start_pod(cluster, namespace, "waiter", WAITER)
    configuration = core.api_client.configuration
    headers = {}
    if configuration.api_key.get("authorization"):
        headers["Authorization"] = configuration.api_key["authorization"]
    url = f"{configuration.host}/api/v1/namespaces/{namespace}/pods/waiter/log?follow=True"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30, context=ssl_context(configuration)) as answer:
        assert answer.readline() == b"first\n"  # streamed while the container still runs
        cluster.kubectl("exec", "waiter", "-n", namespace, "--", "touch", "/tmp/go")
        assert answer.read() == b"second\n"


def test_websocket_v4_stdin(cluster: CompatCluster, namespace: str, core: Any) -> None:
    """v4 (kr8s offers only v4): stdin messages reach the process; no close signal exists."""
    import websocket

    start_pod(cluster, namespace, "box", "sleep 3600")
    url = cluster.server.replace("https://", "wss://") + (
        f"/api/v1/namespaces/{namespace}/pods/box/exec"
        "?command=cat&stdin=true&stdout=true&stderr=true"
    )
    configuration = core.api_client.configuration
    ws = websocket.create_connection(
        url,
        subprotocols=["v4.channel.k8s.io"],
        timeout=30,
        sslopt={"context": ssl_context(configuration)},
    )
    try:
        assert ws.getsubprotocol() == "v4.channel.k8s.io"
        ws.send_binary(b"\x00ping over v4\n")
        got = b""
        while b"ping over v4\n" not in got:
            message = ws.recv()
            assert isinstance(message, bytes) and message[:1] == b"\x01", message
            got += message[1:]
    finally:
        ws.close()


# --- attach and the container's stdin/stdinOnce/tty -----------------------------------------


def attach_stream(core: Any, namespace: str, pod: str, **options: Any) -> Any:
    """The Python client's ``pods/attach``."""
    from kubernetes.stream import stream

    settings: dict[str, Any] = {
        "stdin": True,
        "stdout": True,
        "stderr": True,
        "tty": False,
        "_preload_content": False,
    }
    settings.update(options)
    return stream(core.connect_get_namespaced_pod_attach, pod, namespace, **settings)


def test_attach_reaches_main_process_stdin_across_sessions(
    cluster: CompatCluster, namespace: str, core: Any
) -> None:
    """``stdin: true`` without stdinOnce: stdin stays open after a session detaches."""
    loop = 'while read l; do echo "got $l"; echo "err $l" >&2; [ "$l" = quit ] && exit 0; done'
    start_pod(cluster, namespace, "talker", loop, stdin=True)
    first = attach_stream(core, namespace, "talker")
    try:
        first.write_stdin("one\n")
        assert first.readline_stdout(timeout=20) == "got one"
        assert first.readline_stderr(timeout=20) == "err one"
    finally:
        first.close()  # detaching does not end the process's input
    second = attach_stream(core, namespace, "talker")
    try:
        second.write_stdin("two\n")
        assert second.readline_stdout(timeout=20) == "got two"
        second.write_stdin("quit\n")
        second.run_forever(timeout=30)
        assert not second.is_open()
        assert "got quit" in second.read_all()
    finally:
        second.close()
    wait_until(lambda: phase(cluster, namespace, "talker") == "Succeeded", timeout=30)


def test_attach_tty_container(cluster: CompatCluster, namespace: str, core: Any) -> None:
    """``tty: true``: the main process has a terminal (TERM=xterm); attach resizes it."""
    script = 'while read l; do [ -t 0 ] && echo "tty $l $TERM"; stty size; done'
    start_pod(cluster, namespace, "term", script, stdin=True, tty=True)
    resp = attach_stream(core, namespace, "term", tty=True, stderr=False)
    try:
        resp.write_channel(4, json.dumps({"Width": 77, "Height": 22}))
        seen = ""
        deadline = time.monotonic() + 30
        while "22 77" not in seen:
            assert time.monotonic() < deadline, seen
            resp.write_stdin("hi\n")
            resp.update(timeout=1)
            seen += resp.read_stdout(timeout=0) or ""
        assert "tty hi xterm" in seen
    finally:
        resp.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_attach_tty(cluster: CompatCluster, namespace: str, version: str) -> None:
    """``kubectl attach -it`` in a terminal (``script``): keys in, the terminal's size out."""
    script = 'while read l; do echo "got:$l"; stty size; [ "$l" = quit ] && exit 0; done'
    start_pod(cluster, namespace, "term", script, stdin=True, tty=True)
    kubectl = (
        f"stty cols 91 rows 17; {KUBECTL_DIR}/kubectl.{version} --kubeconfig "
        f"{cluster.kubeconfig} attach -it term -n {namespace}"
    )
    process = subprocess.Popen(
        ["script", "-qec", kubectl, "/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cluster.env,
    )
    assert process.stdin is not None and process.stdout is not None
    output = bytearray()
    reader = threading.Thread(target=copy_into, args=(process.stdout, output))
    reader.start()
    try:
        # Lines until the size kubectl sent shows (it may reach the terminal after a line).
        deadline = time.monotonic() + 60
        try:
            while b"17 91" not in output:
                assert time.monotonic() < deadline, bytes(output)
                process.stdin.write(b"line\r")
                process.stdin.flush()
                time.sleep(0.5)
            process.stdin.write(b"quit\r")
            process.stdin.flush()
        except BrokenPipeError:
            process.wait(timeout=10)
            reader.join(timeout=10)
            logs = cluster.kubectl("logs", "term", "-n", namespace, check=False).stdout
            raise AssertionError(
                f"kubectl ended early ({process.returncode}): {bytes(output)!r}; pod "
                f"{phase(cluster, namespace, 'term')}, log {logs!r}"
            ) from None
        assert process.wait(timeout=60) == 0, bytes(output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
    assert b"got:quit" in output


def copy_into(stream: Any, output: bytearray) -> None:
    """Append a binary stream's bytes to ``output`` as they come (a reader thread)."""
    while chunk := stream.read1(65536):
        output.extend(chunk)


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_attach_stdin_once(cluster: CompatCluster, namespace: str, version: str) -> None:
    """``stdinOnce``: the client's end of input is the process's EOF; attach then ends."""
    start_pod(cluster, namespace, "once", "cat; echo eof-seen", stdin=True, stdinOnce=True)
    done = cluster.kubectl(
        "attach", "-i", "once", "-n", namespace, version=version, input="piped text\n"
    )
    assert "piped text\neof-seen\n" in done.stdout, done
    wait_until(lambda: phase(cluster, namespace, "once") == "Succeeded", timeout=30)


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_run_interactive_rm(cluster: CompatCluster, namespace: str, version: str) -> None:
    name = f"run-{version.replace('.', '')}"
    done = cluster.kubectl(
        "run",
        "-i",
        "--rm",
        "--restart=Never",
        "--image=busybox",
        "-n",
        namespace,
        name,
        "--",
        "sh",
        "-c",
        "read x; echo got $x",
        version=version,
        input="hello\n",
        timeout=120,
    )
    assert done.returncode == 0, done
    assert "got hello" in done.stdout, done
    gone = cluster.kubectl("get", "pod", name, "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone


# --- kubectl exec, cp, logs -f ---------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_exec_stdin(cluster: CompatCluster, namespace: str, version: str) -> None:
    start_pod(cluster, namespace, "box", "sleep 3600")
    text = "".join(f"line {i}\n" for i in range(20000))
    done = cluster.kubectl(
        "exec", "-i", "box", "-n", namespace, "--", "cat", version=version, input=text
    )
    assert done.stdout == text
    done = cluster.kubectl(
        "exec", "-i", "box", "-n", namespace, "--", "wc", "-c", version=version, input=text
    )
    assert done.stdout.strip() == str(len(text))
    done = cluster.kubectl(
        "exec", "box", "-n", namespace, "--", "sh", "-c", "exit 9", version=version, check=False
    )
    assert done.returncode == 9


def sha256_tree(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_cp_both_ways(
    cluster: CompatCluster, namespace: str, version: str, tmp_path: Path
) -> None:
    start_pod(cluster, namespace, "box", "sleep 3600")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(1_500_000) + bytes(range(256)))
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(os.urandom(70_000))
    (tree / "sub" / "b.txt").write_text("nested\n")
    cluster.kubectl("cp", str(blob), f"{namespace}/box:/tmp/blob.bin", version=version)
    remote = cluster.kubectl("exec", "box", "-n", namespace, "--", "sha256sum", "/tmp/blob.bin")
    assert remote.stdout.split()[0] == hashlib.sha256(blob.read_bytes()).hexdigest()
    back = tmp_path / "back.bin"
    cluster.kubectl("cp", f"{namespace}/box:/tmp/blob.bin", str(back), version=version)
    assert back.read_bytes() == blob.read_bytes()
    cluster.kubectl("cp", str(tree), f"{namespace}/box:/tmp/tree", version=version)
    listing = cluster.kubectl(
        "exec", "box", "-n", namespace, "--", "find", "/tmp/tree", "-type", "f"
    )
    assert sorted(listing.stdout.split()) == ["/tmp/tree/a.bin", "/tmp/tree/sub/b.txt"]
    tree_back = tmp_path / "tree-back"
    cluster.kubectl("cp", f"{namespace}/box:/tmp/tree", str(tree_back), version=version)
    assert sha256_tree(tree_back) == sha256_tree(tree)


WAITER = "echo first; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo second; exit 0"
"""Prints a line, waits to be told (a file) before the next, then exits."""


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_logs_follow(cluster: CompatCluster, namespace: str, version: str) -> None:
    start_pod(cluster, namespace, "waiter", WAITER)
    command = [
        str(KUBECTL_DIR / f"kubectl.{version}"),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "logs",
        "-f",
        "waiter",
        "-n",
        namespace,
    ]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=cluster.env)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "first\n"  # while the container still runs
        cluster.kubectl("exec", "waiter", "-n", namespace, "--", "touch", "/tmp/go")
        assert follower.stdout.readline() == "second\n"
        assert follower.wait(timeout=60) == 0  # the container exited: the follow ends
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_python_logs_follow(cluster: CompatCluster, namespace: str, core: Any) -> None:
    """``watch.Watch().stream(read_namespaced_pod_log)`` (it sends ``follow=True``)."""
    from kubernetes import watch

    start_pod(cluster, namespace, "waiter", WAITER)
    lines = watch.Watch().stream(
        core.read_namespaced_pod_log, name="waiter", namespace=namespace, _request_timeout=60
    )
    assert next(lines) == "first"  # streamed while the container still runs
    cluster.kubectl("exec", "waiter", "-n", namespace, "--", "touch", "/tmp/go")
    assert list(lines) == ["second"]  # and the stream ends with the container


# --- port-forward -------------------------------------------------------------------------


def echo_round_trip(port: int, payload: bytes) -> bytes:
    """Send ``payload`` over a fresh TCP connection, half-close, read everything back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def http_get(port: int) -> bytes:
    """A plain HTTP/1.0 GET of ``/``; the whole answer."""
    return echo_round_trip(port, b"GET /index.html HTTP/1.0\r\n\r\n")


def concurrently(calls: list[Callable[[], bytes]]) -> list[bytes]:
    """Run the calls in threads at once; their results in order."""
    results: list[bytes | BaseException] = [b""] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, bytes)]


@pytest.fixture
def kubectl_forward(
    cluster: CompatCluster, namespace: str
) -> Iterator[Callable[[str, list[str]], subprocess.Popen[str]]]:
    """Start ``kubectl port-forward`` processes; stopped afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(version: str, mappings: list[str]) -> subprocess.Popen[str]:
        command = [
            str(KUBECTL_DIR / f"kubectl.{version}"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "port-forward",
            "-n",
            namespace,
            "pod/server",
            *mappings,
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cluster.env
        )
        started.append(process)
        assert process.stdout is not None
        for _ in mappings:  # "Forwarding from 127.0.0.1:X -> Y" once per port
            assert "Forwarding from" in process.stdout.readline()
        return process

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_port_forward_ports_and_connections(
    cluster: CompatCluster,
    namespace: str,
    version: str,
    kubectl_forward: Callable[[str, list[str]], subprocess.Popen[str]],
) -> None:
    start_pod(cluster, namespace, "server", SERVER)
    web, echo = free_port(), free_port()
    kubectl_forward(version, [f"{web}:8080", f"{echo}:9000"])
    payloads = [os.urandom(200_000) + f"conn {i}".encode() for i in range(4)]
    results = concurrently(
        [lambda p=p: echo_round_trip(echo, p) for p in payloads]
        + [lambda: http_get(web) for _ in range(3)]
    )
    assert results[:4] == payloads
    for answer in results[4:]:
        assert answer.startswith(b"HTTP/1.") and answer.endswith(b"hello-from-pod\n")


def test_python_port_forward_ports_and_connections(
    cluster: CompatCluster, namespace: str, core: Any
) -> None:
    from kubernetes.stream import portforward

    start_pod(cluster, namespace, "server", SERVER)

    def receive_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
        got = b""
        while not done(got):
            chunk = sock.recv(65536)
            assert chunk, f"connection ended after {len(got)} bytes"
            got += chunk
        return got

    def both_ports(payload: bytes) -> bytes:
        # The client's sockets cannot half-close (its proxy closes them on EOF): read
        # what is expected, then close the forward.
        forward = portforward(
            core.connect_get_namespaced_pod_portforward, "server", namespace, ports="8080,9000"
        )
        try:
            echo, web = forward.socket(9000), forward.socket(8080)
            echo.settimeout(30)
            web.settimeout(30)
            web.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            echo.sendall(payload)
            answer = receive_until(web, lambda got: got.endswith(b"hello-from-pod\n"))
            assert answer.startswith(b"HTTP/1.")
            back = receive_until(echo, lambda got: len(got) >= len(payload))
            assert forward.error(9000) is None and forward.error(8080) is None
            return back
        finally:
            forward.close()

    payloads = [os.urandom(100_000) + f"py {i}".encode() for i in range(4)]
    results = concurrently([lambda p=p: both_ports(p) for p in payloads])
    assert results == payloads
