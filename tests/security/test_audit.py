"""The audit log: upstream's policy rules, and the Events kubectl's requests leave."""

from __future__ import annotations

import errno
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubetrio import plugins
from kubetrio import store as kv
from kubetrio.apiserver import (
    AuditPolicyError,
    RunningApiServer,
    merge_kubeconfig,
    open_apiserver,
    open_audit_log,
    parse_audit_policy,
)
from kubetrio.apiserver._audit import AuditWriter, RequestAttributes, rule_matches
from kubetrio.providers import UserInfo

from .conftest import Kubectl

JANE = UserInfo(name="jane", uid="2", groups=("devs", "system:authenticated"))


def policy(rules: str, head: str = "") -> Any:
    return parse_audit_policy(f"apiVersion: audit.k8s.io/v1\nkind: Policy\n{head}rules:\n{rules}")


def attrs(**fields: Any) -> RequestAttributes:
    defaults: dict[str, Any] = {
        "user": JANE,
        "verb": "get",
        "path": "/api/v1/namespaces/default/pods/p",
        "resource_request": True,
        "api_version": "v1",
        "resource": "pods",
        "namespace": "default",
        "name": "p",
    }
    return RequestAttributes(**{**defaults, **fields})


# --- the policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "request_fields", "matches"),
    [
        ("users: [jane]", {}, True),
        ("users: [bob]", {}, False),
        ("userGroups: [devs]", {}, True),
        ("userGroups: [ops]", {}, False),
        ("users: [jane]", {"user": None}, False),
        ("verbs: [get, list]", {}, True),
        ("verbs: [create]", {}, False),
        ("resources: [{group: ''}]", {}, True),
        ("resources: [{group: apps}]", {}, False),
        ("resources: [{group: '', resources: [pods]}]", {}, True),
        ("resources: [{group: '', resources: ['*']}]", {}, True),
        ("resources: [{group: '', resources: [pods/log]}]", {"subresource": "log"}, True),
        ("resources: [{group: '', resources: [pods]}]", {"subresource": "log"}, False),
        ("resources: [{group: '', resources: ['*/status']}]", {"subresource": "status"}, True),
        ("resources: [{group: '', resources: ['*/status']}]", {"subresource": "log"}, False),
        ("resources: [{group: '', resources: ['pods/*']}]", {"subresource": "exec"}, True),
        ("resources: [{group: '', resources: [pods], resourceNames: [p]}]", {}, True),
        ("resources: [{group: '', resources: [pods], resourceNames: [q]}]", {}, False),
        ("resources: [{group: apps, resources: [deployments]}]", {"api_group": "apps"}, False),
        ("namespaces: [default]", {}, True),
        ("namespaces: [kube-system]", {}, False),
        ("namespaces: ['']", {"namespace": "", "resource": "nodes"}, True),
        ("namespaces: [default]", {"resource_request": False, "path": "/version"}, False),
        ("nonResourceURLs: [/version]", {"resource_request": False, "path": "/version"}, True),
        (
            "nonResourceURLs: ['/openapi*']",
            {"resource_request": False, "path": "/openapi/v3"},
            True,
        ),
        ("nonResourceURLs: ['/openapi*']", {"resource_request": False, "path": "/version"}, False),
        ("nonResourceURLs: ['*']", {}, False),  # resource requests never match URL rules
    ],
)
def test_rules_match_as_upstreams_checker(
    rule: str, request_fields: dict[str, Any], matches: bool
) -> None:
    parsed = policy(f"  - level: Metadata\n    {rule}\n")
    assert rule_matches(parsed.rules[0], attrs(**request_fields)) is matches


def test_the_first_matching_rule_decides_and_stages_merge() -> None:
    parsed = policy(
        "  - level: None\n    users: [system:kube-proxy]\n"
        "  - level: RequestResponse\n    resources: [{group: '', resources: [configmaps]}]\n"
        "    omitStages: [ResponseStarted]\n"
        "  - level: Metadata\n    verbs: [create, delete]\n",
        head="omitStages: [RequestReceived]\n",
    )
    proxy = UserInfo(name="system:kube-proxy")
    assert parsed.evaluate(attrs(user=proxy, resource="configmaps"))[0] == "None"
    level, omitted, _ = parsed.evaluate(attrs(resource="configmaps"))
    assert level == "RequestResponse"
    assert omitted == {"RequestReceived", "ResponseStarted"}
    assert parsed.evaluate(attrs(verb="create"))[0] == "Metadata"
    assert parsed.evaluate(attrs(verb="get"))[0] == "None"  # no rule: not audited


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - level: Verbose\n", 'rules[0].level: Unsupported value: "Verbose"'),
        ("omitStages: [Done]\nrules: []\n", 'omitStages[0]: Unsupported value: "Done"'),
        ("rules:\n  - level: None\n    verbs: get\n", "rules[0].verbs: Invalid value"),
        (
            "rules:\n  - level: None\n    nonResourceURLs: [/x]\n    namespaces: [a]\n",
            "cannot apply to both",
        ),
    ],
)
def test_bad_policies_name_the_field(text: str, message: str) -> None:
    with pytest.raises(AuditPolicyError) as caught:
        parse_audit_policy(f"apiVersion: audit.k8s.io/v1\nkind: Policy\n{text}", "p.yaml")
    assert str(caught.value).startswith("p.yaml: ") and message in str(caught.value)
    with pytest.raises(AuditPolicyError, match="apiVersion"):
        parse_audit_policy("apiVersion: audit.k8s.io/v1beta9\nkind: Policy\n")


