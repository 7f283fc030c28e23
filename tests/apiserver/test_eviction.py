"""``pods/eviction``: PodDisruptionBudgets decide whether a running pod may go."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kubetrio.apiserver._eviction import budget_allows

NS = "/api/v1/namespaces/default"


def _pod(ready: bool) -> dict[str, Any]:
    status = "True" if ready else "False"
    return {"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": status}]}}


@pytest.mark.parametrize(
    ("spec", "ready", "allowed"),
    [
        ({"minAvailable": 1}, 1, False),
        ({"minAvailable": 1}, 2, True),
        ({"minAvailable": "50%"}, 2, False),  # 50% of 3 rounds up to 2 needed
        ({"minAvailable": "50%"}, 3, True),
        ({"maxUnavailable": 1}, 3, True),
        ({"maxUnavailable": 0}, 3, False),
        ({"maxUnavailable": "34%"}, 2, True),  # 34% of 3 rounds up to 2 may be down
        ({"maxUnavailable": "34%"}, 1, False),
        ({}, 0, False),
    ],
)
def test_budget_arithmetic(spec: dict[str, Any], ready: int, allowed: bool) -> None:
    pods = [_pod(i < ready) for i in range(3)]
    assert budget_allows({"spec": spec}, pods)[0] is allowed


async def test_eviction_respects_a_budget(http: httpx.AsyncClient) -> None:
    created = await http.post(
        f"{NS}/pods",
        json={
            "metadata": {"name": "p", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    assert created.status_code == 201
    pod = created.json()
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    assert (await http.put(f"{NS}/pods/p/status", json=pod)).status_code == 200
    budget = await http.post(
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        json={
            "metadata": {"name": "b"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}},
        },
    )
    assert budget.status_code == 201, budget.text
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}
    refused = await http.post(f"{NS}/pods/p/eviction", json=eviction)
    assert refused.status_code == 429, refused.text
    assert refused.json()["reason"] == "TooManyRequests"
    assert "needs 1 healthy pods and has 1" in refused.text
    await http.delete("/apis/policy/v1/namespaces/default/poddisruptionbudgets/b")
    done = await http.post(f"{NS}/pods/p/eviction", json=eviction)
    assert done.status_code == 201, done.text
    assert done.json()["status"] == "Success"
    assert (await http.get(f"{NS}/pods/p")).status_code == 404
    missing = await http.post(f"{NS}/pods/p/eviction", json=eviction)
    assert missing.status_code == 404
