"""Images: references and mirrors, safe unpacking with whiteouts, pull/push with docker-registry."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetrio.images import (
    ImageReference,
    ImageStore,
    RegistryClient,
    RegistryConfig,
    RegistryError,
    UnsafeLayer,
    build_from_file,
    build_image,
    credentials_from_secrets,
    import_image,
    local_registry,
    make_layer,
    parse_buildfile,
    push_image,
    unpack_layer,
)


def test_reference_defaults() -> None:
    ref = ImageReference.parse("busybox")
    assert (ref.registry, ref.repository, ref.tag) == ("docker.io", "library/busybox", "latest")
    ref = ImageReference.parse("127.0.0.1:5000/team/app:v1")
    assert (ref.registry, ref.repository, ref.tag) == ("127.0.0.1:5000", "team/app", "v1")
    digest = "sha256:" + "a" * 64
    ref = ImageReference.parse(f"localhost/app@{digest}")
    assert ref.reference == digest and ref.tag == ""
    assert str(ImageReference.parse("quay.io/x/y:z")) == "quay.io/x/y:z"


def test_mirrors_come_first_and_loopback_is_plain_http() -> None:
    config = RegistryConfig.from_dict(
        {"mirrors": {"docker.io": {"endpoint": ["http://127.0.0.1:5000/"]}}}
    )
    assert config.endpoints("docker.io") == [
        "http://127.0.0.1:5000",
        "https://registry-1.docker.io",
    ]
    assert config.endpoints("127.0.0.1:6000") == ["http://127.0.0.1:6000"]
    assert config.endpoints("quay.io") == ["https://quay.io"]


def test_credentials_from_dockerconfigjson_secret() -> None:
    auth = base64.b64encode(b"alice:s3cret").decode()
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": auth},
            "r.example:5000": {"username": "b", "password": "p"},
        }
    }
    secret = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
    assert credentials_from_secrets([secret]) == {
        "docker.io": ("alice", "s3cret"),
        "r.example:5000": ("b", "p"),
    }


def _tar(entries: list[tuple[str, bytes, str]]) -> io.BytesIO:
    """entries: (name, data, kind) with kind in file/dir/sym:<target>/link:<target>/chr."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind.startswith("sym:"):
                info.type, info.linkname = tarfile.SYMTYPE, kind[4:]
            elif kind.startswith("link:"):
                info.type, info.linkname = tarfile.LNKTYPE, kind[5:]
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            else:
                info.size = len(data)
                info.mode = 0o640
            archive.addfile(info, io.BytesIO(data) if kind == "file" else None)
    raw.seek(0)
    return raw


