"""exec and port-forward end to end: real runc pods, real kubectl binaries, the Python client.

One cluster per test (a node agent with a busybox pod); kubectl runs as a subprocess
against a kubeconfig for the in-process API server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio.apiserver import merge_kubeconfig
from kubetrio.cluster import Cluster, open_local_node

KD = Path(os.path.realpath(shutil.which("kubectl") or "/nonexistent")).parent

pytestmark = [
    pytest.mark.root,
    pytest.mark.runc,
    pytest.mark.skipif(
        os.geteuid() != 0
        or not shutil.which("runc")
        or not shutil.which("docker-registry")
        or not (KD / "kubectl.1.27").exists(),
        reason="needs root, runc, docker-registry and the kubectl binaries",
    ),
]

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "box"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "box",
                "image": "busybox",
                "command": [
                    "sh",
                    "-c",
                    "echo hello-from-pod > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
                ],
            }
        ],
    },
}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Path]]:
    async with open_local_node(
        tmp_path, node_name="streams-node", block="10.244.253.128/26", proxy=False, dns=False
    ) as running:
        await running.client.create("v1", "pods", POD, namespace="default")
        with trio.fail_after(60):
            while True:
                pod = await running.client.get("v1", "pods", "box", namespace="default")
                if (pod.get("status") or {}).get("phase") == "Running":
                    break
                await trio.sleep(0.2)
        kubeconfig = tmp_path / "kubeconfig"
        merge_kubeconfig(kubeconfig, name="t", server=running.url, token="x")
        yield running, kubeconfig


async def kubectl(
    version: str,
    kubeconfig: Path,
    *args: str,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [str(KD / f"kubectl.{version}"), "--kubeconfig", str(kubeconfig), *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_exec(cluster: tuple[Cluster, Path], version: str) -> None:
    _, kubeconfig = cluster
    with trio.fail_after(60):
        done = await kubectl(version, kubeconfig, "exec", "box", "--", "echo", "hi")
        assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr
        done = await kubectl(version, kubeconfig, "exec", "-i", "box", "--", "cat", stdin=b"hi\n")
        assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr
        big = os.urandom(300_000).hex().encode()
        done = await kubectl(version, kubeconfig, "exec", "-i", "box", "--", "cat", stdin=big)
        assert done.stdout == big
        done = await kubectl(
            version, kubeconfig, "exec", "box", "--", "sh", "-c", "echo e >&2; exit 3"
        )
        assert done.returncode == 3, done.stderr
        assert b"e\n" in done.stderr
        # -it under a pseudo-terminal: the process starts with the size kubectl sent.
        # script's stdin stays open: a closed one makes script type an EOF into the
        # terminal.
        script = (
            f"stty cols 91 rows 17; {KD}/kubectl.{version} --kubeconfig {kubeconfig} "
            "exec -it box -- sh -c 'stty -a | head -1; exit 4'"
        )
        process = await trio.lowlevel.open_process(
            ["script", "-qec", script, "/dev/null"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None and process.stdin is not None
        output = b""
        try:
            while chunk := await process.stdout.receive_some(65536):
                output += chunk
            await process.wait()
        finally:
            await process.stdin.aclose()
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert b"rows 17; columns 91" in output, output
        assert process.returncode == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_port_forward(cluster: tuple[Cluster, Path], version: str) -> None:
    _, kubeconfig = cluster
    port = _free_port()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                partial(
                    trio.run_process,
                    [
                        str(KD / f"kubectl.{version}"),
                        "--kubeconfig",
                        str(kubeconfig),
                        "port-forward",
                        "pod/box",
                        f"{port}:8080",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
            )
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    for _ in range(100):
                        try:
                            answer = await http.get(f"http://127.0.0.1:{port}/")
                            break
                        except httpx.TransportError:
                            await trio.sleep(0.1)
                    assert answer.text == "hello-from-pod\n"
                    results: list[str] = []

                    async def one() -> None:
                        async with httpx.AsyncClient(timeout=5) as c:
                            results.append((await c.get(f"http://127.0.0.1:{port}/")).text)

                    async with trio.open_nursery() as both:
                        both.start_soon(one)
                        both.start_soon(one)
                    assert results == ["hello-from-pod\n"] * 2
            finally:
                process.terminate()


def _python_client(url: str) -> Any:
    from kubernetes import client as k8s
    from kubernetes.stream import portforward, stream

    configuration = k8s.Configuration()
    configuration.host = url
    api = k8s.CoreV1Api(k8s.ApiClient(configuration))
    out = stream(
        api.connect_get_namespaced_pod_exec,
        "box",
        "default",
        command=["sh", "-c", "echo py-exec"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    forward = portforward(
        api.connect_get_namespaced_pod_portforward, "box", "default", ports="8080"
    )
    sock = forward.socket(8080)
    sock.settimeout(5)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    sock.close()
    forward.close()
    return out, answer


async def test_python_client(cluster: tuple[Cluster, Path]) -> None:
    running, _ = cluster
    with trio.fail_after(60):
        out, answer = await trio.to_thread.run_sync(_python_client, running.url)
    assert out == "py-exec\n"
    assert answer.endswith(b"hello-from-pod\n")


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_attach(cluster: tuple[Cluster, Path], version: str) -> None:
    running, kubeconfig = cluster
    name = f"talker-{version.replace('.', '-')}"
    talker = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "talker",
                    "image": "busybox",
                    "command": ["sh", "-c", "for i in 1 2 3 4; do sleep 1; echo tick $i; done"],
                }
            ],
        },
    }
    with trio.fail_after(60):
        await running.client.create("v1", "pods", talker, namespace="default")
        while True:
            pod = await running.client.get("v1", "pods", name, namespace="default")
            if (pod.get("status") or {}).get("phase") == "Running":
                break
            await trio.sleep(0.1)
        done = await kubectl(version, kubeconfig, "attach", name)
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith(b"tick 4\n"), done.stdout


async def _ws_open(url: str, path: str, protocols: list[str]) -> tuple[Any, Any, str]:
    """A minimal WebSocket client (wsproto) as lightkube/kr8s would open one."""
    from wsproto import WSConnection
    from wsproto.connection import ConnectionType
    from wsproto.events import AcceptConnection, Request

    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=host, target=path, subprotocols=protocols)))
    while True:
        ws.receive_data(await stream.receive_some(65536))
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return stream, ws, event.subprotocol or ""
            raise AssertionError(f"upgrade refused: {event}")


async def _ws_messages(stream: Any, ws: Any, until: Any) -> list[bytes]:
    """Binary messages until ``until(messages)`` holds or the server closes."""
    from wsproto.events import BytesMessage, CloseConnection

    messages: list[bytes] = []
    while not until(messages):
        data = await stream.receive_some(65536)
        if not data:
            break
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, BytesMessage):
                messages.append(bytes(event.data))
            elif isinstance(event, CloseConnection):
                await stream.send_all(ws.send(event.response()))
                return messages
    return messages


async def test_websocket_v4_exec_and_kr8s_port_forward(cluster: tuple[Cluster, Path]) -> None:
    from wsproto.events import BytesMessage

    running, _ = cluster
    base = "/api/v1/namespaces/default/pods/box"
    with trio.fail_after(30):
        # v4 only (kr8s): output channels, then the NonZeroExitCode Status on channel 3.
        stream, ws, chosen = await _ws_open(
            running.url,
            f"{base}/exec?command=sh&command=-c&command=echo+out;echo+err>%262;exit+5"
            "&stdout=true&stderr=true",
            ["v4.channel.k8s.io"],
        )
        assert chosen == "v4.channel.k8s.io"
        messages = await _ws_messages(stream, ws, lambda m: False)
        await stream.aclose()
        by_channel: dict[int, bytes] = {}
        for message in messages:
            by_channel[message[0]] = by_channel.get(message[0], b"") + message[1:]
        assert by_channel[1] == b"out\n" and by_channel[2] == b"err\n"
        status = json.loads(by_channel[3])
        assert status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]
        # Port-forward with no subprotocol (kr8s): the two port frames, then data.
        stream, ws, chosen = await _ws_open(running.url, f"{base}/portforward?ports=8080", [])
        assert chosen == ""
        first = await _ws_messages(stream, ws, lambda m: len(m) >= 2)
        assert first[:2] == [b"\x00\x90\x1f", b"\x01\x90\x1f"]
        await stream.send_all(ws.send(BytesMessage(b"\x00GET / HTTP/1.0\r\n\r\n")))
        answer = await _ws_messages(stream, ws, lambda m: b"".join(m).endswith(b"pod\n"))
        assert b"".join(m[1:] for m in answer).endswith(b"hello-from-pod\n")
        await stream.aclose()
