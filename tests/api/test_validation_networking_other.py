"""networking.k8s.io, autoscaling, coordination.k8s.io, discovery.k8s.io and
storage.k8s.io validation (``kinds.validate``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetrio.api.validation import kinds

NET = "networking.k8s.io"
Obj = dict[str, Any]


def _errors(
    group: str, resource: str, obj: Obj, old: Obj | None = None
) -> list[tuple[str, str, str]]:
    return [(e.field, str(e.type), e.message) for e in kinds.validate(group, resource, obj, old)]


def _has(errors: list[tuple[str, str, str]], field: str, reason: str, fragment: str) -> bool:
    return any(f == field and r == reason and fragment in m for f, r, m in errors)


def _path(**changes: Any) -> Obj:
    item: Obj = {
        "path": "/api",
        "pathType": "Prefix",
        "backend": {"service": {"name": "web", "port": {"number": 80}}},
    }
    item.update(changes)
    return item


def _ingress(*paths: Obj, host: str = "example.com") -> Obj:
    return {"spec": {"rules": [{"host": host, "http": {"paths": list(paths or [_path()])}}]}}


def test_valid_ingresses_pass() -> None:
    assert _errors(NET, "ingresses", _ingress()) == []
    assert _errors(NET, "ingresses", _ingress(host="*.example.com")) == []
    named = _path(backend={"service": {"name": "web", "port": {"name": "http"}}})
    resource = _path(
        backend={"resource": {"kind": "Bucket", "name": "b", "apiGroup": "k8s.example.com"}}
    )
    assert (
        _errors(
            NET,
            "ingresses",
            _ingress(named, resource, _path(pathType="ImplementationSpecific", path="")),
        )
        == []
    )
    default_only = {
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}
    }
    assert _errors(NET, "ingresses", default_only) == []


@pytest.mark.parametrize(
    ("ingress", "field", "reason", "fragment"),
    [
        (
            {"spec": {}},
            "spec",
            "FieldValueInvalid",
            "either `defaultBackend` or `rules` must be specified",
        ),
        (
            _ingress(host="10.0.0.1"),
            "spec.rules[0].host",
            "FieldValueInvalid",
            "must be a DNS name, not an IP address",
        ),
        (
            _ingress(host="Bad_Host"),
            "spec.rules[0].host",
            "FieldValueInvalid",
            "a lowercase RFC 1123 subdomain",
        ),
        (
            _ingress(host="foo.*.com"),
            "spec.rules[0].host",
            "FieldValueInvalid",
            "a wildcard DNS-1123 subdomain must start with '*.'",
        ),
        (
            _ingress(_path(path="api")),
            "spec.rules[0].http.paths[0].path",
            "FieldValueInvalid",
            "must be an absolute path",
        ),
        (
            _ingress(_path(path="/a//b")),
            "spec.rules[0].http.paths[0].path",
            "FieldValueInvalid",
            "must not contain '//'",
        ),
        (
            _ingress(_path(path="/a/..")),
            "spec.rules[0].http.paths[0].path",
            "FieldValueInvalid",
            "cannot end with '/..'",
        ),
        (
            _ingress(_path(pathType="Regex")),
            "spec.rules[0].http.paths[0].pathType",
            "FieldValueNotSupported",
            '"Exact", "ImplementationSpecific", "Prefix"',
        ),
        (
            _ingress(_path(pathType=None)),
            "spec.rules[0].http.paths[0].pathType",
            "FieldValueRequired",
            "pathType must be specified",
        ),
        (
            _ingress(_path(backend={})),
            "spec.rules[0].http.paths[0].backend",
            "FieldValueInvalid",
            "resource or service backend is required",
        ),
        (
            _ingress(
                _path(
                    backend={
                        "service": {"name": "web", "port": {"number": 80}},
                        "resource": {"kind": "K", "name": "n"},
                    }
                )
            ),
            "spec.rules[0].http.paths[0].backend",
            "FieldValueInvalid",
            "cannot set both resource and service backends",
        ),
        (
            _ingress(_path(backend={"service": {"name": "web", "port": {}}})),
            "spec.rules[0].http.paths[0].backend",
            "FieldValueRequired",
            "port name or number is required",
        ),
        (
            _ingress(
                _path(backend={"service": {"name": "web", "port": {"name": "http", "number": 80}}})
            ),
            "spec.rules[0].http.paths[0].backend",
            "FieldValueInvalid",
            "cannot set both port name & port number",
        ),
        (
            _ingress(_path(backend={"service": {"name": "web", "port": {"number": 70000}}})),
            "spec.rules[0].http.paths[0].backend.service.port.number",
            "FieldValueInvalid",
            "must be between 1 and 65535, inclusive",
        ),
        (
            _ingress(_path(backend={"service": {"name": "web", "port": {"name": "HTTP--x"}}})),
            "spec.rules[0].http.paths[0].backend.service.port.name",
            "FieldValueInvalid",
            "must not contain consecutive hyphens",
        ),
        (
            _ingress(_path(backend={"service": {"name": "1web", "port": {"number": 80}}})),
            "spec.rules[0].http.paths[0].backend.service.name",
            "FieldValueInvalid",
            "a DNS-1035 label",
        ),
        (
            {"spec": {"rules": [{"host": "a.com", "http": {"paths": []}}]}},
            "spec.rules[0].http.paths",
            "FieldValueRequired",
            "Required value",
        ),
        (
            {**_ingress(), "spec": {**_ingress()["spec"], "tls": [{"hosts": ["Bad_Host"]}]}},
            "spec.tls[0].hosts[0]",
            "FieldValueInvalid",
            "RFC 1123 subdomain",
        ),
    ],
)
def test_ingress_rules(ingress: Obj, field: str, reason: str, fragment: str) -> None:
    assert _has(_errors(NET, "ingresses", ingress), field, reason, fragment), _errors(
        NET, "ingresses", ingress
    )


def test_ingress_class() -> None:
    good: Obj = {
        "spec": {
            "controller": "example.com/ingress",
            "parameters": {"kind": "Params", "name": "p", "scope": "Namespace", "namespace": "d"},
        }
    }
    assert _errors(NET, "ingressclasses", good) == []
    assert _has(
        _errors(NET, "ingressclasses", {"spec": {}}), "spec.controller", "FieldValueRequired", ""
    )
    assert _has(
        _errors(NET, "ingressclasses", {"spec": {"controller": "nginx"}}),
        "spec.controller",
        "FieldValueInvalid",
        "must be a domain-prefixed path",
    )
    scoped = copy.deepcopy(good)
    scoped["spec"]["parameters"].update(scope="Cluster")
    assert _has(
        _errors(NET, "ingressclasses", scoped),
        "spec.parameters.namespace",
        "FieldValueForbidden",
        "`parameters.scope` is set to 'Cluster'",
    )
    scoped["spec"]["parameters"].update(scope="Galaxy")
    assert _has(
        _errors(NET, "ingressclasses", scoped),
        "spec.parameters.scope",
        "FieldValueNotSupported",
        '"Cluster", "Namespace"',
    )
    moved = copy.deepcopy(good)
    moved["spec"]["controller"] = "example.com/other"
    assert _has(
        _errors(NET, "ingressclasses", moved, good),
        "spec.controller",
        "FieldValueInvalid",
        "field is immutable",
    )


def _policy(**spec: Any) -> Obj:
    return {"spec": {"podSelector": {}, **spec}}


def test_valid_network_policies_pass() -> None:
    rule = {
        "from": [
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            {"podSelector": {"matchLabels": {"a": "b"}}, "namespaceSelector": {}},
        ],
        "ports": [{"port": 80, "endPort": 90, "protocol": "TCP"}, {"port": "http"}],
    }
    assert (
        _errors(NET, "networkpolicies", _policy(ingress=[rule], policyTypes=["Ingress", "Egress"]))
        == []
    )


@pytest.mark.parametrize(
    ("spec", "field", "reason", "fragment"),
    [
        (
            {"ingress": [{"ports": [{"port": 70000}]}]},
            "spec.ingress[0].ports[0].port",
            "FieldValueInvalid",
            "must be between 1 and 65535, inclusive",
        ),
        (
            {"egress": [{"ports": [{"port": 90, "endPort": 80}]}]},
            "spec.egress[0].ports[0].endPort",
            "FieldValueInvalid",
            "must be greater than or equal to `port`",
        ),
        (
            {"ingress": [{"ports": [{"port": "http", "endPort": 80}]}]},
            "spec.ingress[0].ports[0].endPort",
            "FieldValueInvalid",
            "may not be specified when `port` is non-numeric",
        ),
        (
            {"ingress": [{"ports": [{"endPort": 80}]}]},
            "spec.ingress[0].ports[0].endPort",
            "FieldValueInvalid",
            "may not be specified when `port` is not specified",
        ),
        (
            {"ingress": [{"ports": [{"protocol": "ICMP"}]}]},
            "spec.ingress[0].ports[0].protocol",
            "FieldValueNotSupported",
            '"TCP", "UDP", "SCTP"',
        ),
        (
            {"ingress": [{"from": [{}]}]},
            "spec.ingress[0].from[0]",
            "FieldValueRequired",
            "must specify a peer",
        ),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
            "spec.ingress[0].from[0]",
            "FieldValueForbidden",
            "may not specify both ipBlock and another peer",
        ),
        (
            {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]},
            "spec.egress[0].to[0].ipBlock.cidr",
            "FieldValueInvalid",
            "must be a valid CIDR value",
        ),
        (
            {"egress": [{"to": [{"ipBlock": {"cidr": ""}}]}]},
            "spec.egress[0].to[0].ipBlock.cidr",
            "FieldValueRequired",
            "",
        ),
        (
            {
                "egress": [
                    {"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["192.168.0.0/24"]}}]}
                ]
            },
            "spec.egress[0].to[0].ipBlock.except[0]",
            "FieldValueInvalid",
            "must be a strict subset of `cidr`",
        ),
        (
            {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}]}]},
            "spec.egress[0].to[0].ipBlock.except[0]",
            "FieldValueInvalid",
            "must be a strict subset of `cidr`",
        ),
        (
            {"policyTypes": ["Sideways"]},
            "spec.policyTypes[0]",
            "FieldValueNotSupported",
            '"Ingress", "Egress"',
        ),
        (
            {"policyTypes": ["Ingress", "Egress", "Ingress"]},
            "spec.policyTypes",
            "FieldValueInvalid",
            "may not specify more than two policyTypes",
        ),
        (
            {"podSelector": {"matchLabels": {"a": "-bad-"}}},
            "spec.podSelector.matchLabels[a]",
            "FieldValueInvalid",
            "a valid label must be",
        ),
    ],
)
def test_network_policy_rules(spec: Obj, field: str, reason: str, fragment: str) -> None:
    errors = _errors(NET, "networkpolicies", _policy(**spec))
    assert _has(errors, field, reason, fragment), errors


# ---- other groups -------------------------------------------------------------------


def _hpa(version: str = "v2", **spec: Any) -> Obj:
    base = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 5,
    }
    return {"apiVersion": f"autoscaling/{version}", "spec": {**base, **spec}}


CPU = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
}


def test_valid_hpas_pass() -> None:
    assert (
        _errors("autoscaling", "horizontalpodautoscalers", _hpa(minReplicas=1, metrics=[CPU])) == []
    )
    assert (
        _errors(
            "autoscaling", "horizontalpodautoscalers", _hpa("v1", targetCPUUtilizationPercentage=80)
        )
        == []
    )


@pytest.mark.parametrize(
    ("hpa", "field", "reason", "fragment"),
    [
        (
            _hpa(minReplicas=0),
            "spec.minReplicas",
            "FieldValueInvalid",
            "must be greater than or equal to 1",
        ),
        (_hpa(maxReplicas=0), "spec.maxReplicas", "FieldValueInvalid", "must be greater than 0"),
        (
            _hpa(minReplicas=6),
            "spec.maxReplicas",
            "FieldValueInvalid",
            "must be greater than or equal to `minReplicas`",
        ),
        (
            _hpa(scaleTargetRef={"kind": "Deployment"}),
            "spec.scaleTargetRef.name",
            "FieldValueRequired",
            "",
        ),
        (
            _hpa("v1", targetCPUUtilizationPercentage=0),
            "spec.targetCPUUtilizationPercentage",
            "FieldValueInvalid",
            "must be greater than 0",
        ),
        (
            _hpa(metrics=[{"type": "Magic"}]),
            "spec.metrics[0].type",
            "FieldValueNotSupported",
            '"ContainerResource", "External", "Object", "Pods", "Resource"',
        ),
        (
            _hpa(metrics=[{"type": "Resource"}]),
            "spec.metrics[0].resource",
            "FieldValueRequired",
            "must populate information for the given metric source",
        ),
        (
            _hpa(
                metrics=[
                    {
                        **CPU,
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 0},
                        },
                    }
                ]
            ),
            "spec.metrics[0].resource.target.averageUtilization",
            "FieldValueInvalid",
            "must be greater than 0",
        ),
        (
            _hpa(metrics=[{**CPU, "resource": {"name": "cpu", "target": {"type": "Most"}}}]),
            "spec.metrics[0].resource.target.type",
            "FieldValueNotSupported",
            '"AverageValue", "Utilization", "Value"',
        ),
    ],
)
def test_hpa_rules(hpa: Obj, field: str, reason: str, fragment: str) -> None:
    errors = _errors("autoscaling", "horizontalpodautoscalers", hpa)
    assert _has(errors, field, reason, fragment), errors


def test_lease() -> None:
    lease = {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0}}
    assert _errors("coordination.k8s.io", "leases", lease) == []
    bad = {"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}
    errors = _errors("coordination.k8s.io", "leases", bad)
    assert _has(errors, "spec.leaseDurationSeconds", "FieldValueInvalid", "must be greater than 0")
    assert _has(
        errors, "spec.leaseTransitions", "FieldValueInvalid", "must be greater than or equal to 0"
    )


def test_endpoint_slice() -> None:
    ok = {
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    group = "discovery.k8s.io"
    assert _errors(group, "endpointslices", ok) == []
    assert _has(
        _errors(group, "endpointslices", {**ok, "addressType": "IPv5"}),
        "addressType",
        "FieldValueNotSupported",
        '"FQDN", "IPv4", "IPv6"',
    )
    assert _has(
        _errors(group, "endpointslices", {**ok, "endpoints": [{"addresses": []}]}),
        "endpoints[0].addresses",
        "FieldValueRequired",
        "must contain at least 1 address",
    )
    assert _has(
        _errors(group, "endpointslices", {**ok, "endpoints": [{"addresses": ["fe80::1"]}]}),
        "endpoints[0].addresses[0]",
        "FieldValueInvalid",
        "must be a valid IPv4 address",
    )
    assert _has(
        _errors(group, "endpointslices", {**ok, "ports": [{"port": 0}]}),
        "ports[0].port",
        "FieldValueInvalid",
        "must be between 1 and 65535",
    )
    assert _has(
        _errors(group, "endpointslices", {**ok, "addressType": "IPv6", "endpoints": []}, ok),
        "addressType",
        "FieldValueInvalid",
        "field is immutable",
    )


def test_storage_class() -> None:
    group = "storage.k8s.io"
    ok = {
        "provisioner": "kubetrio.io/hostpath",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "parameters": {"a": "b"},
    }
    assert _errors(group, "storageclasses", ok) == []
    assert _has(
        _errors(group, "storageclasses", {**ok, "provisioner": ""}),
        "provisioner",
        "FieldValueRequired",
        "",
    )
    assert _has(
        _errors(group, "storageclasses", {**ok, "reclaimPolicy": "Recycle"}),
        "reclaimPolicy",
        "FieldValueNotSupported",
        '"Delete", "Retain"',
    )
    assert _has(
        _errors(group, "storageclasses", {**ok, "volumeBindingMode": "Later"}),
        "volumeBindingMode",
        "FieldValueNotSupported",
        '"Immediate", "WaitForFirstConsumer"',
    )
    changed = {**ok, "parameters": {"a": "c"}, "reclaimPolicy": "Retain"}
    errors = _errors(group, "storageclasses", changed, ok)
    assert _has(errors, "parameters", "FieldValueForbidden", "updates to parameters are forbidden.")
    assert _has(
        errors, "reclaimPolicy", "FieldValueForbidden", "updates to reclaimPolicy are forbidden."
    )
