"""Pure parts of the agent: DNS config, env resolution helpers, pull policy, QoS, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import trio

from kubetrio.api.qos import pod_qos_class
from kubetrio.kubelet import _server as kubelet_server
from kubetrio.kubelet._containers import pull_policy
from kubetrio.kubelet._env import service_env
from kubetrio.kubelet._logs_reader import read_log
from kubetrio.kubelet._podfiles import resolv_conf
from kubetrio.runtime import resolve_args
from kubetrio.runtime._spec import expand

HOST = "# host\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"


def pod(**spec: object) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "team"}, "spec": spec}


def test_resolv_conf_by_dns_policy() -> None:
    cluster = resolv_conf(
        pod(), cluster_dns=["10.96.0.10"], cluster_domain="cluster.local", host=HOST
    )
    assert cluster == (
        "nameserver 10.96.0.10\n"
        "search team.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )
    assert resolv_conf(pod(), cluster_dns=[], cluster_domain="cluster.local", host=HOST) == (
        "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
    )
    host_net = resolv_conf(
        pod(hostNetwork=True), cluster_dns=["10.96.0.10"], cluster_domain="cluster.local", host=HOST
    )
    assert host_net.startswith("nameserver 10.0.0.2")
    custom = resolv_conf(
        pod(
            dnsPolicy="None",
            dnsConfig={
                "nameservers": ["1.1.1.1"],
                "searches": ["a.b"],
                "options": [{"name": "ndots", "value": "2"}],
            },
        ),
        cluster_dns=["10.96.0.10"],
        cluster_domain="cluster.local",
        host=HOST,
    )
    assert custom == "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2\n"


def test_pull_policy_defaults() -> None:
    assert pull_policy({"image": "busybox"}) == "Always"
    assert pull_policy({"image": "busybox:latest"}) == "Always"
    assert pull_policy({"image": "busybox:1.36"}) == "IfNotPresent"
    assert pull_policy({"image": "127.0.0.1:5000/app"}) == "Always"
    assert pull_policy({"image": "app@sha256:" + "a" * 64}) == "IfNotPresent"
    assert pull_policy({"image": "busybox", "imagePullPolicy": "Never"}) == "Never"


def test_qos_classes() -> None:
    def with_resources(resources: dict[str, Any]) -> dict[str, Any]:
        return {"containers": [{"name": "c", "resources": resources}]}

    assert pod_qos_class(with_resources({})) == "BestEffort"
    limits = {"cpu": "1", "memory": "1Gi"}
    # The API server defaults requests to limits before anyone computes the class.
    assert pod_qos_class(with_resources({"requests": limits, "limits": limits})) == "Guaranteed"
    assert pod_qos_class(with_resources({"requests": {"cpu": "100m"}})) == "Burstable"
    # a zero quantity counts as unset (upstream's GetPodQOS)
    assert pod_qos_class(with_resources({"limits": {"cpu": "0", "memory": "0"}})) == "BestEffort"


def test_command_args_and_expansion() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["default"]}
    env = {"A": "1"}
    assert resolve_args({}, image, env) == ["/entry", "default"]
    assert resolve_args({"args": ["x", "$(A)"]}, image, env) == ["/entry", "x", "1"]
    assert resolve_args({"command": ["run"]}, image, env) == ["run"]
    assert expand("$(A) $$(A) $(B)", env) == "1 $(A) $(B)"


def test_service_env_is_docker_link_style() -> None:
    service = {
        "metadata": {"name": "my-db"},
        "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "sql", "port": 5432}]},
    }
    env = dict(service_env([service]))
    assert env["MY_DB_SERVICE_HOST"] == "10.96.0.5"
    assert env["MY_DB_SERVICE_PORT"] == "5432" and env["MY_DB_SERVICE_PORT_SQL"] == "5432"
    assert env["MY_DB_PORT"] == "tcp://10.96.0.5:5432"
    assert env["MY_DB_PORT_5432_TCP_ADDR"] == "10.96.0.5"


async def test_log_reader_tail_since_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(
        b"2026-01-01T00:00:00.000000001Z stdout F one\n"
        b"2026-01-01T00:00:01.000000000Z stderr P par\n"
        b"2026-01-01T00:00:01.000000000Z stderr F tial\n"
        b"2030-01-01T00:00:00.000000000Z stdout F late\n"
    )
    whole = b"".join([c async for c in read_log(log)])
    assert whole == b"one\npartial\nlate\n"
    tail = b"".join([c async for c in read_log(log, tail_lines=1, timestamps=True)])
    assert tail == b"2030-01-01T00:00:00.000000000Z late\n"
    since = b"".join([c async for c in read_log(log, since_time="2026-01-01T00:00:01Z")])
    assert since == b"partial\nlate\n"
    limited = b"".join([c async for c in read_log(log, limit_bytes=5)])
    assert limited == b"one\np"


def test_etc_hosts_with_fqdn_and_aliases() -> None:
    from kubetrio.kubelet._podfiles import etc_hosts

    pod = {
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {
            "hostname": "web-0",
            "subdomain": "web",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["db", "db.local"]}],
        },
    }
    text = etc_hosts(pod, ips=["10.244.0.7"], cluster_domain="cluster.local")
    assert "127.0.0.1\tlocalhost\n" in text
    assert "10.244.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n" in text
    assert text.endswith("# Entries added by HostAliases.\n10.1.2.3\tdb\tdb.local\n")
    host = etc_hosts(pod, ips=["192.0.2.1"], cluster_domain="cluster.local", base="127.0.0.1 me")
    assert host.startswith("127.0.0.1 me\n") and "192.0.2.1" not in host


async def test_a_failing_stream_session_leaves_the_kubelet_server_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A streaming session ending in errors — a client gone while the exit status is sent
    (grouped by the session's nurseries), or a fault of ours — ends that connection only:
    the listener (and with it the agent and a single-node server) keeps serving."""
    failures: list[BaseException] = [
        ExceptionGroup("session", [trio.BrokenResourceError("client left")]),
        RuntimeError("a bug in a session"),
    ]

    async def failing_exec(*args: object) -> None:
        raise failures.pop(0)

    monkeypatch.setattr(kubelet_server, "serve_exec", failing_exec)
    server = kubelet_server.KubeletServer(cast(Any, None))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(2):
                    with pytest.raises(httpx.HTTPError):
                        await client.post("/exec/ns/pod/c")
                healthz = await client.get("/healthz")
            assert healthz.status_code == 200 and healthz.text == "ok"
            assert not failures
            nursery.cancel_scope.cancel()


