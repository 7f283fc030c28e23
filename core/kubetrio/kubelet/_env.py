"""A container's environment, resolved the way kubelet does.

Order: service link variables (``<SVC>_SERVICE_HOST`` …, when ``enableServiceLinks``),
then ``envFrom`` sources, then ``env`` entries, later ones overriding earlier ones;
``$(VAR)`` in values expands from what is defined before it. Missing ConfigMaps, Secrets
and keys are errors unless marked ``optional``: kubelet reports them as
``CreateContainerConfigError`` and tries again.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubetrio.api.quantity import Quantity
from kubetrio.client import Client, ClientError
from kubetrio.providers import ContainerConfigError, KubeObject
from kubetrio.runtime._spec import expand

_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: KubeObject, path: str) -> str:
    """A downward API ``fieldRef`` value of the pod."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_PATH.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ContainerConfigError(f"unsupported fieldRef {path!r}")


def resource_value(
    pod: KubeObject, ref: Mapping[str, Any], container: KubeObject | None = None
) -> str:
    """A downward API ``resourceFieldRef`` value (``limits.cpu`` …) with its divisor."""
    containers = (pod.get("spec") or {}).get("containers") or []
    name = ref.get("containerName")
    target = container
    if name:
        target = next((c for c in containers if c.get("name") == name), None)
    if target is None:
        raise ContainerConfigError(f"resourceFieldRef: no container {name!r}")
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    resources = (target.get("resources") or {}).get(kind) or {}
    divisor = Quantity(ref.get("divisor") or "1")
    if resource in resources:
        value = Quantity(resources[resource])
    elif resource == "cpu":
        value = Quantity(1)  # no limit: node allocatable in Kubernetes; one CPU here
    else:
        value = Quantity(0)
    # Round up, as kubelet does (a 250m limit with divisor 1 shows as 1).
    numerator, denominator = value.nanos, max(divisor.nanos, 1)
    return str(-(-numerator // denominator))


def service_env(services: Sequence[KubeObject]) -> list[tuple[str, str]]:
    """Docker-link style variables for the Services of a pod's namespace."""
    env: list[tuple[str, str]] = []
    for service in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        ports = spec.get("ports") or []
        env.append((f"{name}_SERVICE_HOST", ip))
        if ports:
            env.append((f"{name}_SERVICE_PORT", str(ports[0]["port"])))
        for port in ports:
            if port.get("name"):
                port_name = port["name"].upper().replace("-", "_")
                env.append((f"{name}_SERVICE_PORT_{port_name}", str(port["port"])))
        if ports:
            first = ports[0]
            proto = str(first.get("protocol", "TCP")).lower()
            env.append((f"{name}_PORT", f"{proto}://{ip}:{first['port']}"))
        for port in ports:
            proto = str(port.get("protocol", "TCP"))
            prefix = f"{name}_PORT_{port['port']}_{proto.upper()}"
            env += [
                (prefix, f"{proto.lower()}://{ip}:{port['port']}"),
                (f"{prefix}_PROTO", proto.lower()),
                (f"{prefix}_PORT", str(port["port"])),
                (f"{prefix}_ADDR", ip),
            ]
    return env


class EnvResolver:
    """Resolves env/envFrom of containers of one pod, caching API reads per call."""

    def __init__(self, client: Client, pod: KubeObject) -> None:
        self.client = client
        self.pod = pod
        self._cache: dict[tuple[str, str], dict[str, str] | None] = {}

    @property
    def namespace(self) -> str:
        """The pod's namespace."""
        return str(self.pod["metadata"].get("namespace") or "default")

    async def _data(self, kind: str, name: str) -> dict[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            resource = "configmaps" if kind == "configmap" else "secrets"
            try:
                obj = await self.client.get("v1", resource, name, namespace=self.namespace)
            except ClientError as exc:
                if not exc.not_found:
                    raise
                self._cache[key] = None
            else:
                if kind == "configmap":
                    self._cache[key] = {k: str(v) for k, v in (obj.get("data") or {}).items()}
                else:
                    self._cache[key] = {
                        k: base64.b64decode(v).decode(errors="replace")
                        for k, v in (obj.get("data") or {}).items()
                    }
        return self._cache[key]

    async def _key(self, kind: str, ref: Mapping[str, Any]) -> str | None:
        name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        data = await self._data(kind, name)
        if data is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f'{kind} "{name}" not found')
        if key not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(
                f"couldn't find key {key} in {kind.capitalize()} {self.namespace}/{name}"
            )
        return data[key]

    async def resolve(
        self, container: KubeObject, *, services: Sequence[KubeObject] = ()
    ) -> list[tuple[str, str]]:
        """The container's environment as ordered (name, value) pairs."""
        env: dict[str, str] = dict(service_env(services))  # chosen by enableServiceLinks
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
                if field not in source:
                    continue
                ref = source[field]
                data = await self._data(kind, str(ref.get("name", "")))
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found')
                for key, value in data.items():
                    env[prefix + key] = value
        for item in container.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand(str(item.get("value", "")), env)
                continue
            source = item["valueFrom"]
            resolved: str | None
            if "configMapKeyRef" in source:
                resolved = await self._key("configmap", source["configMapKeyRef"])
            elif "secretKeyRef" in source:
                resolved = await self._key("secret", source["secretKeyRef"])
            elif "fieldRef" in source:
                resolved = field_value(self.pod, source["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in source:
                resolved = resource_value(self.pod, source["resourceFieldRef"], container)
            else:
                resolved = None
            if resolved is not None:
                env[name] = resolved
        return list(env.items())
