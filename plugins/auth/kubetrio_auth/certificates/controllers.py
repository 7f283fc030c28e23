"""The certificate controllers of kube-controller-manager, in-process:

- :class:`CSRSigner` (``csrsigning``): signs approved requests of the
  ``kubernetes.io/kube-apiserver-client`` and ``kubernetes.io/kube-apiserver-client-kubelet``
  signers with the cluster's client CA (``<data dir>/pki/client-ca.key``), for
  ``spec.expirationSeconds`` (at least 600 s) or a year; a request that breaks its signer's
  rules gets a ``Failed`` condition saying why;
- :class:`CSRApprover` (``csrapproving``): approves node client certificate requests
  whose requester may ``create`` ``certificatesigningrequests/selfnodeclient`` (a node
  renewing its own) or ``certificatesigningrequests/nodeclient`` (a bootstrap token
  joining), asked by a SubjectAccessReview;
- :class:`TokenCleaner` (``tokencleaner``): deletes expired bootstrap token Secrets;
- :class:`BootstrapBindings`: the ClusterRoleBindings ``kubeadm init`` makes so that
  bootstrap tokens can join (``system:bootstrappers`` may create CSRs and get them
  auto-approved, ``system:nodes`` may renew their own).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import logging
from pathlib import Path
from typing import Any

import trio

from kubetrio.client import Client, ClientError, SharedInformers
from kubetrio.pki import LEAF_VALIDITY, ClusterPKI, sign_request
from kubetrio.providers import KubeObject

from ..rbac.aggregation import WakeOnChange
from . import bootstraptokens
from .csr import (
    API_VERSION,
    KUBELET_CLIENT,
    NODE_PREFIX,
    RESOURCE,
    SIGNERS,
    client_problem,
    conditions,
    kubelet_client_problem,
    parse_request,
    subject,
)

log = logging.getLogger("kubetrio_auth.certificates")

MIN_DURATION = datetime.timedelta(seconds=600)


async def _watch_csrs(
    client: Client,
    sync: Any,
    task_status: trio.TaskStatus[None],
) -> None:
    """Run ``sync(client, csrs)`` at start and after every change to a CSR."""
    informers = SharedInformers(client)
    csrs = informers.informer(API_VERSION, RESOURCE)
    wake, woken = trio.open_memory_channel[None](1)
    csrs.add_handler(WakeOnChange(wake))
    async with trio.open_nursery() as nursery:
        await nursery.start(informers.run)
        task_status.started()
        async for _ in woken:
            await sync(client, csrs.list())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _timestamp() -> str:
    return _now().strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(csr: KubeObject, longest: datetime.timedelta = LEAF_VALIDITY) -> datetime.timedelta:
    """How long the certificate of ``csr`` is valid: ``spec.expirationSeconds`` (at least
    600 s) but not longer than ``longest``."""
    seconds = (csr.get("spec") or {}).get("expirationSeconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return longest
    return min(max(datetime.timedelta(seconds=seconds), MIN_DURATION), longest)


class CSRSigner:
    """Issues the certificates of approved CSRs for the two client signers."""

    name = "csrsigning"

    def __init__(self, data_dir: Path) -> None:
        self.pki = ClusterPKI(data_dir / "pki")

    async def run(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch CSRs and sign the approved ones, until cancelled."""
        await _watch_csrs(client, self.sync, task_status)

    async def sync(self, client: Client, csrs: list[KubeObject]) -> None:
        """Sign (or fail) every approved CSR of ours without a certificate."""
        for csr in csrs:
            spec, status = csr.get("spec") or {}, csr.get("status") or {}
            if spec.get("signerName") not in SIGNERS or status.get("certificate"):
                continue
            have = conditions(csr)
            if "Approved" not in have or {"Denied", "Failed"} & have:
                continue
            try:
                await self.sign(client, csr)
            except ClientError as exc:
                # A conflict: the newer version comes through the informer.
                log.info("signing CSR %s: %s", csr["metadata"]["name"], exc)

    async def sign(self, client: Client, csr: KubeObject) -> None:
        """Write the certificate of one approved CSR, or a ``Failed`` condition."""
        spec = csr.get("spec") or {}
        usages = [str(u) for u in spec.get("usages") or []]
        request = parse_request(csr)
        if request is None:
            problem = "unable to parse csr"
        elif spec.get("signerName") == KUBELET_CLIENT:
            problem = kubelet_client_problem(request, usages)
        else:
            problem = client_problem(usages)
        status: dict[str, Any] = dict(csr.get("status") or {})
        if problem or request is None:
            status["conditions"] = [
                *(status.get("conditions") or []),
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "SignerValidationFailure",
                    "message": problem,
                    "lastUpdateTime": _timestamp(),
                },
            ]
            log.info("CSR %s failed: %s", csr["metadata"]["name"], problem)
        else:
            pem = await trio.to_thread.run_sync(
                lambda: sign_request(
                    self.pki.client_ca, request, usages=usages, validity=duration(csr)
                )
            )
            status["certificate"] = base64.b64encode(pem).decode()
            log.info("CSR %s signed for %s", csr["metadata"]["name"], subject(request)[0])
        await client.update(API_VERSION, RESOURCE, {**csr, "status": status}, subresource="status")


