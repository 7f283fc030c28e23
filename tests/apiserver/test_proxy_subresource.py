"""``pods/proxy`` and ``services/proxy``: URL shapes and target selection (the forwarding
itself is driven end to end by tests/compat/test_kubectl.py::test_pod_and_service_proxy)."""

from __future__ import annotations

import pytest

from kubetrio.api.scheme import Scheme
from kubetrio.apiserver._proxy import pod_target, service_target, split_name
from kubetrio.apiserver._routes import parse_resource_path
from kubetrio.apiserver._status import ApiError


def test_proxy_paths_keep_their_rest() -> None:
    scheme = Scheme.builtin()
    target = parse_resource_path(scheme, "/api/v1/namespaces/ns/services/web:http/proxy/a/b")
    assert target is not None
    assert (target.name, target.subresource, target.rest) == ("web:http", "proxy", "a/b")
    with pytest.raises(ApiError):
        parse_resource_path(scheme, "/api/v1/namespaces/ns/pods/p/log/extra")


def test_names_ports_and_endpoints() -> None:
    assert split_name("https:web:8443") == ("https", "web", "8443")
    assert split_name("web:http") == ("http", "web", "http")
    assert split_name("web") == ("http", "web", "")
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": "10.0.0.5"},
    }
    assert pod_target(pod, "http") == ("10.0.0.5", 8080)
    assert pod_target(pod, "9000") == ("10.0.0.5", 9000)
    service = {"metadata": {"name": "s"}, "spec": {"ports": [{"name": "web", "port": 80}]}}
    endpoints = {
        "subsets": [{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"name": "web", "port": 8080}]}]
    }
    assert service_target(service, endpoints, "web") == ("10.0.0.5", 8080)
    assert service_target(service, endpoints, "80") == ("10.0.0.5", 8080)
    assert service_target(service, endpoints, "") == ("10.0.0.5", 8080)
    with pytest.raises(ApiError) as none_ready:
        service_target(service, {"subsets": []}, "web")
    assert none_ready.value.code == 503
