"""The built-in plugins, one by one, with the behaviours the Kubernetes docs describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrio_scheduler._counting import NodeCounts
from kubetrio_scheduler.image_locality import ImageLocality
from kubetrio_scheduler.interpod_affinity import InterPodAffinity
from kubetrio_scheduler.node_affinity import NodeAffinity
from kubetrio_scheduler.resources import NodeResourcesBalancedAllocation, NodeResourcesFit
from kubetrio_scheduler.taints import TaintToleration
from kubetrio_scheduler.topology_spread import PodTopologySpread

from kubetrio.providers import SKIP, Unresolvable
from kubetrio.scheduler import pod_info

Factory = Callable[..., Any]


def run_filter(plugin: Any, snap: Any, pod: dict[str, Any], node_name: str) -> Any:
    state = snap.state(pod)
    pre = getattr(plugin, "pre_filter", None)
    if pre is not None and pre(state, state.pod_info) is SKIP:
        return None
    return plugin.filter(pod, snap.node(node_name), state)


# --- NodeResourcesFit -------------------------------------------------------------------------


def test_fit_reports_every_missing_resource(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot([node("n1", cpu="1", memory="1Gi", pods="2")])
    fit = NodeResourcesFit()
    assert run_filter(fit, snap, pod("p", cpu="500m", memory="512Mi"), "n1") is None
    assert run_filter(fit, snap, pod("p", cpu="2", memory="2Gi"), "n1") == [
        "Insufficient cpu",
        "Insufficient memory",
    ]


def test_fit_counts_pods_already_on_the_node(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    placed = [pod(f"q{i}", cpu="400m", node_name="n1") for i in range(2)]
    snap = snapshot([node("n1", cpu="1", pods="3")], placed)
    fit = NodeResourcesFit()
    assert run_filter(fit, snap, pod("p", cpu="200m"), "n1") is None
    assert run_filter(fit, snap, pod("p", cpu="300m"), "n1") == ["Insufficient cpu"]
    full = snapshot([node("n1", pods="2")], placed)
    assert run_filter(fit, full, pod("p"), "n1") == ["Too many pods"]


def test_init_containers_count_by_the_max_rule(pod: Factory) -> None:
    spec = pod("p", cpu="500m", memory="100Mi")
    spec["spec"]["initContainers"] = [
        {"name": "i1", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "50Mi"}}},
        {"name": "i2", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
    ]
    info = pod_info(spec)
    # cpu: the biggest init container (2) beats the app (0.5); memory: 1Gi beats 100Mi.
    assert info.requests == {"cpu": 2000, "memory": 1024**3}


def test_sidecars_add_to_the_containers_and_overhead_is_added(pod: Factory) -> None:
    spec = pod("p", cpu="500m")
    spec["spec"]["initContainers"] = [
        {
            "name": "sidecar",
            "image": "x",
            "restartPolicy": "Always",
            "resources": {"requests": {"cpu": "250m"}},
        },
        {"name": "setup", "image": "x", "resources": {"requests": {"cpu": "600m"}}},
    ]
    spec["spec"]["overhead"] = {"cpu": "100m"}
    # max(500 + 250, 250 + 600) + 100
    assert pod_info(spec).requests["cpu"] == 950


def test_limits_stand_in_for_missing_requests(pod: Factory) -> None:
    spec = pod("p")
    spec["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "300m"}}
    assert pod_info(spec).requests["cpu"] == 300


def test_least_allocated_prefers_the_emptier_node(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [node("busy", cpu="4", memory="8Gi"), node("idle", cpu="4", memory="8Gi")],
        [pod("q", cpu="3", memory="6Gi", node_name="busy")],
    )
    p = pod("p", cpu="500m", memory="1Gi")
    state = snap.state(p)
    least = NodeResourcesFit()
    assert least.score(p, snap.node("idle"), state) > least.score(p, snap.node("busy"), state)
    most = least.configured({"scoringStrategy": {"type": "MostAllocated"}})
    assert most.score(p, snap.node("busy"), state) > most.score(p, snap.node("idle"), state)


def test_balanced_allocation_prefers_even_use(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [node("cpu-heavy", cpu="4", memory="8Gi"), node("even", cpu="4", memory="8Gi")],
        [
            pod("a", cpu="3", memory="1Gi", node_name="cpu-heavy"),
            pod("b", cpu="2", memory="4Gi", node_name="even"),
        ],
    )
    p = pod("p", cpu="100m", memory="100Mi")
    state = snap.state(p)
    balanced = NodeResourcesBalancedAllocation()
    assert balanced.score(p, snap.node("even"), state) > balanced.score(
        p, snap.node("cpu-heavy"), state
    )


# --- NodeAffinity -----------------------------------------------------------------------------


def with_required(p: dict[str, Any], *terms: dict[str, Any]) -> dict[str, Any]:
    p["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }
    return p


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


def test_node_selector(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot([node("ssd", labels={"disk": "ssd"}), node("hdd", labels={"disk": "hdd"})])
    p = pod("p", nodeSelector={"disk": "ssd"})
    affinity = NodeAffinity()
    assert run_filter(affinity, snap, p, "ssd") is None
    reason = run_filter(affinity, snap, p, "hdd")
    assert reason == "node(s) didn't match Pod's node affinity/selector"
    assert isinstance(reason, Unresolvable)
    assert affinity.pre_filter(snap.state(pod("q")), pod_info(pod("q"))) is SKIP


def test_every_operator(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot(
        [
            node("a", labels={"zone": "a", "gen": "5"}),
            node("b", labels={"zone": "b", "gen": "3"}),
            node("c", labels={"zone": "c"}),
        ]
    )
    affinity = NodeAffinity()

    def fits(*requirements: dict[str, Any]) -> list[str]:
        p = with_required(pod("p"), {"matchExpressions": list(requirements)})
        return [n for n in ("a", "b", "c") if run_filter(affinity, snap, p, n) is None]

    assert fits(expr("zone", "In", "a", "b")) == ["a", "b"]
    assert fits(expr("zone", "NotIn", "a")) == ["b", "c"]
    assert fits(expr("gen", "Exists")) == ["a", "b"]
    assert fits(expr("gen", "DoesNotExist")) == ["c"]
    assert fits(expr("gen", "Gt", "4")) == ["a"]
    assert fits(expr("gen", "Lt", "4")) == ["b"]
    assert fits(expr("zone", "In", "a", "b"), expr("gen", "Lt", "4")) == ["b"]  # ANDed


def test_terms_are_ored_and_match_fields_name_nodes(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot([node("a", labels={"zone": "a"}), node("b"), node("c")])
    affinity = NodeAffinity()
    p = with_required(
        pod("p"),
        {"matchExpressions": [expr("zone", "In", "a")]},
        {"matchFields": [expr("metadata.name", "In", "c")]},
    )
    assert [n for n in "abc" if run_filter(affinity, snap, p, n) is None] == ["a", "c"]
    empty = with_required(pod("p"), {})
    assert [n for n in "abc" if run_filter(affinity, snap, empty, n) is None] == []


def test_preferred_terms_score_by_weight(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot([node("a", labels={"zone": "a"}), node("b", labels={"zone": "b"}), node("c")])
    p = pod("p")
    p["spec"]["affinity"] = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [expr("zone", "In", "a")]}},
                {"weight": 20, "preference": {"matchExpressions": [expr("zone", "In", "b")]}},
            ]
        }
    }
    affinity = NodeAffinity()
    state = snap.state(p)
    nodes = [snap.node(n) for n in "abc"]
    assert affinity.pre_score(state, state.pod_info, nodes) is None
    scores = {n.name: float(affinity.score(p, n, state)) for n in nodes}
    affinity.normalize_scores(state, state.pod_info, scores)
    assert scores == {"a": 100, "b": 25, "c": 0}


# --- TaintToleration --------------------------------------------------------------------------


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> dict[str, str]:
    return {"key": key, "value": value, "effect": effect}


def test_untolerated_taints_filter_with_kube_scheduler_wording(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [
            node("gpu", taints=[taint("gpu", "true")]),
            node("evict", taints=[taint("dedicated", "db", "NoExecute")]),
            node("soft", taints=[taint("spot", "yes", "PreferNoSchedule")]),
        ]
    )
    tt = TaintToleration()
    assert run_filter(tt, snap, pod("p"), "gpu") == "node(s) had untolerated taint {gpu: true}"
    assert run_filter(tt, snap, pod("p"), "evict") == (
        "node(s) had untolerated taint {dedicated: db}"
    )
    assert run_filter(tt, snap, pod("p"), "soft") is None  # PreferNoSchedule only scores


def test_tolerations(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot([node("gpu", taints=[taint("gpu", "true")])])
    tt = TaintToleration()

    def fits(*tolerations: dict[str, str]) -> bool:
        return run_filter(tt, snap, pod("p", tolerations=list(tolerations)), "gpu") is None

    assert fits({"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"})
    assert fits({"key": "gpu", "value": "true"})  # Equal is the default, any effect
    assert fits({"key": "gpu", "operator": "Exists"})
    assert fits({"operator": "Exists"})  # an empty key with Exists tolerates everything
    assert not fits({"key": "gpu", "value": "false"})
    assert not fits({"key": "gpu", "operator": "Exists", "effect": "NoExecute"})
    assert not fits({"key": "other", "operator": "Exists"})


def test_prefer_no_schedule_lowers_the_score(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [node("clean"), node("spot", taints=[taint("spot", "yes", "PreferNoSchedule")])]
    )
    tt = TaintToleration()
    p = pod("p")
    state = snap.state(p)
    scores = {n: float(tt.score(p, snap.node(n), state)) for n in ("clean", "spot")}
    tt.normalize_scores(state, state.pod_info, scores)
    assert scores == {"clean": 100, "spot": 0}
    tolerant = pod("t", tolerations=[{"key": "spot", "operator": "Exists"}])
    assert tt.score(tolerant, snap.node("spot"), snap.state(tolerant)) == 0


# --- InterPodAffinity -------------------------------------------------------------------------


def anti(selector: dict[str, str], key: str = "kubernetes.io/hostname", **extra: Any) -> Any:
    term = {"labelSelector": {"matchLabels": selector}, "topologyKey": key, **extra}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def near(selector: dict[str, str], key: str = "zone", **extra: Any) -> Any:
    term = {"labelSelector": {"matchLabels": selector}, "topologyKey": key, **extra}
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def zones(node: Factory) -> list[dict[str, Any]]:
    return [
        node("a1", labels={"zone": "a"}),
        node("a2", labels={"zone": "a"}),
        node("b1", labels={"zone": "b"}),
    ]


def test_required_anti_affinity(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot(zones(node), [pod("web-0", labels={"app": "web"}, node_name="a1")])
    ipa = InterPodAffinity()
    p = pod("web-1", labels={"app": "web"}, affinity=anti({"app": "web"}))
    assert run_filter(ipa, snap, p, "a1") == "node(s) didn't match pod anti-affinity rules"
    assert run_filter(ipa, snap, p, "a2") is None
    by_zone = pod("web-1", labels={"app": "web"}, affinity=anti({"app": "web"}, "zone"))
    assert run_filter(ipa, snap, by_zone, "a2") is not None
    assert run_filter(ipa, snap, by_zone, "b1") is None


def test_existing_pods_anti_affinity_is_symmetric(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    loner = pod("loner", labels={"app": "db"}, affinity=anti({"app": "web"}), node_name="a1")
    snap = snapshot(zones(node), [loner])
    ipa = InterPodAffinity()
    web = pod("web", labels={"app": "web"})
    assert run_filter(ipa, snap, web, "a1") == (
        "node(s) didn't satisfy existing pods anti-affinity rules"
    )
    assert run_filter(ipa, snap, web, "a2") is None
    assert run_filter(ipa, snap, pod("other", labels={"app": "x"}), "a1") is None


def test_existing_anti_affinity_follows_pods_coming_and_going(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    """The counts survive from cycle to cycle: a loner leaving frees its node at once,
    one arriving elsewhere (another topology key) forbids its own zone at once."""
    loner = pod("loner", labels={"app": "db"}, affinity=anti({"app": "web"}), node_name="a1")
    snap = snapshot(zones(node), [loner])
    ipa = InterPodAffinity()
    web = pod("web", labels={"app": "web"})
    assert run_filter(ipa, snap, web, "a1") is not None
    snap.remove_pod("default/loner")
    assert run_filter(ipa, snap, web, "a1") is None
    by_zone = pod(
        "zoned", labels={"app": "db"}, affinity=anti({"app": "web"}, "zone"), node_name="b1"
    )
    snap.set_pod(by_zone)
    assert run_filter(ipa, snap, web, "b1") == (
        "node(s) didn't satisfy existing pods anti-affinity rules"
    )
    assert run_filter(ipa, snap, web, "a1") is None


def test_counter_first_keys_are_kept_as_totals_come_and_go() -> None:
    counts: dict[str, dict[tuple[str, str], int]] = {
        "n1": {("zone", "a"): 1},
        "n2": {("zone", "b"): 1, ("host", "n2"): 1},
    }
    nodes = NodeCounts(lambda node: dict(counts.get(node.name, {})))

    class Snap:
        def __init__(self, changed: list[str]) -> None:
            self.changed = changed

        def changed_since(self, mark: int) -> tuple[int, list[str]]:
            return mark + 1, self.changed

        def get(self, name: str) -> Any:
            return type("N", (), {"name": name})()

    nodes.refresh(Snap(["n1", "n2"]))  # type: ignore[arg-type]
    assert sorted(nodes.first_keys()) == ["host", "zone"]
    counts["n2"] = {("zone", "b"): 1}  # the host term left
    nodes.refresh(Snap(["n2"]))  # type: ignore[arg-type]
    assert nodes.first_keys() == ("zone",)
    counts["n1"] = {("rack", "r1"): 2}
    nodes.refresh(Snap(["n1"]))  # type: ignore[arg-type]
    assert sorted(nodes.first_keys()) == ["rack", "zone"]
    assert nodes.totals == {("zone", "b"): 1, ("rack", "r1"): 2}


def test_required_affinity_and_the_first_pod_of_a_group(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    ipa = InterPodAffinity()
    cache = pod("cache", labels={"app": "cache"}, node_name="b1")
    snap = snapshot(zones(node), [cache])
    p = pod("web", labels={"app": "web"}, affinity=near({"app": "cache"}))
    assert run_filter(ipa, snap, p, "a1") == "node(s) didn't match pod affinity rules"
    assert run_filter(ipa, snap, p, "b1") is None
    # No pod matches anywhere: only a pod that matches its own term may start the group.
    empty = snapshot(zones(node))
    itself = pod("c0", labels={"app": "cache"}, affinity=near({"app": "cache"}))
    assert run_filter(ipa, empty, itself, "a1") is None
    assert run_filter(ipa, empty, p, "a1") is not None


def test_namespaces_and_namespace_selector(snapshot: Factory, node: Factory, pod: Factory) -> None:
    other = pod("web-0", namespace="team-b", labels={"app": "web"}, node_name="a1")
    snap = snapshot(zones(node), [other])
    snap.namespaces = {"team-b": {"team": "b"}, "default": {}}
    ipa = InterPodAffinity()
    same_ns = pod("p", labels={"app": "web"}, affinity=anti({"app": "web"}))
    assert run_filter(ipa, snap, same_ns, "a1") is None  # the term looks in its own namespace
    listed = pod("p", affinity=anti({"app": "web"}, namespaces=["team-b"]))
    assert run_filter(ipa, snap, listed, "a1") is not None
    selected = pod(
        "p", affinity=anti({"app": "web"}, namespaceSelector={"matchLabels": {"team": "b"}})
    )
    assert run_filter(ipa, snap, selected, "a1") is not None
    everywhere = pod("p", affinity=anti({"app": "web"}, namespaceSelector={}))
    assert run_filter(ipa, snap, everywhere, "a1") is not None


def test_preferred_affinity_scores(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot(zones(node), [pod("cache", labels={"app": "cache"}, node_name="b1")])
    ipa = InterPodAffinity()
    term = {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}
    p = pod(
        "web",
        affinity={
            "podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "podAffinityTerm": term}
                ]
            }
        },
    )
    state = snap.state(p)
    nodes = [snap.node(n) for n in ("a1", "a2", "b1")]
    assert ipa.pre_score(state, state.pod_info, nodes) is None
    scores = {n.name: ipa.score(p, n, state) for n in nodes}
    ipa.normalize_scores(state, state.pod_info, scores)
    assert scores == {"a1": 0, "a2": 0, "b1": 100}


# --- PodTopologySpread ------------------------------------------------------------------------


def spread(max_skew: int, key: str = "zone", hard: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "maxSkew": max_skew,
        "topologyKey": key,
        "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app": "web"}},
        **extra,
    }


def test_max_skew(snapshot: Factory, node: Factory, pod: Factory) -> None:
    placed = [pod(f"w{i}", labels={"app": "web"}, node_name="a1") for i in range(2)]
    snap = snapshot(zones(node), placed)
    pts = PodTopologySpread()
    p = pod("w", labels={"app": "web"}, topologySpreadConstraints=[spread(1)])
    assert run_filter(pts, snap, p, "a2") == "node(s) didn't match pod topology spread constraints"
    assert run_filter(pts, snap, p, "b1") is None
    loose = pod("w", labels={"app": "web"}, topologySpreadConstraints=[spread(3)])
    assert run_filter(pts, snap, loose, "a2") is None


def test_nodes_without_the_key_are_ruled_out(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot([*zones(node), node("bare")])
    p = pod("w", labels={"app": "web"}, topologySpreadConstraints=[spread(1)])
    assert run_filter(PodTopologySpread(), snap, p, "bare") == (
        "node(s) didn't match pod topology spread constraints (missing required label)"
    )


def test_min_domains(snapshot: Factory, node: Factory, pod: Factory) -> None:
    placed = [pod("w0", labels={"app": "web"}, node_name="b1")]
    snap = snapshot(zones(node), placed)
    pts = PodTopologySpread()
    # Two zones exist but three are wanted: the global minimum counts as 0, so zone b
    # (1 pod) cannot take another with maxSkew 1.
    p = pod("w", labels={"app": "web"}, topologySpreadConstraints=[spread(1, minDomains=3)])
    assert run_filter(pts, snap, p, "b1") is not None
    assert run_filter(pts, snap, p, "a1") is None


def test_schedule_anyway_scores_emptier_domains_higher(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    placed = [pod(f"w{i}", labels={"app": "web"}, node_name="a1") for i in range(3)]
    snap = snapshot(zones(node), placed)
    pts = PodTopologySpread()
    p = pod("w", labels={"app": "web"}, topologySpreadConstraints=[spread(1, hard=False)])
    state = snap.state(p)
    assert pts.pre_filter(state, state.pod_info) is SKIP  # nothing hard to check
    nodes = [snap.node(n) for n in ("a1", "b1")]
    assert pts.pre_score(state, state.pod_info, nodes) is None
    scores = {n.name: pts.score(p, n, state) for n in nodes}
    pts.normalize_scores(state, state.pod_info, scores)
    assert scores == {"a1": 0, "b1": 100}


# --- ImageLocality ----------------------------------------------------------------------------


def test_image_locality(snapshot: Factory, node: Factory, pod: Factory) -> None:
    image = {"names": ["registry.local/app:1"], "sizeBytes": 500 * 1024 * 1024}
    snap = snapshot([node("has", images=[image]), node("lacks"), node("also-lacks")])
    il = ImageLocality()
    p = pod("p")
    state = snap.state(p)
    nodes = [snap.node(n) for n in ("has", "lacks")]
    assert il.pre_score(state, state.pod_info, nodes) is None
    assert il.score(p, snap.node("has"), state) > il.score(p, snap.node("lacks"), state) == 0
    other = pod("o")
    other["spec"]["containers"][0]["image"] = "elsewhere:2"
    other_state = snap.state(other)
    assert il.pre_score(other_state, other_state.pod_info, nodes) is SKIP


# --- counts kept across cycles ----------------------------------------------------------------


def test_counts_follow_the_cluster_between_cycles(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(zones(node))
    pts = PodTopologySpread()
    ipa = InterPodAffinity()
    spread_pod = pod("w", labels={"app": "web"}, topologySpreadConstraints=[spread(1)])
    lonely = pod("l", labels={"app": "web"}, affinity=anti({"app": "web"}, "zone"))
    assert run_filter(pts, snap, spread_pod, "a1") is None
    assert run_filter(ipa, snap, lonely, "a1") is None
    snap.assume(pod_info(pod("w0", labels={"app": "web"})), "a1")
    snap.assume(pod_info(pod("w1", labels={"app": "web"})), "a2")
    assert run_filter(pts, snap, spread_pod, "a1") is not None  # zone a: 2, zone b: 0
    assert run_filter(pts, snap, spread_pod, "b1") is None
    assert run_filter(ipa, snap, lonely, "a1") is not None
    assert run_filter(ipa, snap, lonely, "b1") is None
    snap.forget("default/w0")
    snap.remove_pod("default/w1")
    assert run_filter(pts, snap, spread_pod, "a1") is None
    assert run_filter(ipa, snap, lonely, "a1") is None


def test_namespace_label_changes_are_seen(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot(
        zones(node), [pod("w", namespace="team", labels={"app": "web"}, node_name="a1")]
    )
    snap.set_namespace_labels("team", {"tier": "x"})
    ipa = InterPodAffinity()
    p = pod("p", affinity=anti({"app": "web"}, namespaceSelector={"matchLabels": {"tier": "y"}}))
    assert run_filter(ipa, snap, p, "a1") is None
    snap.set_namespace_labels("team", {"tier": "y"})
    assert run_filter(ipa, snap, p, "a1") is not None
