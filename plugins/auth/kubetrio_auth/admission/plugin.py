"""Entry point of the ``admission`` plugin: kube-apiserver's built-in admission plugins.

* **PodSecurity** enforces the Pod Security Standards a namespace asks for with its
  ``pod-security.kubernetes.io/<mode>[-version]`` labels: ``enforce`` refuses pods (403),
  ``warn`` answers with a ``Warning`` kubectl prints, ``audit`` logs the violation. Pod
  templates of workloads are checked for warn and audit only, as upstream does.

* **ResourceQuota** refuses objects that would take a quota of their namespace over its
  ``hard`` limits (counts, compute resources, storage requests); its controller keeps each
  quota's ``status.hard`` and ``status.used`` current (``kubectl describe quota``).

* **LimitRanger** fills in new pods' container requests and limits from their
  namespace's LimitRanges (``default``, ``defaultRequest``) and refuses containers outside
  ``min``, ``max`` and ``maxLimitRequestRatio``.

* **ServiceAccount** gives new pods the ``default`` ServiceAccount if they name none,
  refuses those naming one that does not exist, and projects a bound token, the cluster
  CA and the namespace into ``/var/run/secrets/kubernetes.io/serviceaccount`` (unless
  ``automountServiceAccountToken: false``).

* **Priority** gives new pods the ``value`` of their PriorityClass (or of the global
  default class) as ``spec.priority``, refuses unknown classes and a second default.

* **NamespaceLifecycle** refuses deleting ``default``, ``kube-system`` and ``kube-public``.

* **DefaultStorageClass**, **StorageObjectInUseProtection** and
  **PersistentVolumeClaimResize** (``storage``): the default class for claims without
  one, the protection finalizers of claims and volumes, growing a claim only when its
  class allows expansion.

* **DefaultIngressClass** (``ingressclass``): the default IngressClass for new
  Ingresses without one.

* **NodeRestriction** lets a node agent change only its own Node and the pods bound to
  it (``noderestriction``); on with the ``Node`` authorization mode, as kubeadm pairs them.

Namespaces, quotas and limit ranges are read from caches the API server fills
(``kubetrio_api_caches``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import AdmissionRequest, ApiCaches, Controller, ObjectCache

from ..rbac.plugin import configured_modes
from . import (
    ingressclass,
    lifecycle,
    limitranger,
    pod_security_admission,
    priority,
    serviceaccount,
    storage,
)
from .noderestriction import NodeRestriction
from .quota import QuotaAdmission, QuotaController

log = logging.getLogger("kubetrio.admission")


class AdmissionPlugin:
    """The ``admission`` plugin; one per plugin manager, with its own caches."""

    def __init__(self) -> None:
        self.namespaces: ObjectCache | None = None
        self.quota = QuotaAdmission()
        self.limit_ranges: ObjectCache | None = None
        self.service_accounts: ObjectCache | None = None
        self.storage_classes: ObjectCache | None = None
        self.priority_classes: ObjectCache | None = None
        self.ingress_classes: ObjectCache | None = None
        self.node_restriction = NodeRestriction()

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """NodeRestriction is on when the authorization modes name ``Node``."""
        self.node_restriction = NodeRestriction()
        self.node_restriction.enabled = "Node" in configured_modes(config)[0]

    @hookimpl
    def kubetrio_api_caches(self, caches: ApiCaches) -> None:
        """Ask for the Namespace cache (PodSecurity reads its labels), the
        ResourceQuota, LimitRange, ServiceAccount, StorageClass, PriorityClass and
        IngressClass caches, and Pods and Nodes (NodeRestriction)."""
        self.namespaces = caches.informer("v1", "namespaces")
        self.quota.quotas = caches.informer("v1", "resourcequotas")
        self.limit_ranges = caches.informer("v1", "limitranges")
        self.service_accounts = caches.informer("v1", "serviceaccounts")
        self.storage_classes = caches.informer("storage.k8s.io/v1", "storageclasses")
        self.priority_classes = caches.informer("scheduling.k8s.io/v1", "priorityclasses")
        self.ingress_classes = caches.informer("networking.k8s.io/v1", "ingressclasses")
        if self.node_restriction.enabled:
            self.node_restriction.pods = caches.informer("v1", "pods")
            self.node_restriction.nodes = caches.informer("v1", "nodes")

    @hookimpl
    def kubetrio_admission_mutate(self, request: AdmissionRequest) -> None:
        """Priority: a new pod's priority from its class (refusing unknown classes and a
        second default class). LimitRanger: default new pods' container requests and
        limits; then ServiceAccount: the pod's account and its token volume (upstream's
        order). DefaultStorageClass and StorageObjectInUseProtection for new claims and
        volumes. DefaultIngressClass for new Ingresses."""
        priority.mutate(request, self.priority_classes)
        limitranger.mutate(request, self.limit_ranges)
        serviceaccount.mutate(request, self.service_accounts)
        storage.mutate(request, self.storage_classes)
        ingressclass.mutate(request, self.ingress_classes)

    @hookimpl
    def kubetrio_register_controllers(self, register: Callable[[Controller], None]) -> None:
        """The quota status controller."""
        register(QuotaController())

    @hookimpl
    def kubetrio_admission_validate(self, request: AdmissionRequest) -> list[str] | None:
        """NodeRestriction first. PodSecurity: refuse pods violating the namespace's
        enforced level; warn and audit pods and workload templates against the warn and
        audit levels. Then LimitRanger's bounds. Then ResourceQuota, only for what the
        others admit (so a refused pod is not counted)."""
        refused = self.node_restriction.validate(request)
        refused += lifecycle.validate(request) or []
        refused += serviceaccount.validate(request, self.service_accounts) or []
        refused += pod_security_admission.validate(request, self.namespaces) or []
        refused += limitranger.validate(request, self.limit_ranges) or []
        refused += storage.validate(request, self.storage_classes) or []
        return refused or self.quota.validate(request)


__kubetrio_plugin__ = AdmissionPlugin
"""What the entry point instantiates once per plugin manager."""