@pytest.mark.root
def test_unpack_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    layer = tmp_path / "l"
    unpack_layer(
        _tar(
            [
                ("etc/", b"", "dir"),
                ("etc/.wh.gone", b"", "file"),
                ("opq/", b"", "dir"),
                ("opq/.wh..wh..opq", b"", "file"),
                ("opq/new", b"n", "file"),
                ("bin/sh", b"#!", "file"),
                ("bin/ash", b"", "link:bin/sh"),
                ("dev/null", b"", "chr"),
            ]
        ),
        layer,
    )
    gone = os.lstat(layer / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(layer / "opq", "trusted.overlay.opaque") == b"y"
    assert (layer / "opq/new").read_bytes() == b"n"
    assert os.stat(layer / "bin/ash").st_ino == os.stat(layer / "bin/sh").st_ino
    assert stat.S_IMODE(os.stat(layer / "bin/sh").st_mode) == 0o640
    assert not (layer / "dev/null").exists()  # device nodes are refused


@pytest.mark.parametrize(
    "entries",
    [
        [("../escape", b"x", "file")],
        [("/abs/../../escape", b"x", "file")],
        [("evil", b"", "sym:/tmp"), ("evil/owned", b"x", "file")],
        [("hard", b"", "link:../../etc/passwd")],
    ],
)
def test_unpack_refuses_path_traversal(
    tmp_path: Path, entries: list[tuple[str, bytes, str]]
) -> None:
    with pytest.raises(UnsafeLayer):
        unpack_layer(_tar(entries), tmp_path / "l")
    assert not (tmp_path / "escape").exists()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with local_registry(tmp_path / "registry") as address:
        yield address


@pytest.mark.root
async def test_build_push_pull_and_mirror(tmp_path: Path, registry: str) -> None:
    context = tmp_path / "ctx"
    (context / "www").mkdir(parents=True)
    (context / "www/index.html").write_text("hello\n")
    built = await build_image(f"{registry}/web:1", context, cmd=["httpd", "-f"], env={"A": "1"})
    again = await build_image(f"{registry}/web:1", context, cmd=["httpd", "-f"], env={"A": "1"})
    assert built.digest == again.digest  # deterministic layers and config
    mirrors = RegistryConfig.from_dict(
        {"mirrors": {"docker.io": {"endpoint": [f"http://{registry}"]}}}
    )
    async with RegistryClient(mirrors) as client:
        # A second layer deletes index.html with a whiteout and adds a file.
        base = make_layer(context)
        top = make_layer(None, base=False, extra={"www/.wh.index.html": b"", "www/b.txt": b"b"})
        await push_image("library/site:2", [base, top], cmd=["sh"], client=client)
        store = ImageStore(tmp_path / "store", client)
        image = await store.pull("site:2")
        assert image.reference == "docker.io/library/site:2"
        assert image.config["config"]["Cmd"] == ["sh"]
        assert len(image.layers) == 2 and image.layers[0].name == image.layers[0].name[:16]
        assert (image.layers[0] / "bin/busybox").is_file()
        assert stat.S_ISCHR(os.lstat(image.layers[1] / "www/index.html").st_mode)
        # Pulling again reuses the unpacked layers; pulling by digest works too.
        mtime = image.layers[0].stat().st_mtime_ns
        by_digest = await store.pull(f"{registry}/web@{built.digest}")
        assert by_digest.layers[0] == image.layers[0]
        assert image.layers[0].stat().st_mtime_ns == mtime
        web = await store.pull(f"{registry}/web:1")
        assert "A=1" in web.config["config"]["Env"]
        assert store.get(f"{registry}/web:1") is not None
        await store.remove(f"{registry}/web:1")
        await store.remove(f"{registry}/web@{built.digest}")
        removed = await store.collect_garbage()
        assert removed >= 1 and image.layers[0].is_dir()  # still used by site:2


@pytest.mark.root
async def test_import_oci_layout_and_docker_archive(tmp_path: Path, registry: str) -> None:
    import subprocess

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/motd").write_text("imported\n")
    layout = tmp_path / "layout"
    for command in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:v1"],
        ["umoci", "insert", "--image", f"{layout}:v1", str(rootfs), "/"],
        ["umoci", "config", "--image", f"{layout}:v1", "--config.cmd", "cat"],
    ):
        subprocess.run(command, check=True, capture_output=True)
    archive = tmp_path / "image.tar"
    subprocess.run(
        ["skopeo", "copy", f"oci:{layout}:v1", f"docker-archive:{archive}:saved/motd:2"],
        check=True,
        capture_output=True,
    )
    assert await import_image(layout, f"{registry}/motd:1") == [f"{registry}/motd:1"]
    mirrors = RegistryConfig.from_dict(
        {"mirrors": {"docker.io": {"endpoint": [f"http://{registry}"]}}}
    )
    async with RegistryClient(mirrors) as client:
        assert await import_image(archive, client=client) == ["docker.io/saved/motd:2"]
        store = ImageStore(tmp_path / "store", client)
        for name in (f"{registry}/motd:1", "saved/motd:2"):
            image = await store.pull(name)
            assert image.config["config"]["Cmd"] == ["cat"]
            assert (image.layers[-1] / "etc/motd").read_text() == "imported\n"


