"""Entry point of the ``admission`` plugin: kube-apiserver's built-in admission plugins.

* **PodSecurity** enforces the Pod Security Standards a namespace asks for with its
  ``pod-security.kubernetes.io/<mode>[-version]`` labels: ``enforce`` refuses pods (403),
  ``warn`` answers with a ``Warning`` kubectl prints, ``audit`` logs the violation. Pod
  templates of workloads are checked for warn and audit only, as upstream does.

Namespaces are read from a cache the API server fills (``kubetrio_api_caches``).
"""

from __future__ import annotations

import logging

from kubetrio.plugins import hookimpl
from kubetrio.providers import AdmissionRequest, ApiCaches, ObjectCache

from . import pod_security_admission

log = logging.getLogger("kubetrio.admission")


class AdmissionPlugin:
    """The ``admission`` plugin; one per plugin manager, with its own caches."""

    def __init__(self) -> None:
        self.namespaces: ObjectCache | None = None

    @hookimpl
    def kubetrio_api_caches(self, caches: ApiCaches) -> None:
        """Ask for the Namespace cache (PodSecurity reads its labels)."""
        self.namespaces = caches.informer("v1", "namespaces")

    @hookimpl
    def kubetrio_admission_validate(self, request: AdmissionRequest) -> list[str] | None:
        """PodSecurity: refuse pods violating the namespace's enforced level; warn and
        audit pods and workload templates against the warn and audit levels."""
        return pod_security_admission.validate(request, self.namespaces)


__kubetrio_plugin__ = AdmissionPlugin
"""What the entry point instantiates once per plugin manager."""
