"""NetworkPolicy enforced by the calico plugin's policy agent on real pod traffic (root).

Pods are network namespaces wired by ``CalicoNetwork.add``; the agent watches the API
server and writes ``inet kubetrio-policy`` in the host's namespace, whose forward hook
sees every pod-to-pod packet (veth → host routing → veth).
"""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

import pytest
import trio
from kubetrio_cni_calico.felix import PolicyAgent
from kubetrio_cni_calico.nft import PolicyTable

from .conftest import NODE, PodLab, http_get_sync

pytestmark = pytest.mark.root

NETPOL = "networking.k8s.io/v1"


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": NETPOL,
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


async def expect(lab: PodLab, source: str, target: str, *, allowed: bool) -> None:
    """Wait (up to the caller's deadline) until ``source`` → ``target`` is as expected."""
    while True:
        body = await lab.get(source, target)
        if (body == target) == allowed:
            return
        await trio.sleep(0.05)


async def check(lab: PodLab, cases: list[tuple[str, str, bool]]) -> None:
    with trio.fail_after(15):
        for source, target, allowed in cases:
            await expect(lab, source, target, allowed=allowed)
    # Once converged, every case holds at the same time (not just in turn).
    for source, target, allowed in cases:
        assert ((await lab.get(source, target)) == target) == allowed, (source, target)


async def create_namespace(lab: PodLab, name: str, labels: dict[str, str]) -> None:
    await lab.client.create(
        "v1",
        "namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
    )


async def run_agent(lab: PodLab, nursery: trio.Nursery) -> PolicyAgent:
    agent = PolicyAgent(lab.client, NODE, table=lab.table, keep_table_on_exit=False)
    await nursery.start(agent.run)
    return agent


async def test_policies_follow_the_cluster(lab: PodLab) -> None:
    await create_namespace(lab, "np-a", {"team": "a"})
    await create_namespace(lab, "np-b", {"team": "b"})
    await lab.add_pod("web", "np-a", {"app": "web"})
    await lab.add_pod("friend", "np-a", {"app": "friend"})
    await lab.add_pod("stranger", "np-a", {"app": "stranger"})
    await lab.add_pod("outsider", "np-b", {"app": "friend"})

    async def create(obj: dict[str, Any]) -> Any:
        return await lab.client.create(NETPOL, "networkpolicies", obj, namespace="np-a")

    async with trio.open_nursery() as nursery:
        await run_agent(lab, nursery)
        # No policy: everything flows.
        await check(lab, [("friend", "web", True), ("stranger", "web", True)])

        # Default deny ingress for web, added while traffic runs.
        await create(
            policy(
                "web-deny",
                {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
            )
        )
        await check(
            lab,
            [
                ("friend", "web", False),
                ("stranger", "web", False),
                ("outsider", "web", False),
                ("web", "friend", True),  # only ingress is isolated; replies flow back
            ],
        )

        # Allow from a pod selector, to the named port "http" (80 on web).
        await create(
            policy(
                "web-from-friends",
                {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"app": "friend"}}}],
                            "ports": [{"protocol": "TCP", "port": "http"}],
                        }
                    ],
                },
            )
        )
        await check(
            lab,
            [
                ("friend", "web", True),
                ("stranger", "web", False),
                ("outsider", "web", False),  # a podSelector alone means the policy's namespace
            ],
        )

        # Allow from a namespace selector.
        await create(
            policy(
                "web-from-team-b",
                {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}],
                },
            )
        )
        await check(lab, [("outsider", "web", True), ("stranger", "web", False)])

        # Egress of friend: anywhere in the pod block except web.
        await create(
            policy(
                "friend-egress",
                {
                    "podSelector": {"matchLabels": {"app": "friend"}},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "ipBlock": {
                                        "cidr": "10.244.254.0/24",
                                        "except": [f"{lab.pods['web'].ip}/32"],
                                    }
                                }
                            ]
                        }
                    ],
                },
            )
        )
        await check(
            lab,
            [
                ("friend", "web", False),
                ("friend", "stranger", True),
                ("outsider", "web", True),
            ],
        )

        # Removing the policies restores open traffic.
        for name in ("web-deny", "web-from-friends", "web-from-team-b", "friend-egress"):
            await lab.client.delete(NETPOL, "networkpolicies", name, namespace="np-a")
        await check(
            lab,
            [("friend", "web", True), ("stranger", "web", True), ("outsider", "web", True)],
        )
        nursery.cancel_scope.cancel()


