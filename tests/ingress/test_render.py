"""The plan and the nginx configuration from API objects, checked by real ``nginx -t``.

Each rendered configuration is handed to nginx itself: what nginx accepts, and the
directives it would parse, are the proof that hostile names cannot inject anything.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kubetrio.ingress import Layout, Unsafe, plan, quoted, render

from .objects import (
    CLASSES,
    endpoint_slice,
    ingress,
    path,
    self_signed,
    service,
    tls_secret,
)

needs_nginx = pytest.mark.skipif(not shutil.which("nginx"), reason="needs nginx")


def _layout(tmp_path: Path) -> Layout:
    for kind in ("certs", "tmp"):
        (tmp_path / kind).mkdir(exist_ok=True)
    return Layout(str(tmp_path), 18080, 18443)


def _nginx_t(tmp_path: Path, text: str, certificates: dict[str, bytes] | None = None) -> None:
    for name, pem in (certificates or {}).items():
        (tmp_path / "certs" / name).write_bytes(pem)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    result = subprocess.run(
        ["nginx", "-p", f"{tmp_path}/", "-c", str(conf), "-e", str(tmp_path / "e.log"), "-t"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr + text


def _locations(text: str, host: str) -> dict[str, str]:
    """``match path`` → target of one server block's locations."""
    blocks = text.split("    server {")
    block = next(b for b in blocks if f"server_name {host};" in b and "location" in b)
    return {
        f"{m.group(1)} {m.group(2)}": m.group(3)
        for m in re.finditer(r'location (=|\^~) "([^"]*)" \{ (.*?) \}', block)
    }


WEB = [service("web"), service("api")]
SLICES = [endpoint_slice("web", ["10.1.0.5", "10.1.0.6"]), endpoint_slice("api", ["10.1.0.7"])]


@needs_nginx
def test_hosts_paths_and_precedence(tmp_path: Path) -> None:
    ing = ingress(
        "site",
        [
            {
                "host": "shop.example.com",
                "paths": [
                    path("/", "web"),
                    path("/api", "api", "http"),
                    path("/api/exact", "web", path_type="Exact"),
                    path("/legacy/", "api", path_type="ImplementationSpecific"),
                ],
            }
        ],
    )
    p = plan([ing], CLASSES, WEB, SLICES, [])
    assert p.problems == []
    text = render(p, _layout(tmp_path))
    _nginx_t(tmp_path, text)
    locations = _locations(text, '"shop.example.com"')
    # Element-wise Prefix: /api itself and everything under /api/, never /apix.
    assert locations == {
        "^~ /": "proxy_pass http://default.web.http;",
        "= /api": "proxy_pass http://default.api.http;",
        "^~ /api/": "proxy_pass http://default.api.http;",
        "= /api/exact": "proxy_pass http://default.web.http;",
        "= /legacy": "proxy_pass http://default.api.http;",
        "^~ /legacy/": "proxy_pass http://default.api.http;",
    }
    assert "server 10.1.0.5:8080;" in text and "server 10.1.0.6:8080;" in text


def test_exact_beats_prefix_and_older_ingress_wins() -> None:
    old = ingress("old", [{"host": "a.io", "paths": [path("/x", "web")]}])
    new = ingress(
        "new",
        [{"host": "a.io", "paths": [path("/x", "api", path_type="Exact"), path("/x/", "api")]}],
        created="2026-02-01T00:00:00Z",
    )
    p = plan([new, old], CLASSES, WEB, SLICES, [])
    locations = p.servers["a.io"].locations
    assert locations[("=", "/x")].upstream == "default.api.http"  # Exact beats Prefix's half
    assert locations[("^~", "/x/")].upstream == "default.web.http"  # the older Ingress's


def test_missing_service_port_and_endpoints_answer_503_and_are_reported() -> None:
    ing = ingress(
        "broken",
        [
            {
                "host": "b.io",
                "paths": [
                    path("/gone", "nosuch"),
                    path("/port", "web", 9999),
                    path("/empty", "idle"),
                ],
            }
        ],
    )
    p = plan([ing], CLASSES, [*WEB, service("idle")], SLICES, [])
    locations = p.servers["b.io"].locations
    assert {loc.upstream for loc in locations.values()} == {None}
    assert [(x.reason, x.message) for x in p.problems] == [
        ("ServiceNotFound", 'service "default/nosuch" not found; answering 503'),
        ("PortNotFound", 'service "default/web" has no port 9999; answering 503'),
        ("NoEndpoints", 'service "default/idle" has no ready endpoints; answering 503'),
    ]
    assert "return 503;" in render(p, Layout("/x", 80, 443))


def test_not_ready_endpoints_are_left_out() -> None:
    slices = [endpoint_slice("web", ["10.1.0.9"], ready=False), SLICES[1]]
    p = plan([ingress("i", [{"paths": [path("/", "web")]}])], CLASSES, WEB, slices, [])
    assert p.upstreams == {}
    assert [x.reason for x in p.problems] == ["NoEndpoints"]


