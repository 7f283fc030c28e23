"""CertificateSigningRequests (``certificates.k8s.io/v1``), as upstream's
``pkg/registry/certificates`` and the ``CertificateApproval``/``CertificateSigning``
admission plugins.

- A new CSR records who asked (``spec.username``, ``uid``, ``groups``, ``extra``: the
  requester, whatever the body says) and starts with an empty status.
- An update of the object itself changes neither spec nor status.
- ``/approval`` changes only the conditions (``kubectl certificate approve/deny``); adding
  ``Approved`` or ``Denied`` needs the ``approve`` verb on the ``signers`` resource named
  by ``spec.signerName`` (or ``<domain>/*``).
- ``/status`` changes only the status, never ``Approved``/``Denied``; setting
  ``status.certificate`` (once) needs the ``sign`` verb on that signer.

Condition timestamps left empty are filled in, as upstream's strategies do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubetrio.api.scheme import ResourceInfo
from kubetrio.kubeobject import KubeObject
from kubetrio.providers import AuthorizationAttributes, AuthorizationDecision, UserInfo

from . import _objects as objects
from ._status import ApiError
from ._strategies import check_certificate_signing_request as _check

GROUP = "certificates.k8s.io"

Decide = Callable[[UserInfo, AuthorizationAttributes], AuthorizationDecision]


def _fill_timestamps(new: KubeObject, old: KubeObject) -> None:
    """``populateConditionTimestamps``: an empty ``lastUpdateTime`` is now; an empty
    ``lastTransitionTime`` is the old one when the condition's status did not change."""
    now = objects.now_rfc3339()
    old_conditions = {
        (c.get("type"), c.get("status")): c
        for c in ((old.get("status") or {}).get("conditions") or [])
        if isinstance(c, dict)
    }
    for condition in (new.get("status") or {}).get("conditions") or []:
        if not isinstance(condition, dict):
            continue
        condition.setdefault("lastUpdateTime", now)
        if not condition.get("lastTransitionTime"):
            before = old_conditions.get((condition.get("type"), condition.get("status")))
            condition["lastTransitionTime"] = (before or {}).get("lastTransitionTime") or now


def _may(decide: Decide, user: UserInfo, verb: str, signer: str) -> bool:
    """``IsAuthorizedForSignerName``: ``verb`` on the signer, or on its ``<domain>/*``."""
    names = [signer]
    if "/" in signer:
        names.append(signer.split("/", 1)[0] + "/*")
    return any(
        decide(
            user, AuthorizationAttributes(verb=verb, api_group=GROUP, resource="signers", name=name)
        ).allowed
        for name in names
    )


def _forbidden(info: ResourceInfo, name: str, message: str) -> ApiError:
    return ApiError(
        403,
        f'{info.resource}.{info.group} "{name}" is forbidden: {message}',
        details={"name": name, "group": info.group, "kind": info.resource},
    )


def finisher(
    info: ResourceInfo, subresource: str, user: UserInfo, decide: Decide
) -> Callable[[KubeObject, KubeObject], None]:
    """What a ``/approval`` or ``/status`` update of a CSR does after the status is taken
    from the request: keep what that endpoint may not change, fill timestamps, validate,
    and check the ``approve``/``sign`` permission."""

    def finish(current: KubeObject, new: KubeObject) -> None:
        name = str(current["metadata"].get("name", ""))
        old_status: dict[str, Any] = current.get("status") or {}
        status = new.setdefault("status", {})
        if subresource == "approval":
            # Only the conditions change through /approval.
            if "certificate" in old_status:
                status["certificate"] = copy.deepcopy(old_status["certificate"])
            else:
                status.pop("certificate", None)
        _fill_timestamps(new, current)
        _check(info, new, current, subresource)
        signer = str((current.get("spec") or {}).get("signerName", ""))
        if subresource == "approval" and _decided(new) != _decided(current):
            verb = "approve"
        elif subresource == "status" and status.get("certificate") != old_status.get("certificate"):
            verb = "sign"
        else:
            return
        if not _may(decide, user, verb, signer):
            raise _forbidden(
                info, name, f'user not permitted to {verb} requests with signerName "{signer}"'
            )

    return finish


def _decided(csr: KubeObject) -> list[Any]:
    return [
        c
        for c in ((csr.get("status") or {}).get("conditions") or [])
        if isinstance(c, dict) and c.get("type") in ("Approved", "Denied")
    ]