async def test_combined_selectors_and_new_pods(lab: PodLab) -> None:
    """namespaceSelector + podSelector in one peer; a pod created later is picked up."""
    await create_namespace(lab, "np-c", {"team": "c"})
    await create_namespace(lab, "np-d", {"team": "d"})
    await lab.add_pod("db", "np-c", {"app": "db"})
    await lab.add_pod("d-api", "np-d", {"app": "api"})
    await lab.add_pod("d-batch", "np-d", {"app": "batch"})
    async with trio.open_nursery() as nursery:
        agent = await run_agent(lab, nursery)
        await lab.client.create(
            NETPOL,
            "networkpolicies",
            policy(
                "db-from-api",
                {
                    "podSelector": {"matchLabels": {"app": "db"}},
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {"matchLabels": {"team": "d"}},
                                    "podSelector": {"matchLabels": {"app": "api"}},
                                }
                            ],
                            "ports": [{"port": 80}],
                        }
                    ],
                },
            ),
            namespace="np-c",
        )
        await check(lab, [("d-api", "db", True), ("d-batch", "db", False)])
        await lab.add_pod("d-api-2", "np-d", {"app": "api"})
        await check(lab, [("d-api-2", "db", True)])
        assert agent.applied >= 2
        nursery.cancel_scope.cancel()


async def test_policy_sees_service_traffic_after_dnat(lab: PodLab) -> None:
    """A Service address DNATed in prerouting (as the service proxy does) meets the
    backend's ingress policy with the backend's own address."""
    await create_namespace(lab, "np-e", {})
    web = await lab.add_pod("svc-web", "np-e", {"app": "web"})
    await lab.add_pod("svc-friend", "np-e", {"app": "friend"})
    await lab.add_pod("svc-stranger", "np-e", {"app": "stranger"})
    service_ip = "10.96.254.1"
    nat_table = f"kubetrio-svc-test{lab.suffix}"
    script = "\n".join(
        [
            f"table ip {nat_table} {{",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat;",
            f"    ip daddr {service_ip} tcp dport 80 dnat to {web.ip}:80",
            "  }",
            "}",
            "",
        ]
    )
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
    try:
        async with trio.open_nursery() as nursery:
            await run_agent(lab, nursery)
            await lab.client.create(
                NETPOL,
                "networkpolicies",
                policy(
                    "web-from-friends",
                    {
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "ingress": [
                            {"from": [{"podSelector": {"matchLabels": {"app": "friend"}}}]}
                        ],
                    },
                ),
                namespace="np-e",
            )

            async def through_service(source: str) -> str:
                return await trio.to_thread.run_sync(
                    http_get_sync, lab.pods[source].netns, service_ip, 0.5
                )

            with trio.fail_after(15):
                while await through_service("svc-stranger") == "svc-web":
                    await trio.sleep(0.05)
            assert await through_service("svc-friend") == "svc-web"
            assert await through_service("svc-stranger") != "svc-web"
            nursery.cancel_scope.cancel()
    finally:
        subprocess.run(["nft", "delete", "table", "ip", nat_table], check=False)


async def test_policy_table_same_by_netlink_and_by_text() -> None:
    """A verdict-map change goes out as raw netlink in the ``inet`` table; the table it
    leaves is the one libnftables leaves for the same commands."""
    from kubetrio.nft import Nft

    from .test_policy_render import _verdict_map_change

    before, after = _verdict_map_change()
    listings = []
    for netlink in (True, False):
        netns = f"ktnft{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        try:
            table = PolicyTable(netns=netns)
            table.nft = Nft(netns, netlink=netlink)
            await table.apply(before)
            await table.apply(after)
            assert table.current is after  # the diff was applied, not a rewrite
            listings.append(await table.nft.run("list table inet kubetrio-policy"))
            await table.remove()
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=False)
    by_netlink, by_text = listings
    assert "10.0.0.2 : jump in-y" in by_text
    assert by_netlink == by_text
