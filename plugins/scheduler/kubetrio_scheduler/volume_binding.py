"""VolumeBinding: a pod's PersistentVolumeClaims decide where it may run, as kube-scheduler's.

- pre_filter: a claim that is missing, lost or being deleted, or an unbound claim that is
  not ``WaitForFirstConsumer`` (the PV controller binds those, not the scheduler), makes
  the pod unschedulable everywhere;
- filter, per node: a bound claim's PV must have ``nodeAffinity`` matching the node
  ("node(s) had volume node affinity conflict"); an unbound ``WaitForFirstConsumer``
  claim needs an Available PV it can bind that is reachable from the node (class, size,
  access modes, volume mode, selector, node affinity; the smallest wins), or a class whose
  provisioner can provision there (not ``kubernetes.io/no-provisioner``, node in
  ``allowedTopologies``) — else "node(s) didn't find available persistent volumes to bind";
- reserve: the chosen PVs and claims are *assumed*, so the next pods' cycles do not pick
  the same PV before the API shows the binding;
- pre_bind: static matches get the PV's ``claimRef`` (and ``bound-by-controller``), claims
  to provision get the ``volume.kubernetes.io/selected-node`` annotation; then it waits
  until every claim is bound (``bindTimeoutSeconds``, default 600) — a provisioner that
  gives up removes the annotation, which fails the binding, and the pod is retried.

The PersistentVolume controller (binder and provisioner) does the rest; this plugin only
reads the claims, volumes and classes from caches the scheduler keeps for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from kubetrio.api.selectors import LabelSelectorError
from kubetrio.api.storage import (
    find_matching_volume,
    is_bound_to,
    requested_bytes,
)
from kubetrio.api.storage import storage_class as class_of
from kubetrio.providers import (
    SKIP,
    ApiCaches,
    CycleState,
    FilterResult,
    KubeObject,
    NodeInfo,
    ObjectCache,
    PodInfo,
    Unresolvable,
)

from .node_affinity import term_matcher

SELECTED_NODE = "volume.kubernetes.io/selected-node"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
NO_PROVISIONER = "kubernetes.io/no-provisioner"

NODE_CONFLICT = "node(s) had volume node affinity conflict"
BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"


def fully_bound(claim: KubeObject) -> bool:
    """A claim the PV controller has finished binding (``volumeName`` and bind-completed;
    ``status.phase: Bound`` counts too, for claims bound by hand)."""
    annotations = claim["metadata"].get("annotations") or {}
    return bool((claim.get("spec") or {}).get("volumeName")) and (
        BIND_COMPLETED in annotations or (claim.get("status") or {}).get("phase") == "Bound"
    )


def affinity_matches(pv: KubeObject, node: NodeInfo) -> bool:
    """Whether the PV's ``spec.nodeAffinity.required`` terms (ORed) match the node."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return True
    return any(term_matcher(term)(node) for term in required.get("nodeSelectorTerms") or [])


def topology_matches(storage_class: KubeObject, node: NodeInfo) -> bool:
    """``allowedTopologies``: terms ORed, each ``matchLabelExpressions`` entry ANDed (the
    node's label must be one of ``values``); none means anywhere."""
    terms = storage_class.get("allowedTopologies") or []
    if not terms:
        return True
    for term in terms:
        if all(
            node.labels.get(str(expr.get("key"))) in {str(v) for v in expr.get("values") or []}
            for expr in term.get("matchLabelExpressions") or []
        ):
            return True
    return False


def _key(claim: KubeObject) -> str:
    return f"{claim['metadata'].get('namespace') or ''}/{claim['metadata']['name']}"


@dataclasses.dataclass
class PodVolumes:
    """What one node needs for the pod's unbound claims."""

    static: list[tuple[KubeObject, KubeObject]] = dataclasses.field(default_factory=list)
    """(claim, PV) pairs to bind."""
    provision: list[KubeObject] = dataclasses.field(default_factory=list)
    """Claims to provision on the node."""


@dataclasses.dataclass
class _State:
    bound: list[KubeObject]
    delayed: list[KubeObject]
    by_node: dict[str, PodVolumes] = dataclasses.field(default_factory=dict)
    reserved: PodVolumes | None = None


