"""APIServices: ``apiregistration.k8s.io/v1`` objects for the API this server serves.

kube-apiserver's aggregator keeps one APIService per group/version. Its autoregister
controller creates a *local* one (``spec.service`` unset) for each built-in group/version
on start (``v1.`` for the core group, ``v1.apps``, ``v2.autoscaling`` …, labelled
``kube-aggregator.kubernetes.io/automanaged: onstart``), and tools list them
(``kubectl get apiservices``) or create their own.

Aggregation itself — proxying a group/version to the Service an APIService names — is
not implemented: such APIServices are stored and served, their Available condition says
False with reason ``NotProxied``, and their group is not added to discovery.
"""

from __future__ import annotations

from kubetrio.api.scheme import GROUP_ORDER, Scheme

from . import _objects as objects
from ._defaults import api_service_status
from ._registry import Registry
from ._status import ApiError

AUTOMANAGED_LABEL = "kube-aggregator.kubernetes.io/automanaged"

PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("batch", "v1"): (17400, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("metrics.k8s.io", "v1beta1"): (100, 100),  # metrics-server's APIService
}
"""(groupPriorityMinimum, versionPriority) of kube-apiserver's built-in group/versions
(``apiVersionPriorities``); any other group served at start gets CRDs' (1000, 100)."""


def api_service_name(group: str, version: str) -> str:
    """An APIService's name: ``<version>.<group>`` (``v1.`` for the core group)."""
    return f"{version}.{group}"


def local_api_service(group: str, version: str) -> dict[str, object]:
    """The local APIService kube-apiserver registers for a group/version it serves."""
    group_priority, version_priority = PRIORITIES.get((group, version), (1000, 100))
    spec: dict[str, object] = {"version": version}
    if group:
        spec["group"] = group
    spec["groupPriorityMinimum"] = group_priority
    spec["versionPriority"] = version_priority
    obj: dict[str, object] = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {
            "name": api_service_name(group, version),
            "labels": {AUTOMANAGED_LABEL: "onstart"},
        },
        "spec": spec,
    }
    obj["status"] = api_service_status(obj, objects.now_rfc3339())
    return obj


async def ensure_local_api_services(registry: Registry, scheme: Scheme) -> None:
    """Create the local APIService of every group/version the scheme serves, if missing."""
    info = scheme.resource("apiregistration.k8s.io", "v1", "apiservices")
    if info is None:
        return
    order = {group: i for i, (group, _) in enumerate(GROUP_ORDER)}
    served = sorted(
        {(r.group, r.version) for r in scheme}, key=lambda gv: (order.get(gv[0], 99), gv)
    )
    for group, version in served:
        try:
            await registry.create(info, "", local_api_service(group, version))
        except ApiError as exc:
            if exc.code != 409:  # already there (a restart): left as it is, as upstream
                raise
