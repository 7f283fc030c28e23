"""A small kopf operator, run by test_kopf.py as ``python -m kopf run --standalone ...``.

Widgets (group and plural from ``WIDGET_GROUP`` / ``WIDGET_PLURAL``) get a ConfigMap
``<name>-data`` holding their ``spec.size``, adopted with ``kopf.adopt`` (so it is
garbage-collected with the widget). The update handler fails once with a temporary
error, so kopf's retry bookkeeping (its progress storage) must survive a round trip
through the server. The delete handler leaves a ``<name>-farewell`` ConfigMap behind as
proof that it ran before kopf removed its finalizer. A timer writes ``status.ticks``;
the create handler posts an Event (``kopf.info``).
"""

from __future__ import annotations

import os
from typing import Any

import kopf
import kubernetes

GROUP = os.environ["WIDGET_GROUP"]
PLURAL = os.environ["WIDGET_PLURAL"]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    kubernetes.config.load_kube_config()
    settings.watching.server_timeout = 60


def _core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api()


@kopf.on.create(GROUP, "v1", PLURAL)
def create_fn(spec: Any, name: str, namespace: str, body: Any, **_: Any) -> dict[str, Any]:
    data = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-data"},
        "data": {"size": str(spec.get("size", 0))},
    }
    kopf.adopt(data)
    _core().create_namespaced_config_map(namespace, data)
    kopf.info(body, reason="DataCreated", message=f"created ConfigMap {name}-data")
    return {"configmap": f"{name}-data"}


@kopf.on.update(GROUP, "v1", PLURAL, field="spec.size")
def update_fn(new: Any, name: str, namespace: str, retry: int, **_: Any) -> dict[str, Any]:
    if retry == 0:
        raise kopf.TemporaryError("not yet: retrying once", delay=1)
    _core().patch_namespaced_config_map(f"{name}-data", namespace, {"data": {"size": str(new)}})
    return {"size": new, "retry": retry}


@kopf.on.delete(GROUP, "v1", PLURAL)
def delete_fn(name: str, namespace: str, **_: Any) -> None:
    # Idempotent, as kopf asks of handlers: when the timer's status patch lands while
    # kopf waits for the timer to stop, kopf handles the deletion again from the stored
    # state (its in-memory success not yet persisted) and calls this a second time.
    try:
        _core().create_namespaced_config_map(
            namespace, {"metadata": {"name": f"{name}-farewell"}, "data": {"said": "bye"}}
        )
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise


@kopf.timer(GROUP, "v1", PLURAL, interval=1.0)
def tick(patch: kopf.Patch, status: Any, **_: Any) -> None:
    patch.status["ticks"] = int(status.get("ticks") or 0) + 1
