"""Record the protobuf request bodies real kubectl sends, as test fixtures.

Run once (``.venv/bin/python tests/protobuf/record_fixtures.py``): starts a kubetrio API
server in-process, puts a recording proxy in front of it and runs each command in
``COMMANDS`` against the proxy twice: with kubectl 1.33, which sends protobuf (saved as
``fixtures/<name>.bin``), and with kubectl 1.31, which sends the same object as JSON
(``fixtures/<name>.json``) — the answer the decoder must reproduce. ``manifest.json``
records the command, kubectl versions, method and path. The committed fixtures are the
bytes of one such run; the tests never need kubectl to read them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import h11
import trio

from kubetrio.apiserver import open_apiserver
from kubetrio.store import open_store

FIXTURES = Path(__file__).parent / "fixtures"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# name → kubectl arguments (after --kubeconfig); each sends exactly one protobuf body.
COMMANDS: dict[str, list[str]] = {
    "create_deployment": [
        "create", "deployment", "web", "--image=nginx:1.25", "--replicas=3", "--port=8080",
    ],
    "create_deployment_zero_replicas": [
        "create", "deployment", "idle", "--image=busybox", "--replicas=0",
    ],
    "create_namespace": ["create", "namespace", "team-a"],
    "create_configmap": [
        "create", "configmap", "settings", "--from-literal=color=blue", "--from-literal=size=10",
    ],
    "create_secret": [
        "create", "secret", "generic", "creds", "--from-literal=user=admin",
        "--from-literal=password=s3cr\u00e9t!",
    ],
    "create_service": ["create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443:https"],
    "auth_can_i": ["auth", "can-i", "create", "pods", "--namespace=default"],
    "auth_whoami": ["auth", "whoami"],
    "create_job": ["create", "job", "once", "--image=busybox", "--", "echo", "hi"],
    "create_cronjob": [
        "create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *",
        "--restart=OnFailure",
    ],
    "create_role": ["create", "role", "reader", "--verb=get,list", "--resource=pods,configmaps"],
    "create_quota": ["create", "quota", "q", "--hard=cpu=1500m,memory=1Gi,pods=10"],
    "create_pdb": ["create", "pdb", "web", "--selector=app=web", "--min-available=50%"],
    "create_ingress": [
        "create", "ingress", "site", "--class=nginx", "--rule=example.com/api*=api:8080",
    ],
    "create_serviceaccount": ["create", "serviceaccount", "robot"],
    # The server may not serve the token subresource yet; the body is recorded regardless.
    "create_token": ["create", "token", "robot", "--duration=10m", "--audience=api"],
}  # fmt: skip


async def _proxy(client: trio.SocketStream, upstream_port: int, log: list[dict[str, Any]]) -> None:
    """Forward one HTTP/1.1 connection to the API server, logging protobuf requests."""
    conn = h11.Connection(h11.SERVER)
    async with client, await trio.open_tcp_stream("127.0.0.1", upstream_port) as upstream:
        while True:
            request: h11.Request | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await client.receive_some(65536)
                    conn.receive_data(data)
                    if not data and request is None:
                        return
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            if request is None:
                return
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            if request.method == b"POST" and headers.get("content-type", "").startswith(
                (PROTOBUF, "application/json")
            ):
                log.append(
                    {
                        "method": request.method.decode(),
                        "path": request.target.decode(),
                        "body": body,
                    }
                )
            # Re-send upstream as a fresh request without keep-alive, then relay the reply.
            out = h11.Connection(h11.CLIENT)
            send = [
                (k, v)
                for k, v in request.headers
                if k.lower() not in (b"connection", b"transfer-encoding", b"content-length")
            ]
            send += [(b"connection", b"close"), (b"content-length", str(len(body)).encode())]
            await upstream.send_all(
                out.send(h11.Request(method=request.method, target=request.target, headers=send))
                + out.send(h11.Data(data=body))
                + out.send(h11.EndOfMessage())
            )
            reply = b""
            while chunk := await upstream.receive_some(65536):
                reply += chunk
            await client.send_all(reply)
            return  # one request per connection: kubectl reconnects


def _version(kubectl: str) -> str:
    version = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, check=True
    )
    return str(json.loads(version.stdout)["clientVersion"]["gitVersion"])


async def record(kubectl: str, suffix: str, manifest: dict[str, Any]) -> None:
    """Run every command once with ``kubectl``, saving bodies as ``<name><suffix>``."""
    tmp = Path(tempfile.mkdtemp(prefix="kubetrio-record-"))
    try:
        async with (
            open_store(f"sqlite://{tmp}/s.db") as store,
            open_apiserver(store) as running,
            trio.open_nursery() as nursery,
        ):
            upstream_port = int(running.url.rsplit(":", 1)[1])
            log: list[dict[str, Any]] = []
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]

            async def serve(stream: trio.SocketStream) -> None:
                await _proxy(stream, upstream_port, log)

            nursery.start_soon(trio.serve_listeners, serve, listeners)
            kubeconfig = tmp / "kubeconfig"
            kubeconfig.write_text(_kubeconfig(f"http://127.0.0.1:{port}"))
            for name, args in COMMANDS.items():
                log.clear()
                argv = [kubectl, f"--kubeconfig={kubeconfig}", *args]
                with trio.fail_after(30):
                    result = await trio.run_process(
                        argv, capture_stdout=True, capture_stderr=True, check=False
                    )
                print(
                    name,
                    result.returncode,
                    result.stdout.decode().strip(),
                    result.stderr.decode().strip(),
                )
                if len(log) != 1:
                    raise SystemExit(f"{name}: expected one protobuf request, saw {len(log)}")
                (FIXTURES / f"{name}{suffix}").write_bytes(log[0]["body"])
                manifest["bodies"][name] = {
                    "command": "kubectl " + " ".join(args),
                    "method": log[0]["method"],
                    "path": log[0]["path"],
                }
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kubeconfig(server: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "recording"}}],
            "contexts": [
                {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "default"}}
            ],
            "current-context": "x",
        }
    )


def main() -> None:
    """Record protobuf bodies with kubectl.1.33 and JSON ones with kubectl.1.31."""
    found = shutil.which("kubectl")
    assert found, "kubectl is not on PATH"
    versions = Path(os.path.realpath(found)).parent
    protobuf_kubectl, json_kubectl = str(versions / "kubectl.1.33"), str(versions / "kubectl.1.31")
    FIXTURES.mkdir(exist_ok=True)
    manifest: dict[str, Any] = {
        "recorded_by": "tests/protobuf/record_fixtures.py",
        "protobuf_kubectl": _version(protobuf_kubectl),
        "json_kubectl": _version(json_kubectl),
        "bodies": {},
    }
    trio.run(record, protobuf_kubectl, ".bin", manifest)
    trio.run(record, json_kubectl, ".json", manifest)
    (FIXTURES / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    )


if __name__ == "__main__":
    main()
