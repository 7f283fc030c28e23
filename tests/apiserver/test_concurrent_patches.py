"""Patches that name no resourceVersion never conflict: the server re-applies them.

kopf writes a custom object's status (a timer, a handler's result) with merge patches on
``/status`` while it patches the main resource; upstream re-applies such a patch to the
fresh object when another write came first. A 409 here made kopf drop the write.
"""

from __future__ import annotations

import httpx
import trio

from tests.kit import crd

CRD = crd("example.com", "gauges", "Gauge", subresources={"status": {}})
GAUGES = "/apis/example.com/v1/namespaces/default/gauges"
MERGE = {"content-type": "application/merge-patch+json"}
JSON_PATCH = {"content-type": "application/json-patch+json"}


async def test_concurrent_patches_without_resource_version_all_apply(
    http: httpx.AsyncClient,
) -> None:
    created = await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD)
    assert created.status_code == 201
    with trio.fail_after(10):
        while (await http.get("/apis/example.com/v1")).status_code != 200:
            await trio.sleep(0.05)
    body = {"apiVersion": "example.com/v1", "kind": "Gauge", "metadata": {"name": "g"}}
    assert (await http.post(GAUGES, json=body)).status_code == 201
    codes: list[int] = []

    async def status_merge(i: int) -> None:
        patch = {"status": {f"k{i}": i}}
        response = await http.patch(f"{GAUGES}/g/status", json=patch, headers=MERGE)
        codes.append(response.status_code)

    async def main_merge(i: int) -> None:
        patch = {"metadata": {"annotations": {f"a{i}": str(i)}}}
        response = await http.patch(f"{GAUGES}/g", json=patch, headers=MERGE)
        codes.append(response.status_code)

    async def main_json_patch(i: int) -> None:
        ops = [{"op": "add", "path": f"/metadata/labels/l{i}", "value": str(i)}]
        response = await http.patch(f"{GAUGES}/g", json=ops, headers=JSON_PATCH)
        codes.append(response.status_code)

    labels = await http.patch(
        f"{GAUGES}/g", json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE
    )
    assert labels.status_code == 200
    async with trio.open_nursery() as nursery:
        for i in range(1, 9):
            nursery.start_soon(status_merge, i)
            nursery.start_soon(main_merge, i)
            nursery.start_soon(main_json_patch, i)
    assert codes == [200] * len(codes)
    gauge = (await http.get(f"{GAUGES}/g")).json()
    assert gauge["status"] == {f"k{i}": i for i in range(1, 9)}
    assert set(gauge["metadata"]["annotations"]) == {f"a{i}" for i in range(1, 9)}
    assert set(gauge["metadata"]["labels"]) == {"x"} | {f"l{i}" for i in range(1, 9)}
    # A stale resourceVersion named by the patch is still a precondition.
    stale = await http.patch(
        f"{GAUGES}/g/status",
        json={"metadata": {"resourceVersion": "1"}, "status": {"z": 1}},
        headers=MERGE,
    )
    assert stale.status_code == 409
    failed_test = await http.patch(
        f"{GAUGES}/g",
        json=[{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}],
        headers=JSON_PATCH,
    )
    assert failed_test.status_code == 422