def test_the_writer_rotates_by_size_and_keeps_backups(tmp_path: Path) -> None:
    writer = AuditWriter(str(tmp_path / "audit.log"), max_size_mb=1, max_backups=2)
    writer.max_bytes = 100  # megabytes in production; bytes here
    for i in range(10):
        writer.write(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * 40))
    writer.close()
    backups = sorted(tmp_path.glob("audit-*.log"))
    assert len(backups) == 2
    current = (tmp_path / "audit.log").read_bytes().splitlines()
    assert json.loads(current[-1])["n"] == 9 and len(current) <= 2


def test_a_full_disk_drops_events_and_never_fails_the_writer(tmp_path: Path) -> None:
    """ENOSPC (the whole line, or part of it) drops the event; the next line that fits
    starts on a line of its own, so every whole line stays JSON."""
    writer = AuditWriter(str(tmp_path / "audit.log"))
    real = writer._out
    room = [10**6]

    class Disk:
        def write(self, data: bytes) -> int:
            if room[0] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            taken = min(room[0], len(data))
            room[0] -= taken
            return real.write(data[:taken]) or 0

        def close(self) -> None:
            real.close()

    writer._out = Disk()  # type: ignore[assignment]
    writer.write(b'{"n":1}\n')
    room[0] = 4  # part of the next line, then nothing
    writer.write(b'{"n":2}\n')
    writer.write(b'{"n":3}\n')
    assert writer.dropped == 2
    room[0] = 10**6  # space again
    writer.write(b'{"n":4}\n')
    writer.close()
    lines = (tmp_path / "audit.log").read_bytes().splitlines()
    assert lines[0] == b'{"n":1}' and lines[-1] == b'{"n":4}'
    assert len(lines) == 3  # the torn fragment kept apart from the next event


# --- end to end ---------------------------------------------------------------------------


