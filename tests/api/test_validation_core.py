"""Each core/v1 validation rule: a valid object passes, a broken one fails at its path.

``CASES`` maps a test id to (resource, a change to a valid object, the expected field
path, a fragment of the expected message). The change is applied to a deep copy of the
valid object of that resource, so each case breaks exactly one rule.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kubetrio.api.validation import FieldErrorType, kinds
from kubetrio.api.validation.core import validate_pod_spec, validate_pod_template_spec

Obj = dict[str, Any]


def pod_spec() -> Obj:
    return {
        "containers": [
            {
                "name": "app",
                "image": "busybox:1.36",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "fast"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "livenessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 10},
            }
        ],
        "initContainers": [{"name": "init", "image": "busybox:1.36"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
    }


VALID: dict[str, Obj] = {
    "pods": {"metadata": {"name": "p"}, "spec": pod_spec()},
    "podtemplates": {"metadata": {"name": "t"}, "template": {"spec": pod_spec()}},
    "replicationcontrollers": {
        "metadata": {"name": "rc"},
        "spec": {
            "replicas": 1,
            "selector": {"app": "a"},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": pod_spec()},
        },
    },
    "configmaps": {"metadata": {"name": "c"}, "data": {"a.conf": "x"}, "binaryData": {"b": "eA=="}},
    "secrets": {"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "eA=="}},
    "services": {
        "metadata": {"name": "svc"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "a"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
            ],
        },
    },
    "endpoints": {
        "metadata": {"name": "e"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}],
    },
    "namespaces": {"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}},
    "nodes": {
        "metadata": {"name": "n1"},
        "spec": {
            "podCIDR": "10.244.0.0/24",
            "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
        },
    },
    "serviceaccounts": {"metadata": {"name": "sa"}, "secrets": [{"name": "tok"}]},
    "limitranges": {
        "metadata": {"name": "lr"},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "min": {"cpu": "100m"},
                    "max": {"cpu": "2"},
                    "default": {"cpu": "1"},
                    "defaultRequest": {"cpu": "500m"},
                }
            ]
        },
    },
    "resourcequotas": {
        "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "10", "requests.cpu": "4", "count/deployments.apps": "2"}},
    },
    "persistentvolumes": {
        "metadata": {"name": "pv"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/pv"},
            "persistentVolumeReclaimPolicy": "Retain",
        },
    },
    "persistentvolumeclaims": {
        "metadata": {"name": "pvc"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    },
}

Change = Callable[[Obj], object]


def container(obj: Obj) -> Obj:
    c: Obj = obj["spec"]["containers"][0]
    return c


CASES: dict[str, tuple[str, Change, str, str]] = {
    # -- PodSpec
    "no-containers": ("pods", lambda o: o["spec"].pop("containers"), "spec.containers", "Required"),
    "container-name": (
        "pods",
        lambda o: container(o).update(name="App_1"),
        "spec.containers[0].name",
        "RFC 1123 label",
    ),
    "container-name-dup-init": (
        "pods",
        lambda o: container(o).update(name="init"),
        "spec.containers[0].name",
        "Duplicate value",
    ),
    "image-required": (
        "pods",
        lambda o: container(o).pop("image"),
        "spec.containers[0].image",
        "Required",
    ),
    "container-port-range": (
        "pods",
        lambda o: container(o)["ports"][0].update(containerPort=70000),
        "spec.containers[0].ports[0].containerPort",
        "must be between 1 and 65535, inclusive",
    ),
    "host-port-range": (
        "pods",
        lambda o: container(o)["ports"][0].update(hostPort=-1),
        "spec.containers[0].ports[0].hostPort",
        "must be between 1 and 65535",
    ),
    "port-protocol": (
        "pods",
        lambda o: container(o)["ports"][0].update(protocol="ICMP"),
        "spec.containers[0].ports[0].protocol",
        'Unsupported value: "ICMP"',
    ),
    "port-name-long": (
        "pods",
        lambda o: container(o)["ports"][0].update(name="a-very-long-port-name"),
        "spec.containers[0].ports[0].name",
        "must be no more than 15 characters",
    ),
    "port-name-dup": (
        "pods",
        lambda o: container(o)["ports"].append({"name": "http", "containerPort": 81}),
        "spec.containers[0].ports[1].name",
        "Duplicate value",
    ),
    "cpu-negative": (
        "pods",
        lambda o: container(o)["resources"]["requests"].update(cpu="-1"),
        "spec.containers[0].resources.requests[cpu]",
        "must be greater than or equal to 0",
    ),
    "request-over-limit": (
        "pods",
        lambda o: container(o)["resources"]["requests"].update(cpu="2"),
        "spec.containers[0].resources.requests[cpu]",
        "must be less than or equal to cpu limit of 1",
    ),
    "resource-name": (
        "pods",
        lambda o: container(o)["resources"]["limits"].update(gpu="1"),
        "spec.containers[0].resources.limits[gpu]",
        "must be a standard resource for containers",
    ),
    "env-name": (
        "pods",
        lambda o: container(o)["env"].append({"name": "1BAD"}),
        "spec.containers[0].env[1].name",
        "a valid environment variable name",
    ),
    "env-value-from-two": (
        "pods",
        lambda o: container(o)["env"].append(
            {
                "name": "X",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.name"},
                    "secretKeyRef": {"name": "s", "key": "k"},
                },
            }
        ),
        "spec.containers[0].env[1].valueFrom",
        "may not have more than one field specified at a time",
    ),
    "env-from-none": (
        "pods",
        lambda o: container(o).update(envFrom=[{"prefix": "P_"}]),
        "spec.containers[0].envFrom[0]",
        "must specify one of: `configMapRef` or `secretRef`",
    ),
    "mount-unknown-volume": (
        "pods",
        lambda o: container(o)["volumeMounts"].append({"name": "nope", "mountPath": "/x"}),
        "spec.containers[0].volumeMounts[1].name",
        "Not found",
    ),
    "mount-path-unique": (
        "pods",
        lambda o: container(o)["volumeMounts"].append({"name": "data", "mountPath": "/data"}),
        "spec.containers[0].volumeMounts[1].mountPath",
        "must be unique",
    ),
    "volume-two-sources": (
        "pods",
        lambda o: o["spec"]["volumes"][0].update(hostPath={"path": "/x"}),
        "spec.volumes[0].emptyDir",
        "may not specify more than 1 volume type",
    ),
    "volume-no-source": (
        "pods",
        lambda o: o["spec"]["volumes"].append({"name": "empty"}),
        "spec.volumes[1]",
        "must specify a volume type",
    ),
    "volume-name-dup": (
        "pods",
        lambda o: o["spec"]["volumes"].append({"name": "data", "emptyDir": {}}),
        "spec.volumes[1].name",
        "Duplicate value",
    ),
    "probe-two-handlers": (
        "pods",
        lambda o: container(o)["livenessProbe"].update(tcpSocket={"port": 80}),
        "spec.containers[0].livenessProbe.tcpSocket",
        "may not specify more than 1 handler type",
    ),
    "probe-period-negative": (
        "pods",
        lambda o: container(o)["livenessProbe"].update(periodSeconds=-1),
        "spec.containers[0].livenessProbe.periodSeconds",
        "must be greater than or equal to 0",
    ),
    "liveness-success-threshold": (
        "pods",
        lambda o: container(o)["livenessProbe"].update(successThreshold=3),
        "spec.containers[0].livenessProbe.successThreshold",
        "must be 1",
    ),
    "restart-policy": (
        "pods",
        lambda o: o["spec"].update(restartPolicy="Sometimes"),
        "spec.restartPolicy",
        "Unsupported value",
    ),
    "dns-policy": (
        "pods",
        lambda o: o["spec"].update(dnsPolicy="Bogus"),
        "spec.dnsPolicy",
        "Unsupported value",
    ),
    "dns-none-needs-config": (
        "pods",
        lambda o: o["spec"].update(dnsPolicy="None"),
        "spec.dnsConfig",
        "must provide `dnsConfig` when `dnsPolicy` is None",
    ),
    "dns-nameservers": (
        "pods",
        lambda o: o["spec"].update(dnsConfig={"nameservers": ["1.1.1.1"] * 4}),
        "spec.dnsConfig.nameservers",
        "must not have more than 3 nameservers",
    ),
    "dns-searches": (
        "pods",
        lambda o: o["spec"].update(dnsConfig={"searches": [f"s{i}.local" for i in range(33)]}),
        "spec.dnsConfig.searches",
        "must not have more than 32 search paths",
    ),
    "run-as-user": (
        "pods",
        lambda o: o["spec"].update(securityContext={"runAsUser": -1}),
        "spec.securityContext.runAsUser",
        "must be between 0 and 2147483647, inclusive",
    ),
    "fs-group": (
        "pods",
        lambda o: o["spec"].update(securityContext={"fsGroup": -5}),
        "spec.securityContext.fsGroup",
        "must be between 0 and 2147483647",
    ),
    "sysctl-name": (
        "pods",
        lambda o: o["spec"].update(securityContext={"sysctls": [{"name": "Bad!", "value": "1"}]}),
        "spec.securityContext.sysctls[0].name",
        "must have at most 253 characters and match regex",
    ),
    "grace-negative": (
        "pods",
        lambda o: o["spec"].update(terminationGracePeriodSeconds=-1),
        "spec.terminationGracePeriodSeconds",
        "must be greater than or equal to 0",
    ),
    "active-deadline-zero": (
        "pods",
        lambda o: o["spec"].update(activeDeadlineSeconds=0),
        "spec.activeDeadlineSeconds",
        "must be between 1 and 2147483647, inclusive",
    ),
    "node-selector": (
        "pods",
        lambda o: o["spec"].update(nodeSelector={"a": "bad value"}),
        "spec.nodeSelector[a]",
        "a valid label must be",
    ),
    "toleration-operator": (
        "pods",
        lambda o: o["spec"].update(tolerations=[{"key": "k", "operator": "In"}]),
        "spec.tolerations[0].operator",
        "Unsupported value",
    ),
    "toleration-effect": (
        "pods",
        lambda o: o["spec"].update(tolerations=[{"key": "k", "effect": "Evict"}]),
        "spec.tolerations[0].effect",
        "Unsupported value",
    ),
    "toleration-empty-key": (
        "pods",
        lambda o: o["spec"].update(tolerations=[{"operator": "Equal", "value": "v"}]),
        "spec.tolerations[0].operator",
        "operator must be Exists when `key` is empty",
    ),
    "host-alias-ip": (
        "pods",
        lambda o: o["spec"].update(hostAliases=[{"ip": "999.1.1.1", "hostnames": ["a"]}]),
        "spec.hostAliases[0].ip",
        "must be a valid IP address",
    ),
    "image-pull-policy": (
        "pods",
        lambda o: container(o).update(imagePullPolicy="Sometimes"),
        "spec.containers[0].imagePullPolicy",
        "Unsupported value",
    ),
    "init-probe": (
        "pods",
        lambda o: o["spec"]["initContainers"][0].update(
            readinessProbe={"exec": {"command": ["true"]}}
        ),
        "spec.initContainers[0].readinessProbe",
        "may not be set for init containers",
    ),
    # -- PodTemplate, ReplicationController
    "template-spec": (
        "podtemplates",
        lambda o: o["template"]["spec"].update(containers=[]),
        "template.spec.containers",
        "Required",
    ),
    "rc-selector-mismatch": (
        "replicationcontrollers",
        lambda o: o["spec"]["template"]["metadata"].update(labels={"app": "b"}),
        "spec.template.metadata.labels",
        "`selector` does not match template `labels`",
    ),
    "rc-replicas": (
        "replicationcontrollers",
        lambda o: o["spec"].update(replicas=-1),
        "spec.replicas",
        "must be greater than or equal to 0",
    ),
    # -- ConfigMap, Secret
    "cm-key-dotdot": (
        "configmaps",
        lambda o: o["data"].update({"..": "x"}),
        "data[..]",
        "must not be '..'",
    ),
    "cm-key-slash": (
        "configmaps",
        lambda o: o["data"].update({"a/b": "x"}),
        "data[a/b]",
        "a valid config key must consist of alphanumeric characters",
    ),
    "cm-key-both": (
        "configmaps",
        lambda o: o["data"].update(b="x"),
        "data[b]",
        "duplicate of key present in binaryData",
    ),
    "cm-too-big": (
        "configmaps",
        lambda o: o["data"].update(big="x" * (1024 * 1024)),
        "",
        "Too long: must have at most 1048576 bytes",
    ),
    "secret-key": (
        "secrets",
        lambda o: o["data"].update({".": "eA=="}),
        "data[.]",
        "must not be '.'",
    ),
    "secret-too-big": (
        "secrets",
        lambda o: o["data"].update(big="eHh4" * (350 * 1024)),
        "data",
        "Too long: must have at most 1048576 bytes",
    ),
    "secret-tls": (
        "secrets",
        lambda o: o.update(type="kubernetes.io/tls", data={"tls.crt": "eA=="}),
        "data[tls.key]",
        "Required",
    ),
    "secret-dockerconfigjson": (
        "secrets",
        lambda o: o.update(type="kubernetes.io/dockerconfigjson"),
        "data[.dockerconfigjson]",
        "Required",
    ),
    "secret-dockerconfigjson-json": (
        "secrets",
        lambda o: o.update(
            type="kubernetes.io/dockerconfigjson", data={".dockerconfigjson": "eA=="}
        ),
        "data[.dockerconfigjson]",
        "<secret contents redacted>",
    ),
    "secret-basic-auth": (
        "secrets",
        lambda o: o.update(type="kubernetes.io/basic-auth"),
        "data[username]",
        "Required",
    ),
    "secret-ssh-auth": (
        "secrets",
        lambda o: o.update(type="kubernetes.io/ssh-auth"),
        "data[ssh-privatekey]",
        "Required",
    ),
    "secret-sa-token": (
        "secrets",
        lambda o: o.update(type="kubernetes.io/service-account-token"),
        "metadata.annotations[kubernetes.io/service-account.name]",
        "Required",
    ),
    # -- Service
    "svc-port-range": (
        "services",
        lambda o: o["spec"]["ports"][0].update(port=0),
        "spec.ports[0].port",
        "must be between 1 and 65535, inclusive",
    ),
    "svc-port-name-required": (
        "services",
        lambda o: o["spec"]["ports"][1].pop("name"),
        "spec.ports[1].name",
        "Required",
    ),
    "svc-port-name-dup": (
        "services",
        lambda o: o["spec"]["ports"][1].update(name="http"),
        "spec.ports[1].name",
        "Duplicate value",
    ),
    "svc-port-protocol-dup": (
        "services",
        lambda o: o["spec"]["ports"][1].update(port=80, protocol="TCP"),
        "spec.ports[1]",
        "Duplicate value",
    ),
    "svc-target-port": (
        "services",
        lambda o: o["spec"]["ports"][0].update(targetPort="Not_A_Name"),
        "spec.ports[0].targetPort",
        "must contain only alpha-numeric characters",
    ),
    "svc-type": (
        "services",
        lambda o: o["spec"].update(type="Magic"),
        "spec.type",
        "Unsupported value",
    ),
    "svc-cluster-ip": (
        "services",
        lambda o: o["spec"].update(clusterIP="10.0.0"),
        "spec.clusterIP",
        "must be empty, 'None', or a valid IP address",
    ),
    "svc-node-port-clusterip": (
        "services",
        lambda o: o["spec"]["ports"][0].update(nodePort=30080),
        "spec.ports[0].nodePort",
        "may not be used when `type` is 'ClusterIP'",
    ),
    "svc-external-name": (
        "services",
        lambda o: o["spec"].update(type="ExternalName", ports=[]),
        "spec.externalName",
        "Required",
    ),
    "svc-affinity": (
        "services",
        lambda o: o["spec"].update(sessionAffinity="Sticky"),
        "spec.sessionAffinity",
        "Unsupported value",
    ),
    "svc-ip-families": (
        "services",
        lambda o: o["spec"].update(ipFamilyPolicy="SingleStack", ipFamilies=["IPv4", "IPv6"]),
        "spec.ipFamilies",
        "at most one IP family",
    ),
    "svc-ip-family-value": (
        "services",
        lambda o: o["spec"].update(ipFamilies=["IPv5"]),
        "spec.ipFamilies[0]",
        "Unsupported value",
    ),
    # -- Endpoints, Namespace, Node, ServiceAccount
    "ep-ip": (
        "endpoints",
        lambda o: o["subsets"][0]["addresses"].append({"ip": "nope"}),
        "subsets[0].addresses[1].ip",
        "must be a valid IP address",
    ),
    "ep-link-local": (
        "endpoints",
        lambda o: o["subsets"][0]["addresses"].append({"ip": "169.254.0.7"}),
        "subsets[0].addresses[1].ip",
        "link-local",
    ),
    "ep-port": (
        "endpoints",
        lambda o: o["subsets"][0]["ports"][0].update(port=70000),
        "subsets[0].ports[0].port",
        "must be between 1 and 65535",
    ),
    "ns-finalizer": (
        "namespaces",
        lambda o: o["spec"]["finalizers"].append("custom"),
        "spec.finalizers[1]",
        "neither a standard finalizer name nor is it fully qualified",
    ),
    "node-pod-cidr": (
        "nodes",
        lambda o: o["spec"].update(podCIDR="10.244.0.0"),
        "spec.podCIDR",
        "must be a valid CIDR",
    ),
    "node-taint-effect": (
        "nodes",
        lambda o: o["spec"]["taints"][0].update(effect="Evict"),
        "spec.taints[0].effect",
        "Unsupported value",
    ),
    "node-taint-dup": (
        "nodes",
        lambda o: o["spec"]["taints"].append({"key": "dedicated", "effect": "NoSchedule"}),
        "spec.taints[1]",
        "Duplicate value",
    ),
    "sa-secret-name": (
        "serviceaccounts",
        lambda o: o["secrets"].append({"name": "Bad_Name"}),
        "secrets[1].name",
        "RFC 1123 subdomain",
    ),
    # -- LimitRange, ResourceQuota
    "lr-min-max": (
        "limitranges",
        lambda o: o["spec"]["limits"][0]["min"].update(cpu="3"),
        "spec.limits[0].min[cpu]",
        "min value 3 is greater than max value 2",
    ),
    "lr-default-max": (
        "limitranges",
        lambda o: o["spec"]["limits"][0]["default"].update(cpu="4"),
        "spec.limits[0].default[cpu]",
        "default value 4 is greater than max value 2",
    ),
    "lr-request-limit": (
        "limitranges",
        lambda o: o["spec"]["limits"][0]["defaultRequest"].update(cpu="1500m"),
        "spec.limits[0].defaultRequest[cpu]",
        "default request value 1500m is greater than default limit value 1",
    ),
    "lr-type": (
        "limitranges",
        lambda o: o["spec"]["limits"][0].update(type="Node"),
        "spec.limits[0].type",
        "Unsupported value",
    ),
    "quota-negative": (
        "resourcequotas",
        lambda o: o["spec"]["hard"].update(pods="-1"),
        "spec.hard[pods]",
        "must be greater than or equal to 0",
    ),
    "quota-resource-name": (
        "resourcequotas",
        lambda o: o["spec"]["hard"].update(widgets="1"),
        "spec.hard[widgets]",
        "must be a standard resource for quota",
    ),
    # -- PersistentVolume, PersistentVolumeClaim
    "pv-capacity": (
        "persistentvolumes",
        lambda o: o["spec"].pop("capacity"),
        "spec.capacity",
        "Required",
    ),
    "pv-access-mode": (
        "persistentvolumes",
        lambda o: o["spec"].update(accessModes=["ReadSometimes"]),
        "spec.accessModes",
        "Unsupported value",
    ),
    "pv-two-sources": (
        "persistentvolumes",
        lambda o: o["spec"].update(nfs={"server": "a", "path": "/"}),
        "spec.nfs",
        "may not specify more than 1 volume type",
    ),
    "pv-no-source": (
        "persistentvolumes",
        lambda o: o["spec"].pop("hostPath"),
        "spec",
        "must specify a volume type",
    ),
    "pvc-access-modes": (
        "persistentvolumeclaims",
        lambda o: o["spec"].pop("accessModes"),
        "spec.accessModes",
        "at least 1 access mode is required",
    ),
    "pvc-storage-required": (
        "persistentvolumeclaims",
        lambda o: o["spec"]["resources"].pop("requests"),
        "spec.resources[storage]",
        "Required",
    ),
    "pvc-storage-zero": (
        "persistentvolumeclaims",
        lambda o: o["spec"]["resources"]["requests"].update(storage="0"),
        "spec.resources[storage]",
        "must be greater than zero",
    ),
}


def errors_of(resource: str, obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in kinds.validate("", resource, obj, old)]


@pytest.mark.parametrize("resource", sorted(VALID))
def test_valid_objects_pass(resource: str) -> None:
    assert errors_of(resource, VALID[resource]) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_names_its_field(case: str) -> None:
    resource, change, field, fragment = CASES[case]
    obj = copy.deepcopy(VALID[resource])
    change(obj)
    errors = kinds.validate("", resource, obj, None)
    matching = [e for e in errors if e.field == field and fragment in e.message]
    assert matching, f"no error at {field!r} with {fragment!r}; got {[str(e) for e in errors]}"


def test_every_core_kind_has_a_validator() -> None:
    assert {r for g, r in kinds.validated_kinds() if g == ""} >= set(VALID)


def test_all_causes_reported_together() -> None:
    """A broken pod lists every problem, not just the first one."""
    spec = pod_spec()
    spec["containers"][0]["ports"][0]["containerPort"] = 70000
    spec["containers"][0]["resources"]["requests"]["cpu"] = "-1"
    spec["restartPolicy"] = "Sometimes"
    fields = {e.field for e in validate_pod_spec(spec, "spec")}
    assert fields >= {
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[0].resources.requests[cpu]",
        "spec.restartPolicy",
    }


def test_shared_pod_spec_validators_use_the_given_path() -> None:
    template = {"metadata": {"labels": {"app": "bad value"}}, "spec": {"containers": []}}
    fields = {e.field for e in validate_pod_template_spec(template, "spec.template")}
    assert fields == {"spec.template.metadata.labels[app]", "spec.template.spec.containers"}


def test_error_types_follow_upstream() -> None:
    obj = copy.deepcopy(VALID["pods"])
    obj["spec"]["containers"].append(copy.deepcopy(obj["spec"]["containers"][0]))
    obj["spec"]["containers"][0].pop("image")
    obj["spec"]["restartPolicy"] = "Sometimes"
    by_field = {e.field: e.type for e in kinds.validate("", "pods", obj, None)}
    assert by_field["spec.containers[0].image"] is FieldErrorType.REQUIRED
    assert by_field["spec.containers[1].name"] is FieldErrorType.DUPLICATE
    assert by_field["spec.restartPolicy"] is FieldErrorType.NOT_SUPPORTED


def test_request_equal_limit_needed_for_extended_resources() -> None:
    obj = copy.deepcopy(VALID["pods"])
    container(obj)["resources"] = {
        "requests": {"example.com/gpu": "1"},
        "limits": {"example.com/gpu": "2"},
    }
    assert "must be equal to example.com/gpu limit" in " ".join(errors_of("pods", obj))


def test_sidecar_init_container_may_have_probes() -> None:
    obj = copy.deepcopy(VALID["pods"])
    obj["spec"]["initContainers"][0].update(
        restartPolicy="Always", readinessProbe={"exec": {"command": ["true"]}}
    )
    assert errors_of("pods", obj) == []


def test_secret_type_is_immutable() -> None:
    old = copy.deepcopy(VALID["secrets"])
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    new["data"] = {"username": "eA=="}
    assert errors_of("secrets", new, old) == [
        'type: Invalid value: "kubernetes.io/basic-auth": field is immutable'
    ]


def test_pvc_update_may_only_grow_storage() -> None:
    old = copy.deepcopy(VALID["persistentvolumeclaims"])
    old["status"] = {"phase": "Bound"}
    grown = copy.deepcopy(old)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    grown["spec"]["volumeName"] = "pv-1"  # binding fills it in
    assert errors_of("persistentvolumeclaims", grown, old) == []
    # Only a Bound claim may change its request, as upstream.
    unbound = copy.deepcopy(old)
    unbound["status"] = {"phase": "Pending"}
    assert any(
        e.startswith("spec: Forbidden: spec is immutable after creation")
        for e in errors_of("persistentvolumeclaims", grown, unbound)
    )
    shrunk = copy.deepcopy(old)
    shrunk["spec"]["resources"]["requests"]["storage"] = "500Mi"
    assert "field can not be less than previous value" in " ".join(
        errors_of("persistentvolumeclaims", shrunk, old)
    )
    changed = copy.deepcopy(old)
    changed["spec"]["accessModes"] = ["ReadWriteMany"]
    assert any(
        e.startswith("spec: Forbidden: spec is immutable after creation")
        for e in errors_of("persistentvolumeclaims", changed, grown)
    )


def test_headless_and_external_name_services() -> None:
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "selector": {"a": "b"}}}
    assert errors_of("services", headless) == []
    external = {
        "metadata": {"name": "x"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    }
    assert errors_of("services", external) == []
