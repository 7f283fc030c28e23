"""kube-apiserver's ServiceAccount admission plugin, for new pods.

* A pod without ``spec.serviceAccountName`` (nor the deprecated ``serviceAccount``) runs
  as ``default``; both fields are set, as the API returns them.
* A pod naming a ServiceAccount its namespace does not have is refused:
  ``error looking up service account <ns>/<name>: serviceaccount "<name>" not found``.
* Unless ``automountServiceAccountToken`` is false (the pod's setting wins over the
  ServiceAccount's), the pod gets the projected volume ``kube-api-access-<5 random>`` — a
  bound token (``expirationSeconds: 3607``), ``ca.crt`` from the ``kube-root-ca.crt``
  ConfigMap and the namespace — mounted read-only at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` in every init container and
  container that has no mount there yet, shaped exactly as upstream's.

ServiceAccounts are read from the API server's cache. The ``default`` ServiceAccount is
made by a controller moments after its namespace: a pod that comes first is admitted
(upstream retries its lookup for a while instead), and its token waits for the account.
Mirror pods (``kubernetes.io/config.mirror``) are left alone, as upstream does.
"""

from __future__ import annotations

import secrets
from typing import Any

from kubetrio.providers import AdmissionRequest, KubeObject, ObjectCache

DEFAULT_NAME = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_EXPIRATION = 3607
"""upstream's ``WarnOnlyBoundTokenExpirationSeconds``: an hour and seven seconds."""
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet of upstream's generated name suffixes (no vowels, no look-alikes)."""


def _applies(request: AdmissionRequest) -> KubeObject | None:
    """The new pod this plugin looks at, or None."""
    if (
        request.operation != "CREATE"
        or request.api_group != ""
        or request.resource != "pods"
        or request.subresource
        or not isinstance(request.object, dict)
    ):
        return None
    annotations = (request.object.get("metadata") or {}).get("annotations") or {}
    if MIRROR_ANNOTATION in annotations:
        return None
    return request.object


def account_name(pod: KubeObject) -> str:
    """The pod's ServiceAccount (``serviceAccountName``, else the deprecated field)."""
    spec = pod.get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "")


def mutate(request: AdmissionRequest, accounts: ObjectCache | None) -> None:
    """Default the ServiceAccount and project its token into the pod."""
    pod = _applies(request)
    if pod is None:
        return
    spec = pod.setdefault("spec", {})
    name = account_name(pod) or DEFAULT_NAME
    spec["serviceAccountName"] = name
    spec["serviceAccount"] = name
    account = accounts.get(name, request.namespace) if accounts is not None else None
    if account is None and name != DEFAULT_NAME:
        return  # refused by validate
    if not _automount(account, spec):
        return
    _mount_token(spec)
    if not spec.get("imagePullSecrets") and account is not None:
        pull = [{"name": s.get("name", "")} for s in account.get("imagePullSecrets") or []]
        if pull:
            spec["imagePullSecrets"] = pull


def validate(request: AdmissionRequest, accounts: ObjectCache | None) -> list[str] | None:
    """Refuse a pod whose ServiceAccount does not exist, worded as upstream."""
    pod = _applies(request)
    if pod is None or accounts is None:
        return None
    name = account_name(pod) or DEFAULT_NAME
    if name == DEFAULT_NAME or accounts.get(name, request.namespace) is not None:
        return None
    return [
        f"error looking up service account {request.namespace}/{name}: "
        f'serviceaccount "{name}" not found'
    ]


def _automount(account: KubeObject | None, spec: KubeObject) -> bool:
    """The pod's ``automountServiceAccountToken`` wins, then the ServiceAccount's."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account is not None and account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def token_volume_source() -> KubeObject:
    """The projected source of ``kube-api-access-*`` (with the API's defaults filled in,
    as the pod reads back from kube-apiserver)."""
    return {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }


def _mount_token(spec: KubeObject) -> None:
    volumes: list[Any] = spec.get("volumes") or []
    existing = next(
        (v.get("name") for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)),
        None,
    )
    volume_name = existing or VOLUME_PREFIX + "".join(
        secrets.choice(_NAME_ALPHABET) for _ in range(5)
    )
    needed = False
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        mounts = container.get("volumeMounts") or []
        if any(m.get("mountPath") == MOUNT_PATH for m in mounts):
            continue  # the container brings its own: upstream leaves it
        mount = {"name": volume_name, "readOnly": True, "mountPath": MOUNT_PATH}
        container["volumeMounts"] = [*mounts, mount]
        needed = True
    if needed and existing is None:
        spec["volumes"] = [*volumes, {"name": volume_name, "projected": token_volume_source()}]
