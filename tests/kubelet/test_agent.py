"""The node agent end to end: API server + agent + runc + local registry (root)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.kubelet import BackOff, NodeAgent
from kubetrio.runtime import cgroup_exists

from .conftest import NODE, AgentFactory, make_pod, wait_for

pytestmark = [pytest.mark.root, pytest.mark.runc]


def test_backoff_doubles_to_the_maximum_and_resets() -> None:
    backoff = BackOff(10, 300)
    assert [backoff.next(1) for _ in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert backoff.next(601) == 0


def ctr_state(pod: dict[str, Any], index: int = 0) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[index] if index < len(statuses) else {}


def condition(pod: dict[str, Any], kind: str) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return str(cond["status"])
    return ""


async def http_get(ip: str, path: str) -> bytes:
    stream = await trio.open_tcp_stream(ip, 80)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        body = b""
        while chunk := await stream.receive_some():
            body += chunk
    return body.split(b"\r\n\r\n", 1)[1]


async def test_node_registered_with_lease(agent: NodeAgent, client: Client) -> None:
    node = await client.get("v1", "nodes", NODE)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    assert int(node["status"]["capacity"]["cpu"]) == os.cpu_count()
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("runc://")
    lease = await client.get("coordination.k8s.io/v1", "leases", NODE, namespace="kube-node-lease")
    assert lease["spec"]["holderIdentity"] == NODE


@pytest.mark.parametrize("client", ["in-process", "http"], indirect=True)
async def test_httpd_serves_configmap_updates_and_deletion_cleans_up(
    agent: NodeAgent, client: Client
) -> None:
    await client.create(
        "v1",
        "configmaps",
        {"metadata": {"name": "site"}, "data": {"index.html": "version 1\n"}},
        namespace="default",
    )
    pod = make_pod(
        "web",
        [
            {
                "name": "httpd",
                "image": "busybox",
                "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
                "volumeMounts": [{"name": "site", "mountPath": "/www"}],
                "readinessProbe": {
                    "httpGet": {"path": "/index.html", "port": 80},
                    "periodSeconds": 1,
                },
                "securityContext": {"runAsUser": 65534},
            }
        ],
        volumes=[{"name": "site", "configMap": {"name": "site"}}],
        terminationGracePeriodSeconds=1,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(60):
        running = await wait_for(client, "web", lambda p: condition(p, "Ready") == "True")
        status = running["status"]
        assert status["phase"] == "Running"
        assert status["hostIP"] == "127.0.0.1" and status["startTime"]
        assert ctr_state(running)["state"]["running"]["startedAt"]
        ip = status["podIP"]
        assert await http_get(ip, "/index.html") == b"version 1\n"
        await client.patch(
            "v1", "configmaps", "site", {"data": {"index.html": "version 2\n"}}, namespace="default"
        )
        while await http_get(ip, "/index.html") != b"version 2\n":
            await trio.sleep(0.2)
        uid = running["metadata"]["uid"]
        netns = agent.runtime.netns_path(uid)  # type: ignore[attr-defined]
        assert os.path.exists(netns)
        await client.delete("v1", "pods", "web", namespace="default")
        await wait_for(client, "web", lambda p: not p)
    assert not os.path.exists(netns)
    assert not cgroup_exists(f"{agent.runtime.cgroup_parent}/{uid}")  # type: ignore[attr-defined]
    assert not (agent.pods_dir / uid).exists()


async def test_job_like_pod_completes_and_logs(
    agent: NodeAgent, client: Client, apiserver: RunningApiServer
) -> None:
    await client.create(
        "v1",
        "configmaps",
        {"metadata": {"name": "env"}, "data": {"who": "world"}},
        namespace="default",
    )
    pod = make_pod(
        "job",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "echo hello $WHO $(POD)"],
                "env": [
                    {
                        "name": "WHO",
                        "valueFrom": {"configMapKeyRef": {"name": "env", "key": "who"}},
                    },
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
            }
        ],
        restartPolicy="Never",
        initContainers=[{"name": "init", "image": "busybox", "command": ["true"]}],
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        done = await wait_for(
            client, "job", lambda p: p.get("status", {}).get("phase") == "Succeeded"
        )
    terminated = ctr_state(done)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert (
        done["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    )
    assert condition(done, "Initialized") == "True"
    chunks = [c async for c in agent.read_logs("default", "job", "main")]
    assert b"".join(chunks) == b"hello world job\n"
    # The same through the API server's pods/log, which asks this agent over HTTP.
    async with httpx.AsyncClient(base_url=apiserver.url, timeout=10) as http:
        response = await http.get("/api/v1/namespaces/default/pods/job/log")
        assert (response.status_code, response.text) == (200, "hello world job\n")
        init = await http.get("/api/v1/namespaces/default/pods/job/log?container=init")
        assert (init.status_code, init.text) == (200, "")


async def test_failing_container_restarts_with_backoff(agent: NodeAgent, client: Client) -> None:
    pod = make_pod(
        "crash",
        [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 1"]}],
        restartPolicy="OnFailure",
    )
    await client.create("v1", "pods", pod, namespace="default")
    seen_backoff = False

    def check(p: dict[str, Any]) -> bool:
        nonlocal seen_backoff
        state = ctr_state(p)
        if state.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
            seen_backoff = True
        return seen_backoff and state.get("restartCount", 0) >= 3

    with trio.fail_after(30):
        crashed = await wait_for(client, "crash", check)
    last = ctr_state(crashed)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (1, "Error")
    assert crashed["status"]["phase"] == "Running"


async def test_run_as_non_root_refuses_uid_0(agent: NodeAgent, client: Client) -> None:
    pod = make_pod(
        "root",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sleep", "60"],
                "securityContext": {"runAsNonRoot": True},
            }
        ],
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(20):
        refused = await wait_for(
            client,
            "root",
            lambda p: (
                ctr_state(p).get("state", {}).get("waiting", {}).get("reason")
                == "CreateContainerConfigError"
            ),
        )
    message = ctr_state(refused)["state"]["waiting"]["message"]
    assert message.startswith(
        'container has runAsNonRoot and image will run as root (pod: "root_default('
    )


async def test_memory_limit_oom_killed(agent: NodeAgent, client: Client) -> None:
    pod = make_pod(
        "oom",
        [
            {
                "name": "hog",
                "image": "busybox",
                "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"],
                "resources": {"limits": {"memory": "16Mi"}},
            }
        ],
        restartPolicy="Never",
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        failed = await wait_for(
            client, "oom", lambda p: p.get("status", {}).get("phase") == "Failed"
        )
    terminated = ctr_state(failed)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


async def test_termination_messages(agent: NodeAgent, client: Client) -> None:
    await client.create(
        "v1",
        "pods",
        make_pod(
            "lastwords",
            [
                {
                    "name": "a",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo bye > /dev/termination-log; exit 4"],
                },
                {
                    "name": "b",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo oops; exit 5"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                },
            ],
            restartPolicy="Never",
        ),
        namespace="default",
    )
    with trio.fail_after(30):
        words = await wait_for(
            client, "lastwords", lambda p: p.get("status", {}).get("phase") == "Failed"
        )
    assert ctr_state(words, 0)["state"]["terminated"]["message"] == "bye\n"
    assert ctr_state(words, 1)["state"]["terminated"]["message"] == "oops\n"


async def test_liveness_failure_restarts(agent: NodeAgent, client: Client) -> None:
    pod = make_pod(
        "live",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sleep", "3600"],
                "livenessProbe": {
                    "exec": {"command": ["false"]},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            }
        ],
        terminationGracePeriodSeconds=1,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        restarted = await wait_for(
            client, "live", lambda p: ctr_state(p).get("restartCount", 0) >= 1
        )
    last = ctr_state(restarted)["lastState"]["terminated"]
    assert last["exitCode"] == 137
    assert "failed liveness probe" in last.get("message", "")
    with trio.fail_after(10):
        while True:
            events = await client.list(
                "v1",
                "events",
                namespace="default",
                field_selector=f"involvedObject.uid={restarted['metadata']['uid']}",
            )
            reasons = {e["reason"]: e for e in events["items"]}
            if {"Pulled", "Created", "Started", "Unhealthy", "Killing"} <= set(reasons):
                break
            await trio.sleep(0.1)
    assert reasons["Unhealthy"]["type"] == "Warning"
    assert reasons["Unhealthy"]["message"].startswith("Liveness probe failed")
    assert reasons["Started"]["source"] == {"component": "kubelet", "host": NODE}


async def test_logs_over_the_kubelet_endpoint(agent: NodeAgent, client: Client) -> None:
    script = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"
    await client.create(
        "v1",
        "pods",
        make_pod("talker", [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]),
        namespace="default",
    )
    await client.create(
        "v1",
        "pods",
        make_pod(
            "crasher",
            [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo run; exit 1"]}],
            restartPolicy="OnFailure",
        ),
        namespace="default",
    )
    node = await client.get("v1", "nodes", NODE)
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert port == agent.kubelet_port
    base = f"http://127.0.0.1:{port}/containerLogs/default"
    auth = {"Authorization": "Bearer secret-token"}
    with trio.fail_after(30):
        await wait_for(client, "talker", lambda p: p.get("status", {}).get("phase") == "Running")
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{base}/talker/main")).status_code == 401
            missing = await http.get(f"{base}/nope/main", headers=auth)
            assert missing.status_code == 404
            await trio.sleep(0.5)
            tail = await http.get(f"{base}/talker/main?tailLines=1", headers=auth)
            assert tail.status_code == 200 and tail.text.count("\n") == 1
            seen = ""
            async with http.stream(
                "GET", f"{base}/talker/main?follow=true&timestamps=true", headers=auth
            ) as response:
                async for text in response.aiter_text():
                    seen += text
                    if "line 8" in seen:
                        break
            first = seen.splitlines()[0]
            assert first.split(" ", 1)[1] == "line 0" and first[:4].isdigit()
            await wait_for(client, "crasher", lambda p: ctr_state(p).get("restartCount", 0) >= 1)
            previous = await http.get(f"{base}/crasher/c?previous=true", headers=auth)
            assert previous.text == "run\n"


async def test_restarted_agent_adopts_running_containers(
    agent_factory: AgentFactory, client: Client
) -> None:
    script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
    pod = make_pod(
        "keeper",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }
        ],
        volumes=[{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
        terminationGracePeriodSeconds=1,
    )
    first = agent_factory()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            await client.create("v1", "pods", pod, namespace="default")
            before = await wait_for(client, "keeper", lambda p: condition(p, "Ready") == "True")
            nursery.cancel_scope.cancel()  # the agent stops; its containers keep running
        await trio.sleep(1)  # output piles up in the FIFO meanwhile
        second = agent_factory()
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            await trio.sleep(1)
            after = await client.get("v1", "pods", "keeper", namespace="default")
            assert ctr_state(after)["containerID"] == ctr_state(before)["containerID"]
            assert ctr_state(after)["restartCount"] == 0
            assert condition(after, "Ready") == "True"
            assert after["status"]["podIP"] == before["status"]["podIP"]
            text = b"".join([c async for c in second.read_logs("default", "keeper")]).decode()
            ticks = [int(line.split()[1]) for line in text.splitlines()]
            assert ticks == list(range(len(ticks))) and len(ticks) > 12  # none lost
            await client.delete("v1", "pods", "keeper", namespace="default")
            await wait_for(client, "keeper", lambda p: not p)
            nursery.cancel_scope.cancel()


async def test_attach_stdin_survives_an_agent_restart(
    agent_factory: AgentFactory, client: Client
) -> None:
    """``stdin: true``: a restarted agent reopens the FIFO, so attach still reaches stdin."""
    from kubetrio.kubelet._exec import running_container

    script = 'while read l; do echo "got $l"; done'
    pod = make_pod(
        "listener",
        [{"name": "main", "image": "busybox", "command": ["sh", "-c", script], "stdin": True}],
        terminationGracePeriodSeconds=1,
    )

    async def say(agent: NodeAgent, line: str) -> None:
        while True:
            try:
                container_id = running_container(agent, "default", "listener", "main")
                break
            except (LookupError, ValueError):
                await trio.sleep(0.1)  # not adopted yet
        runtime: Any = agent.runtime
        async with runtime.attach(container_id, stdin=True) as session:
            await session.write(f"{line}\n".encode())
            seen = b""
            async for _, chunk in session.output:
                seen += chunk
                if f"got {line}\n".encode() in seen:
                    return

    first = agent_factory()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            await client.create("v1", "pods", pod, namespace="default")
            await wait_for(client, "listener", lambda p: condition(p, "Ready") == "True")
            await say(first, "one")
            nursery.cancel_scope.cancel()  # the agent stops; the container keeps running
        second = agent_factory()
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            await say(second, "two")
            await client.delete("v1", "pods", "listener", namespace="default")
            await wait_for(client, "listener", lambda p: not p)
            nursery.cancel_scope.cancel()


async def test_secret_downward_volumes_env_from_and_service_links(
    agent: NodeAgent, client: Client
) -> None:
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    await client.create(
        "v1",
        "secrets",
        {"metadata": {"name": "creds"}, "data": {"user": b64("alice"), "pass": b64("s3cret")}},
        namespace="default",
    )
    await client.create(
        "v1",
        "configmaps",
        {"metadata": {"name": "settings"}, "data": {"MODE": "fast"}},
        namespace="default",
    )
    await client.create(
        "v1",
        "services",
        {
            "metadata": {"name": "web-front"},
            "spec": {"ports": [{"name": "http", "port": 8080}], "selector": {"app": "x"}},
        },
        namespace="default",
    )
    script = (
        "cat /creds/login; echo; stat -c %a /creds/..data/login; ls /creds; cat /info/name; echo;"
        " echo mode=$CFG_MODE pass=$PASS host=$WEB_FRONT_SERVICE_HOST"
        " port=$WEB_FRONT_SERVICE_PORT_HTTP; touch /creds/x 2>/dev/null || echo read-only;"
        " grep db.local /etc/hosts | cut -f1; grep volumes /etc/hosts | cut -f1"
    )
    pod = make_pod(
        "volumes",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", script],
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                "env": [
                    {
                        "name": "PASS",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pass"}},
                    }
                ],
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/creds"},
                    {"name": "info", "mountPath": "/info"},
                ],
            }
        ],
        restartPolicy="Never",
        hostAliases=[{"ip": "10.1.2.3", "hostnames": ["db.local"]}],
        volumes=[
            {
                "name": "creds",
                "secret": {
                    "secretName": "creds",
                    "items": [{"key": "user", "path": "login", "mode": 0o400}],
                },
            },
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]
                },
            },
        ],
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        done = await wait_for(
            client, "volumes", lambda p: p.get("status", {}).get("phase") == "Succeeded"
        )
    pod_ip = done["status"]["podIP"]
    service = await client.get("v1", "services", "web-front", namespace="default")
    output = b"".join([c async for c in agent.read_logs("default", "volumes")]).decode()
    assert output.splitlines() == [
        "alice",
        "400",
        "login",
        "volumes",
        f"mode=fast pass=s3cret host={service['spec']['clusterIP']} port=8080",
        "read-only",
        "10.1.2.3",
        pod_ip,
    ]


async def test_missing_image_backs_off_and_init_failure_fails_pod(
    agent: NodeAgent, client: Client
) -> None:
    await client.create(
        "v1",
        "pods",
        make_pod("noimage", [{"name": "main", "image": "does-not-exist:1"}]),
        namespace="default",
    )
    await client.create(
        "v1",
        "pods",
        make_pod(
            "badinit",
            [{"name": "main", "image": "busybox", "command": ["true"]}],
            restartPolicy="Never",
            initContainers=[
                {"name": "init", "image": "busybox", "command": ["sh", "-c", "exit 2"]}
            ],
        ),
        namespace="default",
    )
    with trio.fail_after(30):
        pulled = await wait_for(
            client,
            "noimage",
            lambda p: (
                ctr_state(p).get("state", {}).get("waiting", {}).get("reason") == "ImagePullBackOff"
            ),
        )
        failed = await wait_for(
            client, "badinit", lambda p: p.get("status", {}).get("phase") == "Failed"
        )
    assert pulled["status"]["phase"] == "Pending"
    init = failed["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert (init["exitCode"], init["reason"]) == (2, "Error")
    assert condition(failed, "Initialized") == "False"
    assert "running" not in ctr_state(failed).get("state", {})


async def test_host_network_pod_and_readiness_gate(agent: NodeAgent, client: Client) -> None:
    pod = make_pod(
        "hostnet",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sleep", "3600"],
                "readinessProbe": {
                    "exec": {"command": ["test", "-f", "/tmp/ready"]},
                    "periodSeconds": 1,
                },
            }
        ],
        hostNetwork=True,
        terminationGracePeriodSeconds=0,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        running = await wait_for(
            client, "hostnet", lambda p: p.get("status", {}).get("phase") == "Running"
        )
        await trio.sleep(1.5)
        current = await client.get("v1", "pods", "hostnet", namespace="default")
        assert condition(current, "Ready") == "False"
        assert running["status"]["podIP"] == agent.address
        cid = ctr_state(running)["containerID"].removeprefix("runc://")
        code, out = await agent.runtime.exec_sync(cid, ["hostname"], timeout=5)
        assert out.decode().strip() == os.uname().nodename
        code, _ = await agent.runtime.exec_sync(cid, ["touch", "/tmp/ready"], timeout=5)
        assert code == 0
        await wait_for(client, "hostnet", lambda p: condition(p, "Ready") == "True")


async def test_image_garbage_collection_keeps_images_in_use(
    agent: NodeAgent, client: Client, registry: str
) -> None:
    from kubetrio.images import build_image

    pod = make_pod(
        "user",
        [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        terminationGracePeriodSeconds=0,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        await wait_for(client, "user", lambda p: p.get("status", {}).get("phase") == "Running")
    await build_image(f"{registry}/extra:1", None, cmd=["true"], env={"X": "1"})
    await agent.runtime.pull_image(f"{registry}/extra:1")
    assert agent.runtime.image_present(f"{registry}/extra:1")
    assert await agent.collect_images() == []  # the disk is not full
    assert await agent.collect_images(force=True) == [f"{registry}/extra:1"]
    assert not agent.runtime.image_present(f"{registry}/extra:1")
    assert agent.runtime.image_present("busybox")


async def test_post_start_and_pre_stop_hooks(
    agent: NodeAgent, client: Client, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    pod = make_pod(
        "hooks",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo started > /shared/post"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /shared/pre"]}},
                },
            }
        ],
        volumes=[
            {"name": "shared", "hostPath": {"path": str(shared), "type": "DirectoryOrCreate"}}
        ],
        terminationGracePeriodSeconds=2,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        await wait_for(client, "hooks", lambda p: p.get("status", {}).get("phase") == "Running")
        assert (shared / "post").read_text() == "started\n"
        assert not (shared / "pre").exists()
        await client.delete("v1", "pods", "hooks", namespace="default")
        await wait_for(client, "hooks", lambda p: not p)
    assert (shared / "pre").read_text() == "stopping\n"


async def test_active_deadline_fails_the_pod(agent: NodeAgent, client: Client) -> None:
    pod = make_pod(
        "deadline",
        [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        activeDeadlineSeconds=2,
        terminationGracePeriodSeconds=0,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        failed = await wait_for(
            client, "deadline", lambda p: p.get("status", {}).get("phase") == "Failed"
        )
    assert failed["status"]["reason"] == "DeadlineExceeded"
    assert ctr_state(failed)["state"]["terminated"]["exitCode"] == 137


async def test_logs_of_a_finished_pod_after_agent_restart(
    agent_factory: AgentFactory, client: Client
) -> None:
    pod = make_pod(
        "done",
        [{"name": "main", "image": "busybox", "command": ["echo", "finished"]}],
        restartPolicy="Never",
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent_factory().run)
            await client.create("v1", "pods", pod, namespace="default")
            await wait_for(
                client, "done", lambda p: p.get("status", {}).get("phase") == "Succeeded"
            )
            nursery.cancel_scope.cancel()
        second = agent_factory()
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            text = b"".join([c async for c in second.read_logs("default", "done")])
            assert text == b"finished\n"
            with pytest.raises(ValueError, match="previous terminated container"):
                [c async for c in second.read_logs("default", "done", previous=True)]
            nursery.cancel_scope.cancel()


async def test_persistent_volume_claim_published_by_the_storage_driver(
    agent: NodeAgent, client: Client, tmp_path: Path
) -> None:
    (tmp_path / "pvs" / "pvc-data").mkdir(parents=True)
    await client.create(
        "v1",
        "persistentvolumes",
        {
            "metadata": {"name": "pv-data"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": "kubetrio.io/local", "volumeHandle": "pvc-data"},
            },
        },
    )
    await client.create(
        "v1",
        "persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeName": "pv-data",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace="default",
    )
    await client.patch(
        "v1",
        "persistentvolumeclaims",
        "data",
        {"status": {"phase": "Bound"}},
        namespace="default",
        subresource="status",
    )
    pod = make_pod(
        "writer",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "echo kept > /data/file"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        restartPolicy="Never",
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        await wait_for(client, "writer", lambda p: p.get("status", {}).get("phase") == "Succeeded")
        await client.delete("v1", "pods", "writer", namespace="default")
        await wait_for(client, "writer", lambda p: not p)
        while agent.workers:
            await trio.sleep(0.05)
    assert (tmp_path / "pvs" / "pvc-data" / "file").read_text() == "kept\n"


async def test_startup_probe_holds_readiness_then_tcp_readiness(
    agent: NodeAgent, client: Client
) -> None:
    pod = make_pod(
        "slow",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "sleep 1; touch /tmp/up; exec httpd -f -p 8080"],
                "ports": [{"name": "web", "containerPort": 8080}],
                "startupProbe": {
                    "exec": {"command": ["test", "-f", "/tmp/up"]},
                    "periodSeconds": 1,
                    "failureThreshold": 30,
                },
                "readinessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 1},
            }
        ],
        terminationGracePeriodSeconds=0,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        early = await wait_for(client, "slow", lambda p: "running" in ctr_state(p).get("state", {}))
        assert ctr_state(early)["started"] is False and ctr_state(early)["ready"] is False
        ready = await wait_for(client, "slow", lambda p: condition(p, "Ready") == "True")
    assert ctr_state(ready)["started"] is True and ctr_state(ready)["restartCount"] == 0


async def test_image_pull_secrets_for_a_registry_with_basic_auth(
    agent: NodeAgent, client: Client, tmp_path: Path
) -> None:
    import base64
    import json

    from kubetrio.images import build_image, local_registry

    with local_registry(tmp_path / "private", users={"alice": "s3cret"}) as private:
        await build_image(
            f"{private}/app:1", None, cmd=["echo", "private hello"], credentials=("alice", "s3cret")
        )
        config = {"auths": {private: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}
        await client.create(
            "v1",
            "secrets",
            {
                "metadata": {"name": "regcred"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {
                    ".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()
                },
            },
            namespace="default",
        )
        image = f"{private}/app:1"
        await client.create(
            "v1",
            "pods",
            # Always: a cached copy pulled with the other pod's secret must not be used.
            make_pod("anonymous", [{"name": "main", "image": image, "imagePullPolicy": "Always"}]),
            namespace="default",
        )
        await client.create(
            "v1",
            "pods",
            make_pod(
                "authorized",
                [{"name": "main", "image": image}],
                restartPolicy="Never",
                imagePullSecrets=[{"name": "regcred"}],
            ),
            namespace="default",
        )
        with trio.fail_after(30):
            refused = await wait_for(
                client,
                "anonymous",
                lambda p: (
                    ctr_state(p).get("state", {}).get("waiting", {}).get("reason")
                    in ("ErrImagePull", "ImagePullBackOff")
                ),
            )
            await wait_for(
                client, "authorized", lambda p: p.get("status", {}).get("phase") == "Succeeded"
            )
        assert refused["status"]["phase"] == "Pending"
        output = b"".join([c async for c in agent.read_logs("default", "authorized")])
        assert output == b"private hello\n"
        # Stop pulling from the registry before it goes away.
        await client.delete("v1", "pods", "anonymous", namespace="default")
        with trio.fail_after(30):
            await wait_for(client, "anonymous", lambda p: not p)


async def test_changed_image_restarts_the_container(
    agent: NodeAgent, client: Client, registry: str
) -> None:
    from kubetrio.images import build_image

    await build_image(f"{registry}/greeter:2", None, cmd=["sh"], env={"VERSION": "2"})
    script = "echo version=${VERSION:-1}; exec sleep 3600"
    pod = make_pod(
        "greeter",
        [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
        terminationGracePeriodSeconds=0,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        first = await wait_for(client, "greeter", lambda p: condition(p, "Ready") == "True")
        await client.patch(
            "v1",
            "pods",
            "greeter",
            {"spec": {"containers": [{"name": "main", "image": f"{registry}/greeter:2"}]}},
            namespace="default",
            patch_type="strategic",
        )
        second = await wait_for(
            client,
            "greeter",
            lambda p: ctr_state(p).get("restartCount") == 1 and condition(p, "Ready") == "True",
        )
    assert ctr_state(second)["image"] == f"{registry}/greeter:2"
    assert ctr_state(second)["imageID"] != ctr_state(first)["imageID"]
    logs = b"".join([c async for c in agent.read_logs("default", "greeter")])
    assert logs == b"version=2\n"


async def test_native_sidecar_runs_beside_the_app_and_stops_after_it(
    agent: NodeAgent, client: Client
) -> None:
    pod = make_pod(
        "sidecar",
        [
            {
                "name": "app",
                "image": "busybox",
                "command": [
                    "sh",
                    "-c",
                    "while [ ! -f /shared/side ]; do sleep 0.1; done; cat /shared/side",
                ],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }
        ],
        initContainers=[
            {
                "name": "side",
                "image": "busybox",
                "restartPolicy": "Always",
                "command": ["sh", "-c", "echo from-sidecar > /shared/side; exec sleep 3600"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            },
            {"name": "after", "image": "busybox", "command": ["true"]},
        ],
        volumes=[{"name": "shared", "emptyDir": {}}],
        restartPolicy="Never",
        terminationGracePeriodSeconds=1,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(30):
        done = await wait_for(
            client, "sidecar", lambda p: p.get("status", {}).get("phase") == "Succeeded"
        )
    side, after = done["status"]["initContainerStatuses"]
    assert "terminated" in side["state"] and side["restartCount"] == 0
    assert after["state"]["terminated"]["reason"] == "Completed"
    logs = b"".join([c async for c in agent.read_logs("default", "sidecar", "app")])
    assert logs == b"from-sidecar\n"


async def test_shutdown_gives_a_pod_no_more_than_its_own_grace(
    agent: NodeAgent, client: Client
) -> None:
    """A node shutdown's grace period caps each pod's own, as upstream's graceful node
    shutdown: a pod asking for 1 s (its ``sleep`` ignores SIGTERM as PID 1) is killed
    after 1 s, not after the hour the shutdown would allow."""
    pod = make_pod(
        "deaf",
        [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        terminationGracePeriodSeconds=1,
    )
    await client.create("v1", "pods", pod, namespace="default")
    await wait_for(client, "deaf", lambda p: condition(p, "Ready") == "True", timeout=60)
    with trio.fail_after(60):
        await agent.shutdown(grace_period=3600)