class VolumeBinding:
    """See the module docstring. ``configured({"bindTimeoutSeconds": n})`` sets the wait."""

    name = "VolumeBinding"

    def __init__(self, *, bind_timeout: float = 600.0, poll_interval: float = 1.0) -> None:
        self.bind_timeout = bind_timeout
        self.poll_interval = poll_interval
        self.claims: ObjectCache | None = None
        self.volumes: ObjectCache | None = None
        self.classes: ObjectCache | None = None
        self._assumed_volumes: dict[str, str] = {}
        """PV name → claim key, for static bindings reserved but not yet seen bound."""
        self._assumed_nodes: dict[str, str] = {}
        """Claim key → selected node, for provisioning reserved but not yet annotated."""

    def configured(self, args: Mapping[str, Any]) -> VolumeBinding:
        """A copy with the profile's ``bindTimeoutSeconds``."""
        return VolumeBinding(
            bind_timeout=float(args.get("bindTimeoutSeconds", self.bind_timeout)),
            poll_interval=self.poll_interval,
        )

    def ask_for_caches(self, caches: ApiCaches) -> None:
        """Claims, volumes and classes, kept current by the scheduler."""
        self.claims = caches.informer("v1", "persistentvolumeclaims")
        self.volumes = caches.informer("v1", "persistentvolumes")
        self.classes = caches.informer("storage.k8s.io/v1", "storageclasses")

    # --- pre_filter -----------------------------------------------------------------------

    def _class_object(self, name: str) -> KubeObject | None:
        return self.classes.get(name) if self.classes is not None and name else None

    def _delay_binding(self, claim: KubeObject) -> bool:
        found = self._class_object(class_of(claim))
        return found is not None and found.get("volumeBindingMode") == "WaitForFirstConsumer"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> FilterResult | Any:
        """Sort the pod's claims into bound and to-bind-here; refuse missing ones."""
        names: list[tuple[str, bool]] = []
        for volume in (pod.pod.get("spec") or {}).get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                names.append((str(volume["persistentVolumeClaim"].get("claimName", "")), False))
            elif "ephemeral" in volume:
                names.append((f"{pod.name}-{volume['name']}", True))
        if not names or self.claims is None:
            return SKIP
        bound: list[KubeObject] = []
        delayed: list[KubeObject] = []
        immediate = False
        for name, ephemeral in names:
            claim = self.claims.get(name, pod.namespace)
            if claim is None:
                if ephemeral:
                    return Unresolvable(
                        "waiting for ephemeral volume controller to create the "
                        f'persistentvolumeclaim "{name}"'
                    )
                return Unresolvable(f'persistentvolumeclaim "{name}" not found')
            spec = claim.get("spec") or {}
            if (claim.get("status") or {}).get("phase") == "Lost":
                return Unresolvable(
                    f'persistentvolumeclaim "{name}" bound to non-existent persistentvolume '
                    f'"{spec.get("volumeName", "")}"'
                )
            if claim["metadata"].get("deletionTimestamp"):
                return Unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            if fully_bound(claim):
                bound.append(claim)
            elif self._delay_binding(claim) and not spec.get("volumeName"):
                delayed.append(claim)
            else:
                immediate = True  # the PV controller binds these (also pre-bound ones)
        if immediate:
            return Unresolvable(UNBOUND_IMMEDIATE)
        state[self.name] = _State(bound, delayed)
        return None

    # --- filter ---------------------------------------------------------------------------

    def filter(self, pod: KubeObject, node: NodeInfo, state: CycleState) -> FilterResult:
        """Bound claims' PVs reachable from the node; unbound ones bindable or provisionable."""
        found: _State | None = state.get(self.name)
        if found is None or self.volumes is None:
            return None
        reasons: list[str] = []
        for claim in found.bound:
            pv = self.volumes.get(str(claim["spec"]["volumeName"]))
            if pv is None:
                reasons.append(PV_NOT_EXIST)
            elif not affinity_matches(pv, node):
                reasons.append(NODE_CONFLICT)
        if found.delayed:
            plan = self._find(found.delayed, node)
            if plan is None:
                reasons.append(BIND_CONFLICT)
            else:
                found.by_node[node.name] = plan
        if reasons:
            ordered = [r for r in (NODE_CONFLICT, BIND_CONFLICT, PV_NOT_EXIST) if r in reasons]
            return [Unresolvable(r) for r in ordered]
        return None

    def _find(self, claims: Sequence[KubeObject], node: NodeInfo) -> PodVolumes | None:
        plan = PodVolumes()
        to_match = []
        for claim in claims:
            selected = (claim["metadata"].get("annotations") or {}).get(
                SELECTED_NODE
            ) or self._assumed_nodes.get(_key(claim))
            if selected:
                if selected != node.name:
                    return None
                plan.provision.append(claim)
            else:
                to_match.append(claim)
        chosen: set[str] = set()
        for claim in sorted(to_match, key=lambda c: requested_bytes(c)):
            pv = self._matching_volume(claim, node, chosen)
            if pv is None:
                plan.provision.append(claim)
            else:
                chosen.add(pv["metadata"]["name"])
                plan.static.append((claim, pv))
        for claim in plan.provision:
            storage_class = self._class_object(class_of(claim))
            if storage_class is None:
                return None
            provisioner = storage_class.get("provisioner") or ""
            if not provisioner or provisioner == NO_PROVISIONER:
                return None
            if not topology_matches(storage_class, node):
                return None
        return plan

    def _matching_volume(
        self, claim: KubeObject, node: NodeInfo, excluded: set[str]
    ) -> KubeObject | None:
        """upstream's ``FindMatchingVolume`` on the scheduler path: a PV pre-bound to the
        claim if reachable, else the smallest Available PV that fits."""
        assert self.volumes is not None
        key = _key(claim)

        def skip(pv: KubeObject) -> bool:
            name = pv["metadata"]["name"]
            # Excluded, or reserved for another claim by a pod being bound.
            return name in excluded or self._assumed_volumes.get(name, key) != key

        try:
            return find_matching_volume(
                claim,
                self.volumes.list(),
                reachable=lambda pv: affinity_matches(pv, node),
                skip=skip,
            )
        except LabelSelectorError:
            return None

    # --- reserve, pre_bind ----------------------------------------------------------------

    def reserve(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> str | None:
        """Assume the node's plan, so other pods' cycles see the PVs and claims taken."""
        found: _State | None = state.get(self.name)
        if found is None:
            return None
        plan = found.by_node.get(node.name)
        if plan is None:
            return None
        for claim, pv in plan.static:
            self._assumed_volumes[pv["metadata"]["name"]] = _key(claim)
        for claim in plan.provision:
            self._assumed_nodes[_key(claim)] = node.name
        found.reserved = plan
        return None

    def unreserve(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> None:
        """Forget what :meth:`reserve` assumed."""
        found: _State | None = state.get(self.name)
        if found is None or found.reserved is None:
            return
        self._forget(found.reserved)
        found.reserved = None

    def _forget(self, plan: PodVolumes) -> None:
        for _claim, pv in plan.static:
            self._assumed_volumes.pop(pv["metadata"]["name"], None)
        for claim in plan.provision:
            self._assumed_nodes.pop(_key(claim), None)

    async def pre_bind(
        self, client: Any, state: CycleState, pod: PodInfo, node_name: str
    ) -> str | None:
        """Write the bindings and wait until the PV controller has bound every claim."""
        found: _State | None = state.get(self.name)
        plan = found.reserved if found is not None else None
        if plan is None or (not plan.static and not plan.provision):
            return None
        try:
            for claim, pv in plan.static:
                meta = claim["metadata"]
                patch: KubeObject = {
                    "spec": {
                        "claimRef": {
                            "kind": "PersistentVolumeClaim",
                            "apiVersion": "v1",
                            "namespace": meta.get("namespace"),
                            "name": meta["name"],
                            "uid": meta.get("uid"),
                            "resourceVersion": meta.get("resourceVersion"),
                        }
                    }
                }
                if not is_bound_to(pv, claim):
                    patch["metadata"] = {"annotations": {BOUND_BY_CONTROLLER: "yes"}}
                await client.patch("v1", "persistentvolumes", pv["metadata"]["name"], patch)
            for claim in plan.provision:
                meta = claim["metadata"]
                await client.patch(
                    "v1",
                    "persistentvolumeclaims",
                    meta["name"],
                    {"metadata": {"annotations": {SELECTED_NODE: node_name}}},
                    namespace=meta.get("namespace"),
                )
            seen: set[str] = set()
            with trio.move_on_after(self.bind_timeout):
                while True:
                    problem, done = self._check(plan, node_name, seen)
                    if problem:
                        return f"binding volumes: {problem}"
                    if done:
                        return None
                    await trio.sleep(self.poll_interval)
            return "binding volumes: timed out waiting for the condition"
        except Exception as exc:
            return f"binding volumes: {exc}"
        finally:
            self._forget(plan)

    def _check(self, plan: PodVolumes, node_name: str, seen: set[str]) -> tuple[str, bool]:
        """(why binding failed, or "", whether every claim is bound) — from the caches.

        ``seen`` holds the claims whose selected-node annotation the cache has shown: one
        that loses it afterwards was given up by its provisioner."""
        assert self.claims is not None and self.volumes is not None
        done = True
        for claim, pv in plan.static:
            meta = claim["metadata"]
            current = self.volumes.get(pv["metadata"]["name"])
            if current is None or not (current.get("spec") or {}).get("claimRef"):
                return f'ClaimRef got reset for pv "{pv["metadata"]["name"]}"', False
            latest = self.claims.get(meta["name"], meta.get("namespace") or "")
            if latest is None:
                return f'persistentvolumeclaim "{meta["name"]}" not found', False
            done = done and fully_bound(latest)
        for claim in plan.provision:
            meta = claim["metadata"]
            latest = self.claims.get(meta["name"], meta.get("namespace") or "")
            if latest is None:
                return f'persistentvolumeclaim "{meta["name"]}" not found', False
            if fully_bound(latest):
                continue
            selected = (latest["metadata"].get("annotations") or {}).get(SELECTED_NODE)
            if selected == node_name:
                seen.add(_key(claim))
            elif selected is not None or _key(claim) in seen:
                return f'provisioning failed for PVC "{meta["name"]}"', False
            done = False
        return "", done