class TokenClient:
    """Answers TokenRequests with numbered tokens and remembers what was asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    async def create(self, api_version: str, resource: str, obj: Any, **kwargs: Any) -> Any:
        self.asked.append({"resource": resource, "body": obj, **kwargs})
        spec = obj["spec"]
        return {"spec": spec, "status": {"token": f"token-{len(self.asked)}"}}


async def test_projected_token_is_bound_to_the_pod_and_renewed_at_80_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrio.kubelet import _volumes

    now = [1_000_000.0]
    monkeypatch.setattr("kubetrio.kubelet._volumes.time.time", lambda: now[0])
    client = TokenClient()
    projected = {
        "name": "kube-api-access-abcde",
        "projected": {
            "defaultMode": 0o644,
            "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}],
        },
    }
    owner = {
        "metadata": {"name": "p", "namespace": "team", "uid": "u-1"},
        "spec": {"serviceAccountName": "reader", "volumes": [projected]},
    }
    volumes = _volumes.PodVolumes(cast(Any, client), owner, tmp_path)
    await volumes.setup()
    token_file = tmp_path / "volumes" / "kube-api-access-abcde" / "token"
    assert token_file.read_text() == "token-1"
    (asked,) = client.asked
    assert asked["resource"] == "serviceaccounts"
    assert (asked["name"], asked["subresource"], asked["namespace"]) == ("reader", "token", "team")
    assert asked["body"]["spec"] == {
        "audiences": [],
        "expirationSeconds": 3607,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u-1"},
    }
    now[0] += 0.8 * 3607 - 5  # not yet: the same token, nothing asked
    await volumes.refresh()
    assert len(client.asked) == 1 and token_file.read_text() == "token-1"
    now[0] += 10  # past 80% of its lifetime: a new one, swapped in atomically
    await volumes.refresh()
    assert len(client.asked) == 2 and token_file.read_text() == "token-2"


def test_pod_status_keeps_conditions_others_set() -> None:
    """The kubelet's status replaces the API's conditions list: those it does not own
    (DisruptionTarget from preemption or eviction) must survive it, as upstream's do."""
    from types import SimpleNamespace

    from kubetrio.kubelet._podstatus import ConditionClock, pod_status

    target = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    scheduled = {"type": "PodScheduled", "status": "True"}
    worker = SimpleNamespace(
        pod={"metadata": {"name": "p"}, "spec": {}, "status": {"conditions": [scheduled, target]}},
        final_phase="",
        final_reason="",
        records=[],
        init_records=[],
        ephemeral_records=[],
        initialized=True,
        sandbox=None,
        conditions=ConditionClock(),
        start_time="",
        agent=SimpleNamespace(address="10.0.0.1"),
    )
    conditions = pod_status(cast(Any, worker))["conditions"]
    assert [c["type"] for c in conditions] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
        "DisruptionTarget",
    ]
    assert conditions[-1] == target
