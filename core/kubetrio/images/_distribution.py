"""A client of the OCI distribution API (registry v2): manifests, blobs, auth, push.

Pulls resolve a tag or digest to one image manifest: an OCI index or Docker manifest
list is narrowed to the machine's platform (``linux/amd64`` here). Blobs stream into the
:class:`~kubetrio.images.ContentStore`, which checks their digest before keeping them.

Authentication follows the registry token protocol: a 401 with
``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` sends the client to the realm
(with Basic credentials when it has some) for a token; ``Basic`` challenges get the
credentials directly. Credentials come from ``kubernetes.io/dockerconfigjson`` Secrets
(:func:`credentials_from_secrets`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from ._reference import ImageReference, RegistryConfig

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))

Credentials = tuple[str, str]
"""A user name and password (or identity token) for one registry."""


class RegistryError(Exception):
    """A registry refused or failed a request; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def not_found(self) -> bool:
        """The manifest or blob does not exist (Kubernetes: ``ErrImagePull``, not found)."""
        return self.status == 404

    @property
    def unauthorized(self) -> bool:
        """The registry wants credentials the client lacks."""
        return self.status in (401, 403)


def machine_platform() -> tuple[str, str]:
    """This machine's OCI platform: (os, architecture)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return "linux", arch


def credentials_from_secrets(secrets: Sequence[Mapping[str, Any]]) -> dict[str, Credentials]:
    """Registry → credentials from ``kubernetes.io/dockerconfigjson`` (or ``dockercfg``) Secrets.

    Registry keys are normalised to host[:port] so ``https://index.docker.io/v1/`` and
    ``docker.io`` find each other.
    """
    found: dict[str, Credentials] = {}
    for secret in secrets:
        data = secret.get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not raw:
            continue
        try:
            config = json.loads(base64.b64decode(raw))
        except (ValueError, TypeError):
            continue
        auths = config.get("auths", config) if isinstance(config, dict) else {}
        for server, entry in auths.items():
            if not isinstance(entry, dict):
                continue
            user, password = entry.get("username", ""), entry.get("password", "")
            if entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
            if user or password:
                found.setdefault(_registry_key(server), (user, password))
    return found


def _registry_key(server: str) -> str:
    host = re.sub(r"^https?://", "", server).split("/")[0]
    if host in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return "docker.io"
    return host


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """Talks to registries for pulls and pushes; one per node, connections are pooled."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config or RegistryConfig()
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=True)
        # Keyed by the credentials too: a token one pod's pull secret earned must never
        # authorize another pod's pull made without (or with other) credentials.
        self._tokens: dict[tuple[str, str, str], str] = {}

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- requests with auth -------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        repository: str,
        credentials: Credentials | None,
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        base = url.split("/v2/")[0]
        who = hashlib.sha256(":".join(credentials).encode()).hexdigest() if credentials else ""
        for attempt in range(2):
            all_headers = dict(headers or {})
            token = self._tokens.get((base, scope, who))
            if token:
                all_headers["Authorization"] = token
            request = self._http.build_request(method, url, headers=all_headers, content=content)
            response = await self._http.send(request, stream=stream)
            if response.status_code != 401 or attempt:
                return response
            challenge = response.headers.get("www-authenticate", "")
            await response.aclose()
            self._tokens[(base, scope, who)] = await self._authorize(challenge, scope, credentials)
        raise AssertionError("unreachable")

    async def _authorize(self, challenge: str, scope: str, credentials: Credentials | None) -> str:
        scheme, _, params_text = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not credentials:
                raise RegistryError("registry wants credentials and none were given", status=401)
            return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        if scheme.lower() != "bearer":
            raise RegistryError(f"unsupported registry auth challenge {challenge!r}", status=401)
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError("Bearer challenge without a realm", status=401)
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        auth = httpx.BasicAuth(*credentials) if credentials else None
        response = await self._http.get(
            realm, params={k: v for k, v in query.items() if v}, auth=auth
        )
        if response.status_code != 200:
            raise RegistryError(
                f"token request to {realm} failed: {response.status_code}",
                status=response.status_code,
            )
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token response from {realm} has no token", status=401)
        return f"Bearer {token}"

    # --- pull ---------------------------------------------------------------------------

    async def resolve(
        self, ref: ImageReference, *, credentials: Credentials | None = None
    ) -> tuple[str, str, dict[str, Any], str]:
        """Find the image manifest for this platform.

        Tries each endpoint of the registry (mirrors first) and returns
        ``(endpoint, manifest digest, manifest, media type)``.
        """
        errors: list[str] = []
        last: RegistryError | None = None
        for endpoint in self.config.endpoints(ref.registry):
            try:
                digest, manifest, media_type = await self._manifest(
                    endpoint, ref.repository, ref.reference, credentials
                )
                if media_type in INDEX_TYPES or "manifests" in manifest:
                    child = _pick_platform(manifest)
                    digest, manifest, media_type = await self._manifest(
                        endpoint, ref.repository, child, credentials
                    )
                return endpoint, digest, manifest, media_type
            except RegistryError as exc:
                last = exc
                errors.append(f"{endpoint}: {exc}")
            except httpx.HTTPError as exc:
                last = RegistryError(str(exc))
                errors.append(f"{endpoint}: {exc}")
        status = last.status if last else 0
        raise RegistryError(f"pulling {ref}: " + "; ".join(errors), status=status)

    async def _manifest(
        self, endpoint: str, repository: str, reference: str, credentials: Credentials | None
    ) -> tuple[str, dict[str, Any], str]:
        url = f"{endpoint}/v2/{repository}/manifests/{reference}"
        response = await self._send(
            "GET", url, repository=repository, credentials=credentials, headers={"Accept": ACCEPT}
        )
        if response.status_code != 200:
            raise RegistryError(
                f"manifest {repository}:{reference}: HTTP {response.status_code}",
                status=response.status_code,
            )
        body = response.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"manifest digest {digest} does not match {reference}")
        manifest = json.loads(body)
        media_type = (
            manifest.get("mediaType") or response.headers.get("content-type", "").split(";")[0]
        )
        return digest, manifest, media_type

    async def blob_chunks(
        self, endpoint: str, repository: str, digest: str, *, credentials: Credentials | None
    ) -> AsyncIterator[bytes]:
        """Stream a blob's bytes (the caller checks the digest)."""
        url = f"{endpoint}/v2/{repository}/blobs/{digest}"
        response = await self._send(
            "GET", url, repository=repository, credentials=credentials, stream=True
        )
        try:
            if response.status_code != 200:
                raise RegistryError(
                    f"blob {digest}: HTTP {response.status_code}", status=response.status_code
                )
            async for chunk in response.aiter_bytes(1 << 20):
                yield chunk
        finally:
            await response.aclose()

    # --- push ---------------------------------------------------------------------------

    async def push_blob(
        self,
        endpoint: str,
        repository: str,
        data: bytes,
        *,
        credentials: Credentials | None = None,
    ) -> str:
        """Upload a blob (monolithic upload) unless present; return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        head = await self._send(
            "HEAD",
            f"{endpoint}/v2/{repository}/blobs/{digest}",
            repository=repository,
            credentials=credentials,
            push=True,
        )
        if head.status_code == 200:
            return digest
        start = await self._send(
            "POST",
            f"{endpoint}/v2/{repository}/blobs/uploads/",
            repository=repository,
            credentials=credentials,
            push=True,
        )
        if start.status_code != 202:
            raise RegistryError(
                f"starting upload: HTTP {start.status_code}", status=start.status_code
            )
        location = str(httpx.URL(endpoint + "/").join(start.headers["location"]))
        separator = "&" if "?" in location else "?"
        put = await self._send(
            "PUT",
            f"{location}{separator}digest={digest}",
            repository=repository,
            credentials=credentials,
            push=True,
            headers={"Content-Type": "application/octet-stream"},
            content=data,
        )
        if put.status_code != 201:
            raise RegistryError(
                f"uploading {digest}: HTTP {put.status_code}", status=put.status_code
            )
        return digest

    async def push_manifest(
        self,
        endpoint: str,
        repository: str,
        tag: str,
        manifest: bytes,
        *,
        media_type: str = OCI_MANIFEST,
        credentials: Credentials | None = None,
    ) -> str:
        """Store a manifest under ``tag``; return its digest."""
        response = await self._send(
            "PUT",
            f"{endpoint}/v2/{repository}/manifests/{tag}",
            repository=repository,
            credentials=credentials,
            push=True,
            headers={"Content-Type": media_type},
            content=manifest,
        )
        if response.status_code != 201:
            raise RegistryError(
                f"pushing manifest {repository}:{tag}: HTTP {response.status_code} {response.text}",
                status=response.status_code,
            )
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


def _pick_platform(index: Mapping[str, Any]) -> str:
    """The digest of the index entry for this machine's platform."""
    want_os, want_arch = machine_platform()
    for entry in index.get("manifests") or []:
        plat = entry.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            return str(entry["digest"])
    raise RegistryError(f"no manifest for platform {want_os}/{want_arch} in the image index")