@asynccontextmanager
async def audited(
    tmp_path: Path, policy_text: str | None
) -> AsyncIterator[tuple[RunningApiServer, Kubectl, Path]]:
    """An API server with the auth plugin (admin and jane by token), audited into a file."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('admin-token,admin,1,"system:masters"\njane-token,jane,2,devs\n')
    manager = plugins.load(only=["auth"])
    manager.configure(config={"auth": {"token_auth_file": str(tokens)}})
    log_path = tmp_path / "audit.log"
    audit = open_audit_log(
        str(log_path),
        policy=None if policy_text is None else parse_audit_policy(policy_text),
    )
    try:
        async with (
            kv.open_store(f"sqlite://{tmp_path}/state.db") as store,
            open_apiserver(store, plugins=manager, audit=audit) as running,
        ):
            kubeconfig = tmp_path / "kubeconfig"
            merge_kubeconfig(kubeconfig, name="t", server=running.url, token="admin-token")
            yield running, Kubectl(kubeconfig, tmp_path), log_path
    finally:
        audit.close()
        manager.unconfigure()


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def of_kubectl(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("userAgent", "").startswith("kubectl")]


async def test_mutating_requests_are_logged_at_metadata_by_default(tmp_path: Path) -> None:
    async with audited(tmp_path, None) as (running, kubectl, log_path):
        await kubectl.run("create", "configmap", "cfg", "--from-literal=k=v")
        await kubectl.run("create", "secret", "generic", "pw", "--from-literal=pw=hunter2")
        await kubectl.run("get", "configmaps")
        again = await kubectl.run("create", "configmap", "cfg", "--from-literal=k=v", check=False)
        assert "already exists" in again
        await kubectl.run("delete", "configmap", "cfg")
        async with httpx.AsyncClient(base_url=running.url) as http:
            jane = await http.post(
                "/api/v1/namespaces/default/configmaps",
                json={"metadata": {"generateName": "jane-"}},
                headers={"authorization": "Bearer jane-token", "user-agent": "tester"},
            )
            assert jane.status_code == 201
            denied = await http.post(
                "/api/v1/namespaces/default/configmaps",
                json={"metadata": {"name": "x"}},
                headers={"authorization": "Bearer nobody"},
            )
            assert denied.status_code == 401
            assert denied.headers["audit-id"]
    events = read_events(log_path)
    mine = of_kubectl(events)
    summary = [
        (
            e["verb"],
            e["objectRef"]["resource"],
            e["objectRef"].get("name"),
            e["responseStatus"]["code"],
        )
        for e in mine
    ]
    assert summary == [
        ("create", "configmaps", "cfg", 201),
        ("create", "secrets", "pw", 201),
        ("create", "configmaps", "cfg", 409),
        ("delete", "configmaps", "cfg", 200),
    ]
    for event in mine:
        assert event["kind"] == "Event" and event["apiVersion"] == "audit.k8s.io/v1"
        assert event["level"] == "Metadata" and event["stage"] == "ResponseComplete"
        # kubectl sends no bearer token to a plain-HTTP server: anonymous.
        assert event["user"] == {
            "username": "system:anonymous",
            "groups": ["system:unauthenticated"],
        }
        assert event["objectRef"]["namespace"] == "default"
        assert event["objectRef"]["apiVersion"] == "v1"
        assert event["sourceIPs"] == ["127.0.0.1"]
        assert event["requestURI"].startswith("/api/v1/namespaces/default/")
        assert event["requestReceivedTimestamp"] <= event["stageTimestamp"]
        assert "requestObject" not in event and "responseObject" not in event
    assert mine[2]["responseStatus"]["reason"] == "AlreadyExists"
    assert "hunter2" not in log_path.read_text()
    (by_jane,) = [e for e in events if e.get("userAgent") == "tester"]
    assert by_jane["user"] == {
        "username": "jane",
        "uid": "2",
        "groups": ["devs", "system:authenticated"],
    }
    assert by_jane["objectRef"]["name"] == jane.json()["metadata"]["name"]
    unauthenticated = [e for e in events if e["responseStatus"]["code"] == 401]
    assert len(unauthenticated) == 1 and unauthenticated[0]["user"] == {}


async def test_request_level_logs_the_body_and_none_omits_the_request(tmp_path: Path) -> None:
    text = (
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
        "omitManagedFields: true\n"
        "rules:\n"
        "  - level: None\n    resources: [{group: '', resources: [secrets]}]\n"
        "  - level: RequestResponse\n    verbs: [patch]\n"
        "  - level: Request\n    resources: [{group: '', resources: [configmaps]}]\n"
    )
    async with audited(tmp_path, text) as (_, kubectl, log_path):
        await kubectl.run("create", "configmap", "cfg", "--from-literal=colour=blue")
        await kubectl.run("create", "secret", "generic", "pw", "--from-literal=pw=hunter2")
        await kubectl.run("label", "configmap", "cfg", "tier=web")
        await kubectl.run("get", "configmap", "cfg")
    mine = of_kubectl(read_events(log_path))
    levels = {(e["verb"], e["level"]) for e in mine}
    assert levels == {("create", "Request"), ("patch", "RequestResponse"), ("get", "Request")}
    (created,) = [e for e in mine if e["verb"] == "create"]
    (patched,) = [e for e in mine if e["verb"] == "patch"]
    got = [e for e in mine if e["verb"] == "get"][-1]
    assert created["requestObject"]["data"] == {"colour": "blue"}
    assert "responseObject" not in created
    assert patched["requestObject"] == {"metadata": {"labels": {"tier": "web"}}}
    assert patched["responseObject"]["metadata"]["labels"] == {"tier": "web"}
    assert "managedFields" not in patched["responseObject"]["metadata"]
    assert "requestObject" not in got  # a GET has no body
    assert all(e["objectRef"]["resource"] != "secrets" for e in mine)
    assert "hunter2" not in log_path.read_text()


async def test_a_watch_has_started_and_complete_stages(tmp_path: Path) -> None:
    text = (
        "apiVersion: audit.k8s.io/v1\nkind: Policy\n"
        "rules:\n  - level: Metadata\n    verbs: [watch]\n"
    )
    async with (
        audited(tmp_path, text) as (running, _, log_path),
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        answer = await http.get(
            "/api/v1/namespaces/default/configmaps",
            params={"watch": "1", "timeoutSeconds": "1"},
            headers={"authorization": "Bearer jane-token", "audit-id": "watch-1"},
        )
        assert answer.status_code == 200 and answer.headers["audit-id"] == "watch-1"
    stages = [(e["auditID"], e["stage"]) for e in read_events(log_path)]
    assert stages == [
        ("watch-1", "RequestReceived"),
        ("watch-1", "ResponseStarted"),
        ("watch-1", "ResponseComplete"),
    ]


async def test_a_handler_that_raises_leaves_a_panic_event(tmp_path: Path) -> None:
    from kubetrio.api.scheme import Scheme
    from kubetrio.handler import Request, Response

    audit = open_audit_log(str(tmp_path / "audit.log"))
    request = Request(
        method="DELETE",
        target="/api/v1/namespaces/default/pods/p",
        path="/api/v1/namespaces/default/pods/p",
        query={},
        headers={},
        remote="in-process",
    )

    async def broken(_: Request) -> Response:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await audit.around(Scheme.builtin(), request, broken)
    audit.close()
    (event,) = read_events(tmp_path / "audit.log")
    assert event["stage"] == "Panic" and event["verb"] == "delete"
    assert event["objectRef"] == {
        "resource": "pods",
        "namespace": "default",
        "name": "p",
        "apiVersion": "v1",
    }
    assert event["responseStatus"]["code"] == 500
    assert "RuntimeError: boom" in event["responseStatus"]["message"]
    assert "sourceIPs" not in event  # an in-process request has no address
