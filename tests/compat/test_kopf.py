"""A kopf operator, unmodified, against the cluster: ``python -m kopf run --standalone``.

The operator (``operators/widgets.py``) runs as a real subprocess with ``KUBECONFIG``
pointing at the cluster, watching one namespace or all of them. Covered: a CRD created by
the test (with and without a status subresource), the create handler adopting a
ConfigMap (``kopf.adopt``), the update handler (retried once through kopf's progress
storage), handler results stored by kopf in ``.status.<handler>``, the last-handled
configuration annotation, kopf's finalizer (added, then removed after the delete handler
ran), a timer writing status, an Event posted by kopf, and, once the custom object is
deleted, its ConfigMap garbage-collected.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.compat.kit import CompatCluster
from tests.kit import crd, wait_until

OPERATOR = Path(__file__).parent / "operators" / "widgets.py"
GROUP = "kopf.compat.kubetrio.io"
FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"
UPDATE_ID = "update_fn/spec.size"
"""kopf's id of a handler for one field: its name, a slash, the field."""


def _crd(plural: str, *, status_subresource: bool) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return crd(
        GROUP,
        plural,
        "Widget",
        singular=plural[:-1],
        schema=schema,
        subresources={"status": {}} if status_subresource else None,
    )


class Operator:
    """The operator subprocess; its output goes to a file shown when a check fails."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        """The operator's output so far (the tail of it, without the timer's chatter)."""
        lines = self.log.read_text(errors="replace").splitlines()
        quiet = ("Timer 'tick'", "'ticks'", "we are not interested", "cycle is finished")
        return "\n".join(line for line in lines if not any(q in line for q in quiet))[-8000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def api(cluster: CompatCluster) -> Iterator[k8s.ApiClient]:
    client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield client
    client.close()


def _run_operator(
    cluster: CompatCluster, scope: list[str], plural: str, tmp_path: Path
) -> Operator:
    log = tmp_path / "operator.log"
    env = {
        **cluster.env,
        "WIDGET_GROUP": GROUP,
        "WIDGET_PLURAL": plural,
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "kopf", "run", "--standalone", "--verbose",
                *scope, str(OPERATOR),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )  # fmt: skip
    return Operator(process, log)


def _configmap(core: k8s.CoreV1Api, namespace: str, name: str) -> k8s.V1ConfigMap | None:
    try:
        return core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.mark.parametrize(
    ("status_subresource", "all_namespaces"),
    [(True, False), (False, False), (True, True)],
    ids=["status", "no-status", "status-all-namespaces"],
)
def test_kopf_operator(
    cluster: CompatCluster,
    namespace: str,
    api: k8s.ApiClient,
    tmp_path: Path,
    status_subresource: bool,
    all_namespaces: bool,
) -> None:
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    crd = _crd(plural, status_subresource=status_subresource)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    cluster.kubectl("wait", "--for=condition=established", f"crd/{plural}.{GROUP}", "--timeout=30s")
    custom = k8s.CustomObjectsApi(api)
    core = k8s.CoreV1Api(api)
    scope = ["--all-namespaces"] if all_namespaces else ["--namespace", namespace]
    operator = _run_operator(cluster, scope, plural, tmp_path)
    try:

        def widget() -> dict[str, Any]:
            got: dict[str, Any] = custom.get_namespaced_custom_object(
                GROUP, "v1", namespace, plural, "w1"
            )
            return got

        def check(predicate: Any, what: str, timeout: float = 60) -> Any:
            try:
                return wait_until(predicate, timeout=timeout, what=what)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}\n--- operator output ---\n{operator.output()}"
                ) from None

        custom.create_namespaced_custom_object(
            GROUP,
            "v1",
            namespace,
            plural,
            {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1"},
             "spec": {"size": 1}},
        )  # fmt: skip
        owner = widget()
        data = check(lambda: _configmap(core, namespace, "w1-data"), "the adopted ConfigMap")
        assert data.data == {"size": "1"}
        (ref,) = data.metadata.owner_references
        assert (ref.kind, ref.name, ref.uid) == ("Widget", "w1", owner["metadata"]["uid"])
        assert ref.controller and ref.block_owner_deletion
        assert ref.api_version == f"{GROUP}/v1"

        created = check(
            lambda: (widget().get("status") or {}).get("create_fn") and widget(),
            "the create handler's result in status",
        )
        assert created["status"]["create_fn"] == {"configmap": "w1-data"}
        assert FINALIZER in created["metadata"]["finalizers"]
        last = json.loads(created["metadata"]["annotations"][LAST_HANDLED])
        assert last["spec"] == {"size": 1}
        check(lambda: (widget().get("status") or {}).get("ticks"), "the timer's status")

        custom.patch_namespaced_custom_object(
            GROUP, "v1", namespace, plural, "w1", {"spec": {"size": 5}}
        )
        updated = check(
            lambda: (widget().get("status") or {}).get(UPDATE_ID) and widget(),
            "the update handler's result in status",
        )
        # Failed once, retried: the retry count came back from kopf's progress storage.
        assert updated["status"][UPDATE_ID] == {"size": 5, "retry": 1}
        assert core.read_namespaced_config_map("w1-data", namespace).data == {"size": "5"}
        check(
            lambda: (
                json.loads(widget()["metadata"]["annotations"][LAST_HANDLED])["spec"] == {"size": 5}
            ),
            "the last-handled configuration to follow the update",
        )

        def posted() -> list[tuple[str, str, str]]:
            events = core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=w1,involvedObject.kind=Widget"
            )
            return [(e.reason, e.message, e.type) for e in events.items]

        check(
            lambda: ("DataCreated", "created ConfigMap w1-data", "Normal") in posted(),
            "kopf's Event about the widget",
        )

        custom.delete_namespaced_custom_object(GROUP, "v1", namespace, plural, "w1")
        check(lambda: _configmap(core, namespace, "w1-farewell"), "the delete handler")

        def widget_gone() -> bool:
            try:
                widget()
            except ApiException as exc:
                return exc.status == 404
            return False

        check(widget_gone, "kopf to release its finalizer")
        check(
            lambda: _configmap(core, namespace, "w1-data") is None,
            "the adopted ConfigMap to be garbage-collected",
        )
        assert operator.process.poll() is None, operator.output()
    finally:
        operator.stop()
        cluster.kubectl("delete", "crd", f"{plural}.{GROUP}", "--wait=false", check=False)
    assert operator.process.returncode in (0, -signal.SIGTERM), operator.output()