def test_parse_buildfile() -> None:
    spec = parse_buildfile(
        '# a comment\nFROM busybox\nCOPY www /www/\nENV A=1 B="two words"\nENV C 3\n'
        'WORKDIR /www\nUSER 65534\nCMD ["httpd", "-f", \\\n "-p", "8080"]\n'
    )
    assert spec["base"] and spec["copies"] == [("www", "/www/")]
    assert spec["env"] == {"A": "1", "B": "two words", "C": "3"}
    assert spec["cmd"] == ["httpd", "-f", "-p", "8080"] and spec["user"] == "65534"
    assert parse_buildfile("FROM scratch\nCMD echo hi\n")["cmd"] == ["/bin/sh", "-c", "echo hi"]
    with pytest.raises(ValueError):
        parse_buildfile("FROM debian\n")
    with pytest.raises(ValueError):
        parse_buildfile("RUN make\n")


@pytest.mark.root
async def test_build_from_file(tmp_path: Path, registry: str) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www/index.html").write_text("hi\n")
    (tmp_path / "Buildfile").write_text(
        'FROM busybox\nCOPY www /srv/www\nCMD ["cat", "/srv/www/index.html"]\n'
    )
    built = await build_from_file(f"{registry}/site:1", tmp_path / "Buildfile")
    async with RegistryClient() as client:
        image = await ImageStore(tmp_path / "store", client).pull(built.reference)
    assert image.config["config"]["Cmd"] == ["cat", "/srv/www/index.html"]
    assert (image.layers[0] / "srv/www/index.html").read_text() == "hi\n"
    assert (image.layers[0] / "bin/busybox").exists()


async def test_bearer_token_flow_and_platform_index() -> None:
    import hashlib

    import httpx

    manifest = json.dumps(
        {"schemaVersion": 2, "config": {"digest": "sha256:" + "c" * 64}, "layers": []}
    ).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = json.dumps(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "digest": "sha256:" + "0" * 64,
                    "platform": {"os": "linux", "architecture": "s390x"},
                },
                {"digest": manifest_digest, "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }
    ).encode()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}{request.url.path}")
        if request.url.host == "auth.example":
            if request.headers.get("authorization") != "Basic " + base64.b64encode(b"u:p").decode():
                return httpx.Response(401)
            assert request.url.params["scope"] == "repository:team/app:pull"
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("authorization") != "Bearer t0k":
            return httpx.Response(
                401,
                headers={
                    "www-authenticate": (
                        'Bearer realm="https://auth.example/token",service="reg",'
                        'scope="repository:team/app:pull"'
                    )
                },
            )
        if request.url.path.endswith("/manifests/v1"):
            return httpx.Response(
                200,
                content=index,
                headers={"content-type": "application/vnd.oci.image.index.v1+json"},
            )
        if request.url.path.endswith(f"/manifests/{manifest_digest}"):
            return httpx.Response(
                200,
                content=manifest,
                headers={"content-type": "application/vnd.oci.image.manifest.v1+json"},
            )
        return httpx.Response(404)

    async with RegistryClient(transport=httpx.MockTransport(handler)) as client:
        endpoint, digest, got, _ = await client.resolve(
            ImageReference.parse("reg.example/team/app:v1"), credentials=("u", "p")
        )
        await client.resolve(
            ImageReference.parse("reg.example/team/app:v1"), credentials=("u", "p")
        )
        assert seen.count("auth.example/token") == 1  # the token is reused
        # The token earned with credentials is not lent to a pull without them.
        with pytest.raises(RegistryError) as refused:
            await client.resolve(ImageReference.parse("reg.example/team/app:v1"))
        assert refused.value.unauthorized
    assert endpoint == "https://reg.example" and digest == manifest_digest
    assert got["config"]["digest"] == "sha256:" + "c" * 64
    assert seen.count("auth.example/token") == 2