class CSRApprover:
    """Approves node client certificate requests their requester may have approved."""

    name = "csrapproving"

    async def run(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch CSRs and approve what the rules allow, until cancelled."""
        await _watch_csrs(client, self.sync, task_status)

    async def sync(self, client: Client, csrs: list[KubeObject]) -> None:
        """Look at every undecided kubelet client CSR."""
        for csr in csrs:
            spec = csr.get("spec") or {}
            if spec.get("signerName") != KUBELET_CLIENT or conditions(csr) & {
                "Approved",
                "Denied",
                "Failed",
            }:
                continue
            try:
                await self.consider(client, csr)
            except ClientError as exc:
                log.info("approving CSR %s: %s", csr["metadata"]["name"], exc)

    async def consider(self, client: Client, csr: KubeObject) -> None:
        """Approve one CSR when it is a node client certificate the requester may get."""
        spec = csr.get("spec") or {}
        request = parse_request(csr)
        if request is None or kubelet_client_problem(request, spec.get("usages") or []):
            return  # not a node client certificate: left to a person, as upstream
        common_name, _ = subject(request)
        if spec.get("username") == common_name:
            subresource = "selfnodeclient"
            message = "Auto approving self kubelet client certificate after SubjectAccessReview."
        else:
            subresource = "nodeclient"
            message = "Auto approving kubelet client certificate after SubjectAccessReview."
        if not await self.allowed(client, spec, subresource):
            log.info(
                "CSR %s: %s may not create certificatesigningrequests/%s; not approved",
                csr["metadata"]["name"],
                spec.get("username"),
                subresource,
            )
            return
        status = dict(csr.get("status") or {})
        status["conditions"] = [
            *(status.get("conditions") or []),
            {"type": "Approved", "status": "True", "reason": "AutoApproved", "message": message},
        ]
        await client.update(
            API_VERSION, RESOURCE, {**csr, "status": status}, subresource="approval"
        )
        log.info("CSR %s approved for %s", csr["metadata"]["name"], common_name)

    async def allowed(self, client: Client, spec: KubeObject, subresource: str) -> bool:
        """A SubjectAccessReview: may the requester create CSRs' ``subresource``?"""
        review: KubeObject = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": spec.get("username", ""),
                "uid": spec.get("uid", ""),
                "groups": list(spec.get("groups") or []),
                "extra": spec.get("extra") or {},
                "resourceAttributes": {
                    "group": "certificates.k8s.io",
                    "resource": RESOURCE,
                    "verb": "create",
                    "subresource": subresource,
                },
            },
        }
        answer = await client.create("authorization.k8s.io/v1", "subjectaccessreviews", review)
        return bool((answer.get("status") or {}).get("allowed"))


