"""Image references (``busybox``, ``127.0.0.1:5000/app:1``, ``repo@sha256:…``) and mirrors.

A reference names a registry, a repository, and a tag or digest, with Docker's defaults:
no registry means ``docker.io``, a one-part Docker Hub name lives under ``library/``, no
tag means ``latest``. :class:`RegistryConfig` maps a registry name to the endpoints that
serve it, as k3s' ``registries.yaml`` ``mirrors`` section does, so ``image: busybox`` can be
pulled from a local registry on loopback.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGISTRY = "docker.io"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


class InvalidReference(ValueError):
    """The string is not a valid image reference."""


@dataclasses.dataclass(frozen=True)
class ImageReference:
    """A parsed image reference; ``str()`` gives its fully qualified form."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``[registry/]repository[:tag][@digest]`` with Docker's defaults."""
        rest = text.strip()
        if not rest:
            raise InvalidReference("empty image reference")
        digest = ""
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST.match(digest):
                raise InvalidReference(f"invalid digest in image reference {text!r}")
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, remainder
        else:
            registry = DEFAULT_REGISTRY
        tag = ""
        name, colon, maybe_tag = rest.rpartition(":")
        if colon and "/" not in maybe_tag:
            rest, tag = name, maybe_tag
            if not _TAG.match(tag):
                raise InvalidReference(f"invalid tag in image reference {text!r}")
        if registry == DEFAULT_REGISTRY and "/" not in rest:
            rest = f"library/{rest}"
        if not _REPO.match(rest):
            raise InvalidReference(f"invalid repository name in image reference {text!r}")
        if not tag and not digest:
            tag = "latest"
        return cls(registry, rest, tag, digest)

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegistryConfig:
    """Where registries really are: ``mirrors`` maps a registry name (or ``*``) to endpoints.

    An endpoint is a base URL (``http://127.0.0.1:5000``). A registry without mirrors is
    reached at ``https://<registry>``, except loopback names, which are plain HTTP as
    Docker treats them as insecure registries by default.
    """

    mirrors: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    insecure: Sequence[str] = ()
    """Registries reached over plain HTTP even though they are not on loopback."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegistryConfig:
        """Read the k3s ``registries.yaml`` shape: ``{mirrors: {name: {endpoint: [...]}}}``."""
        mirrors = {
            name: list((entry or {}).get("endpoint") or [])
            for name, entry in (data.get("mirrors") or {}).items()
        }
        return cls(mirrors=mirrors, insecure=list(data.get("insecure") or []))

    @classmethod
    def load(cls, path: str | Path) -> RegistryConfig:
        """Read a ``registries.yaml`` file."""
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def endpoints(self, registry: str) -> list[str]:
        """Base URLs to try for ``registry``, mirrors first, the registry itself last."""
        found = list(self.mirrors.get(registry) or self.mirrors.get("*") or [])
        host = registry.split(":")[0]
        if registry == DEFAULT_REGISTRY:
            own = "https://registry-1.docker.io"
        elif host in ("localhost", "127.0.0.1", "::1") or registry in self.insecure:
            own = f"http://{registry}"
        else:
            own = f"https://{registry}"
        if own not in found:
            found.append(own)
        return [url.rstrip("/") for url in found]
