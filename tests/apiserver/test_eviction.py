"""``pods/eviction``: a PodDisruptionBudget's status decides whether a running pod may go.

The budget's status is written here as the disruption controller would (its own tests are
in tests/controllers/test_disruption.py), so these tests see only the subresource.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from kubetrio.apiserver._eviction import spend_disruption
from kubetrio.apiserver._status import ApiError

NS = "/api/v1/namespaces/default"
BUDGETS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
EVICTION = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}


def _budget(status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "b", "generation": generation}, "spec": {}, "status": status}


def test_spending_the_last_disruption_records_the_pod_and_flips_the_condition() -> None:
    budget = _budget(
        {"observedGeneration": 1, "disruptionsAllowed": 1, "desiredHealthy": 2, "currentHealthy": 3}
    )
    spent = spend_disruption(budget, "p", dry_run=False)
    assert spent["status"]["disruptionsAllowed"] == 0
    assert set(spent["status"]["disruptedPods"]) == {"p"}
    [condition] = spent["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "DisruptionAllowed",
        "False",
        "InsufficientPods",
    )
    assert "status" not in budget or budget["status"].get("disruptedPods") is None
    dry = spend_disruption(budget, "p", dry_run=True)
    assert dry["status"]["disruptionsAllowed"] == 0 and "disruptedPods" not in dry["status"]


@pytest.mark.parametrize(
    ("status", "generation", "code", "text"),
    [
        ({"observedGeneration": 1, "disruptionsAllowed": 1}, 2, 429, "still being processed"),
        (
            {
                "observedGeneration": 1,
                "disruptionsAllowed": 0,
                "desiredHealthy": 2,
                "currentHealthy": 2,
            },
            1,
            429,
            "The disruption budget b needs 2 healthy pods and has 2 currently",
        ),
        ({"observedGeneration": 1, "disruptionsAllowed": -1}, 1, 403, "negative"),
    ],
)
def test_refusals(status: dict[str, Any], generation: int, code: int, text: str) -> None:
    with pytest.raises(ApiError) as refused:
        spend_disruption(_budget(status, generation), "p", dry_run=False)
    assert refused.value.code == code
    assert text in str(refused.value.status())


async def _running_pod(http: httpx.AsyncClient, name: str, *, ready: bool = True) -> None:
    created = await http.post(
        f"{NS}/pods",
        json={
            "metadata": {"name": name, "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    assert created.status_code == 201
    pod = created.json()
    flag = "True" if ready else "False"
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": flag}]}
    assert (await http.put(f"{NS}/pods/{name}/status", json=pod)).status_code == 200


async def _budget_with_status(http: httpx.AsyncClient, status: dict[str, Any]) -> None:
    made = await http.post(
        BUDGETS,
        json={
            "metadata": {"name": "b"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}},
        },
    )
    assert made.status_code == 201, made.text
    budget = made.json()
    budget["status"] = {"observedGeneration": 1, **status}
    written = await http.put(f"{BUDGETS}/b/status", json=budget)
    assert written.status_code == 200, written.text


async def test_eviction_spends_the_budget_before_deleting(http: httpx.AsyncClient) -> None:
    await _running_pod(http, "p")
    await _running_pod(http, "q")
    await _budget_with_status(
        http, {"disruptionsAllowed": 1, "desiredHealthy": 1, "currentHealthy": 2}
    )
    done = await http.post(f"{NS}/pods/p/eviction", json=EVICTION)
    assert done.status_code == 201, done.text
    assert done.json()["status"] == "Success"
    assert (await http.get(f"{NS}/pods/p")).status_code == 404
    status = (await http.get(f"{BUDGETS}/b")).json()["status"]
    assert status["disruptionsAllowed"] == 0 and set(status["disruptedPods"]) == {"p"}
    refused = await http.post(f"{NS}/pods/q/eviction", json={**EVICTION, "metadata": {"name": "q"}})
    assert refused.status_code == 429, refused.text
    assert refused.json()["reason"] == "TooManyRequests"
    assert refused.json()["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget b needs 1 healthy pods and has 2 currently",
        }
    ]
    assert (await http.get(f"{NS}/pods/q")).status_code == 200


async def test_concurrent_evictions_spend_one_disruption_once(http: httpx.AsyncClient) -> None:
    names = [f"p{i}" for i in range(6)]
    for name in names:
        await _running_pod(http, name)
    await _budget_with_status(
        http, {"disruptionsAllowed": 1, "desiredHealthy": 5, "currentHealthy": 6}
    )
    codes: list[int] = []

    async def evict(name: str) -> None:
        answer = await http.post(
            f"{NS}/pods/{name}/eviction", json={**EVICTION, "metadata": {"name": name}}
        )
        codes.append(answer.status_code)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(evict, name)
    assert sorted(codes) == [201] + [429] * 5


async def test_a_not_ready_pod_goes_when_the_budget_is_healthy(http: httpx.AsyncClient) -> None:
    await _running_pod(http, "p", ready=False)
    await _budget_with_status(
        http, {"disruptionsAllowed": 0, "desiredHealthy": 1, "currentHealthy": 1}
    )
    done = await http.post(f"{NS}/pods/p/eviction", json=EVICTION)
    assert done.status_code == 201, done.text
    status = (await http.get(f"{BUDGETS}/b")).json()["status"]
    assert "disruptedPods" not in status  # nothing was spent


async def test_an_unprocessed_budget_answers_retry_later(http: httpx.AsyncClient) -> None:
    await _running_pod(http, "p")
    made = await http.post(
        BUDGETS,
        json={"metadata": {"name": "b"}, "spec": {"selector": {"matchLabels": {"app": "a"}}}},
    )
    assert made.status_code == 201
    refused = await http.post(f"{NS}/pods/p/eviction", json=EVICTION)
    assert refused.status_code == 429
    assert refused.json()["details"]["retryAfterSeconds"] == 10
    assert "is still being processed by the server" in refused.text


async def test_eviction_without_a_budget_and_of_a_missing_pod(http: httpx.AsyncClient) -> None:
    await _running_pod(http, "p")
    done = await http.post(f"{NS}/pods/p/eviction", json=EVICTION)
    assert done.status_code == 201, done.text
    missing = await http.post(f"{NS}/pods/p/eviction", json=EVICTION)
    assert missing.status_code == 404