class TokenCleaner:
    """Deletes bootstrap token Secrets once they expire.

    As upstream's tokencleaner, which queues each token Secret for the moment it expires:
    a look at the tokens at start, after every change to one, and when the next one
    expires (every :attr:`interval` at the latest).
    """

    name = "tokencleaner"
    interval = 10.0
    """Most seconds between two looks at the tokens."""

    async def run(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Delete what has expired whenever a token changes or expires, until cancelled."""
        informers = SharedInformers(client)
        tokens = informers.informer(
            "v1",
            "secrets",
            namespace=bootstraptokens.NAMESPACE,
            field_selector=f"type={bootstraptokens.SECRET_TYPE}",
        )
        wake, woken = trio.open_memory_channel[None](1)
        tokens.add_handler(WakeOnChange(wake))
        async with trio.open_nursery() as nursery:
            await nursery.start(informers.run)
            task_status.started()
            while True:
                wait = self.interval
                try:
                    wait = min(wait, await self.clean(client))
                except ClientError as exc:
                    log.info("cleaning bootstrap tokens: %s", exc)
                with trio.move_on_after(wait):
                    await woken.receive()

    async def clean(self, client: Client) -> float:
        """Delete every expired bootstrap token Secret of ``kube-system``; return the
        seconds until the next one expires (infinity: none will)."""
        listed = await client.list("v1", "secrets", namespace=bootstraptokens.NAMESPACE)
        now = _now()
        until = float("inf")
        for secret in listed.get("items") or []:
            if secret.get("type") != bootstraptokens.SECRET_TYPE:
                continue
            if not bootstraptokens.is_expired(secret, now):
                when = bootstraptokens.expiration(bootstraptokens.secret_data(secret))
                if when is not None:
                    until = min(until, (when - now).total_seconds())
                continue
            name = secret["metadata"]["name"]
            with contextlib.suppress(ClientError):
                await client.delete("v1", "secrets", name, namespace=bootstraptokens.NAMESPACE)
                log.info("deleted expired bootstrap token %s", name)
        return until


BINDINGS = {
    "kubeadm:kubelet-bootstrap": ("system:node-bootstrapper", bootstraptokens.GROUP),
    "kubeadm:node-autoapprove-bootstrap": (
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        bootstraptokens.GROUP,
    ),
    "kubeadm:node-autoapprove-certificate-rotation": (
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "system:nodes",
    ),
    # Upstream's Node authorizer lets nodes create and read CSRs (to renew their
    # certificate); until kubetrio has one, a binding does.
    "kubetrio:node-certificate-rotation": ("system:node-bootstrapper", "system:nodes"),
}
"""The ClusterRoleBindings of ``kubeadm init``'s bootstrap-token phase (and one for
renewals): name → (role, group)."""


class BootstrapBindings:
    """Makes the :data:`BINDINGS` once, at start (an existing one is left alone)."""

    name = "bootstrap-token-bindings"
    in_apiserver = True
    """Run by the API server's loopback client before it serves, as the default RBAC
    policy is: joining nodes need these bindings, and no controller identity may grant them."""

    async def run(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Create the missing bindings (retrying until it works), then idle."""
        while True:
            try:
                await self.ensure(client)
                break
            except ClientError as exc:
                log.warning("making the bootstrap token bindings: %s; retrying", exc)
                await trio.sleep(1)
        task_status.started()
        await trio.sleep_forever()

    async def ensure(self, client: Client) -> None:
        """Create each binding that does not exist."""
        api = "rbac.authorization.k8s.io/v1"
        for name, (role, group) in BINDINGS.items():
            binding: KubeObject = {
                "apiVersion": api,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                ],
            }
            try:
                await client.create(api, "clusterrolebindings", binding)
            except ClientError as exc:
                if exc.code != 409:
                    raise


def node_name_of(common_name: str) -> str:
    """``<name>`` of ``system:node:<name>`` ('' for anything else)."""
    return common_name.removeprefix(NODE_PREFIX) if common_name.startswith(NODE_PREFIX) else ""