def test_other_classes_are_not_served() -> None:
    theirs = ingress("theirs", [{"paths": [path("/", "web")]}], class_name="traefik")
    legacy = ingress("legacy", [{"paths": [path("/", "web")]}], class_name=None)
    legacy["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "kubetrio-nginx"}
    p = plan([theirs, legacy], CLASSES, WEB, SLICES, [])
    assert [i["metadata"]["name"] for i in p.ingresses] == ["legacy"]


@needs_nginx
def test_default_backend_and_wildcard_host(tmp_path: Path) -> None:
    ing = ingress(
        "d",
        [{"host": "*.apps.io", "paths": [path("/only", "api")]}],
        defaultBackend={"service": {"name": "web", "port": {"number": 80}}},
    )
    p = plan([ing], CLASSES, WEB, SLICES, [])
    text = render(p, _layout(tmp_path))
    _nginx_t(tmp_path, text)
    # One label only, as the API says.
    assert 'server_name "~^[^.]+\\.apps\\.io$";' in text
    assert (
        _locations(text, '"~^[^.]+\\.apps\\.io$"')["^~ /"] == "proxy_pass http://default.web.http;"
    )
    assert _locations(text, "_")["^~ /"] == "proxy_pass http://default.web.http;"


@needs_nginx
def test_tls_and_redirect(tmp_path: Path) -> None:
    cert, key = self_signed("secure.io")
    ing = ingress(
        "t",
        [{"host": "secure.io", "paths": [path("/", "web")]}],
        tls=[{"hosts": ["secure.io"], "secretName": "cert"}],
    )
    p = plan([ing], CLASSES, WEB, SLICES, [tls_secret("cert", cert, key)])
    assert p.problems == []
    text = render(p, _layout(tmp_path))
    _nginx_t(tmp_path, text, p.certificate_files())
    assert "return 308 https://$host:18443$request_uri;" in text
    assert "listen 18443 ssl;" in text
    (pem,) = p.certificate_files().values()
    assert cert.strip() in pem and b"PRIVATE KEY" in pem


def test_bad_tls_secrets_are_reported() -> None:
    cert, _ = self_signed("x.io")
    garbage = tls_secret(
        "garbage", cert, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    opaque = tls_secret("opaque", cert, cert) | {"type": "Opaque"}
    ing = ingress(
        "t",
        [{"host": "x.io", "paths": [path("/", "web")]}],
        tls=[
            {"hosts": ["x.io"], "secretName": "missing"},
            {"hosts": ["x.io"], "secretName": "garbage"},
            {"hosts": ["x.io"], "secretName": "opaque"},
        ],
    )
    p = plan([ing], CLASSES, WEB, SLICES, [garbage, opaque])
    assert [x.reason for x in p.problems] == ["SecretNotFound", "InvalidSecret", "InvalidSecret"]
    assert p.servers["x.io"].certificate is None


HOSTILE = [
    'evil.io"; return 200 "pwned',
    "evil.io;\nlocation / { return 200; }",
    "a.io}",
    "a$hostile.io",
    "a.io\\",
    "a\u0000.io",
]
HOSTILE_PATHS = [
    '/x"; return 200 "pwned',
    "/x;return 200",
    "/x{",
    "/x}",
    "/$request_uri",
    "/a b",
    "/x\r\nlocation / {",
    "/x'",
    "/x\\",
]


@needs_nginx
@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_hosts_are_refused_not_rendered(tmp_path: Path, hostile: str) -> None:
    ing = ingress(
        "h",
        [
            {"host": hostile, "paths": [path("/", "web")]},
            {"host": "ok.io", "paths": [path("/", "api")]},
        ],
        tls=[{"hosts": [hostile], "secretName": "nope"}],
    )
    p = plan([ing], CLASSES, WEB, SLICES, [])
    text = render(p, _layout(tmp_path))
    _nginx_t(tmp_path, text)
    assert hostile not in text and "pwned" not in text
    assert "InvalidValue" in {x.reason for x in p.problems}
    assert '"ok.io"' in text


@needs_nginx
@pytest.mark.parametrize("hostile", HOSTILE_PATHS)
def test_hostile_paths_are_refused_not_rendered(tmp_path: Path, hostile: str) -> None:
    ing = ingress("h", [{"host": "ok.io", "paths": [path(hostile, "web"), path("/fine", "api")]}])
    p = plan([ing], CLASSES, WEB, SLICES, [])
    text = render(p, _layout(tmp_path))
    _nginx_t(tmp_path, text)
    assert hostile not in text and "pwned" not in text
    assert [x.reason for x in p.problems] == ["InvalidValue"]
    assert set(_locations(text, '"ok.io"')) == {"= /fine", "^~ /fine/"}


def test_annotations_are_never_read() -> None:
    ing = ingress("a", [{"host": "ok.io", "paths": [path("/", "web")]}])
    ing["metadata"]["annotations"] = {
        "nginx.ingress.kubernetes.io/configuration-snippet": "return 200 pwned;",
        "nginx.ingress.kubernetes.io/server-snippet": "location /x { return 200; }",
    }
    text = render(plan([ing], CLASSES, WEB, SLICES, []), Layout("/s", 80, 443))
    assert "pwned" not in text and "/x" not in text


def test_quoted_refuses_what_ends_a_string() -> None:
    assert quoted("/var/lib/a.pem") == '"/var/lib/a.pem"'
    for bad in ('/a"b', "/a;b", "/a b", "/a$b", "/a{", "/a\n"):
        with pytest.raises(Unsafe):
            quoted(bad)


def test_unreadable_secrets_are_reported_not_served() -> None:
    ing = ingress(
        "t",
        [{"host": "x.io", "paths": [path("/", "web")]}],
        tls=[{"hosts": ["x.io"], "secretName": "cert"}],
    )
    p = plan([ing], CLASSES, WEB, SLICES, None)
    assert [x.reason for x in p.problems] == ["SecretNotReadable"]
    assert p.servers["x.io"].certificate is None and p.upstreams
