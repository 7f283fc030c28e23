"""The controller manager: shared informers, leader election and every controller.

Start it beside the API server::

    manager = ControllerManager(client, plugins=plugin_manager, identity="node-a")
    await nursery.start(manager.run)

``run`` returns from ``nursery.start`` once the informer caches are filled and the
manager campaigns for the ``kube-system/kubetrio-controller-manager`` Lease. The caches
are kept warm while standing by, so a standby that wins the Lease starts reconciling at
once. While leading, each built-in controller runs its workers and each plugin
controller (``kubetrio_register_controllers``) runs ``provider.run(client)`` in the same
nursery; losing the Lease cancels all of them. Controllers only ever see a client whose
writes are refused unless this manager holds the Lease (see :mod:`._leader`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from kubetrio.client import Client, EventRecorder, SharedInformers
from kubetrio.providers import UserInfo

from ._brakes import BrakeLimit, CreateBrake
from ._cronjob import CronJobController
from ._daemonset import DaemonSetController
from ._deployment import DeploymentController
from ._disruption import DisruptionController
from ._endpoints import EndpointsController
from ._gc import GarbageCollector
from ._hpa import HorizontalController
from ._job import JobController
from ._leader import (
    LEASE_DURATION,
    MAX_INFLIGHT_WRITES,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    LeaderElector,
    LeaderGuardedTransport,
    default_identity,
)
from ._nodelifecycle import NodeLifecycleController
from ._persistentvolume import PersistentVolumeController
from ._pvprotection import PVCProtectionController, PVProtectionController
from ._pvresize import VolumeResizeController
from ._reconcile import ControllerContext, QueueController
from ._replicaset import ReplicaSetController
from ._serviceaccount import ServiceAccountController
from ._statefulset import StatefulSetController

if TYPE_CHECKING:
    from kubetrio.plugins import PluginManager

log = logging.getLogger("kubetrio.controllers.manager")

BUILT_IN: dict[str, type[QueueController]] = {
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "garbagecollector": GarbageCollector,
    "serviceaccount": ServiceAccountController,
    "endpoints": EndpointsController,
    "job": JobController,
    "cronjob": CronJobController,
    "daemonset": DaemonSetController,
    "statefulset": StatefulSetController,
    "nodelifecycle": NodeLifecycleController,
    "disruption": DisruptionController,
    "horizontalpodautoscaling": HorizontalController,
    "persistentvolume-binder": PersistentVolumeController,
    "persistentvolume-expander": VolumeResizeController,
    "pvc-protection": PVCProtectionController,
    "pv-protection": PVProtectionController,
}
"""The built-in controllers by name (what ``controllers=`` selects from)."""

COMPONENT = "kubetrio-controller-manager"

USER = UserInfo(name="system:kube-controller-manager")
"""kube-controller-manager's own identity (bound to ``system:kube-controller-manager``):
the shared informers, the leader Lease, events, and controllers without an account."""
LEASE_NAME = "kube-controller-manager"
"""kube-controller-manager's Lease, the one ``system:kube-controller-manager`` may update."""
ACCOUNT_NAMESPACE = "kube-system"
SERVICE_ACCOUNTS: dict[str, str] = {
    "replicaset": "replicaset-controller",
    "deployment": "deployment-controller",
    "garbagecollector": "generic-garbage-collector",
    "serviceaccount": "service-account-controller",
    "endpoints": "endpoint-controller",
    "job": "job-controller",
    "cronjob": "cronjob-controller",
    "daemonset": "daemon-set-controller",
    "statefulset": "statefulset-controller",
    "nodelifecycle": "node-controller",
    "servicelb": "service-controller",
    "ingress-loadbalancer": "ingress-loadbalancer-controller",
    "disruption": "disruption-controller",
    "horizontalpodautoscaling": "horizontal-pod-autoscaler",
    "root-ca-cert-publisher": "root-ca-cert-publisher",
    "persistentvolume-binder": "persistent-volume-binder",
    "persistentvolume-expander": "expand-controller",
    "pvc-protection": "pvc-protection-controller",
    "pv-protection": "pv-protection-controller",
    "local-path-storageclass": "local-path-provisioner",
    "csi-driver-objects": "csi-driver-objects",
    "csrsigning": "certificate-controller",
    "csrapproving": "certificate-controller",
    "tokencleaner": "token-cleaner",
    # plugin controllers (kubetrio-auth)
    "clusterrole-aggregation": "clusterrole-aggregation-controller",
    "resourcequota": "resourcequota-controller",
}
"""Each controller's ServiceAccount in kube-system, upstream's names (bound to the
``system:controller:<account>`` ClusterRoles), as kube-controller-manager's
``--use-service-account-credentials`` runs each control loop as its own account."""


def controller_user(name: str) -> UserInfo:
    """The identity the controller called ``name`` acts as: its ServiceAccount, or the
    controller manager's own identity for a controller without one."""
    account = SERVICE_ACCOUNTS.get(name)
    if account is None:
        return USER
    return UserInfo(
        name=f"system:serviceaccount:{ACCOUNT_NAMESPACE}:{account}",
        groups=("system:serviceaccounts", f"system:serviceaccounts:{ACCOUNT_NAMESPACE}"),
    )


class ControllerManager:
    """Runs the built-in and the plugins' controllers under one leader Lease.

    :param client: any :class:`~kubetrio.client.Client` (in-process or HTTP).
    :param plugins: a :class:`~kubetrio.plugins.PluginManager` whose controllers run too.
    :param identity: this instance's name in the Lease (default: hostname + random).
    :param controllers: names from :data:`BUILT_IN` to run (default: all).
    :param leader_election: campaign for the Lease (False: act at once, alone).
    :param release_on_cancel: give the Lease up on a clean stop (False: let it expire).
    :param create_limit: the per-owner create rate of the pod-creating controllers (see
        :mod:`._brakes`; default :class:`BrakeLimit` ()).
    :param extra: more controllers to run under the same Lease, e.g. the ServiceLB
        allocator (:mod:`kubetrio.servicelb`, built on this package) that the composition
        root adds when it has an address pool.
    :param credentials: a client acting as a given user (the composition root's
        in-process clients): each controller then acts as :func:`controller_user` of its
        name, as kube-controller-manager's ``--use-service-account-credentials``; None:
        every controller uses ``client``.
    """

    def __init__(
        self,
        client: Client,
        *,
        plugins: PluginManager | None = None,
        identity: str | None = None,
        controllers: Iterable[str] | None = None,
        leader_election: bool = True,
        lease_name: str = "kubetrio-controller-manager",
        lease_namespace: str = "kube-system",
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        release_on_cancel: bool = True,
        extra: Iterable[QueueController] = (),
        create_limit: BrakeLimit | None = None,
        credentials: Callable[[UserInfo], Client] | None = None,
    ) -> None:
        self.client = client
        self.credentials = credentials
        self.plugins = plugins
        self.identity = identity or default_identity()
        names = list(BUILT_IN) if controllers is None else list(controllers)
        unknown = [n for n in names if n not in BUILT_IN]
        if unknown:
            raise ValueError(f"unknown controllers {unknown}; known: {sorted(BUILT_IN)}")
        self.controllers: list[QueueController] = [BUILT_IN[n]() for n in names]
        self.controllers.extend(extra)
        if create_limit is not None:
            for controller in self.controllers:
                brake = getattr(controller, "brake", None)
                if isinstance(brake, CreateBrake):
                    brake.limit = create_limit
        self.leader_election = leader_election
        self.elector = LeaderElector(
            client,
            identity=self.identity,
            name=lease_name,
            namespace=lease_namespace,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
            release_on_cancel=release_on_cancel,
        )
        self.informers = SharedInformers(client)
        self.leading = trio.Event()
        """Set while this manager leads (replaced with a fresh Event on losing the Lease)."""

    def controller(self, name: str) -> QueueController:
        """The running built-in controller called ``name``."""
        for controller in self.controllers:
            if controller.name == name:
                return controller
        raise KeyError(name)

    @property
    def is_leader(self) -> bool:
        """Whether this manager may write now."""
        return not self.leader_election or self.elector.is_leader()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sync caches, then campaign and lead until cancelled."""
        # One bound on the writes in flight for all controllers, whoever they act as.
        writes = trio.CapacityLimiter(MAX_INFLIGHT_WRITES)

        def client_for(name: str | None) -> Client:
            client = self.client
            if name is not None and self.credentials is not None:
                if name not in SERVICE_ACCOUNTS:
                    log.warning(
                        "controller %s has no ServiceAccount of its own: it acts as %s",
                        name,
                        USER.name,
                    )
                client = self.credentials(controller_user(name))
            if not self.leader_election:
                return client
            return Client(LeaderGuardedTransport(client.transport, self.elector, writes=writes))

        events = EventRecorder(client_for(None), COMPONENT, host=self.identity)
        for controller in self.controllers:
            controller.setup(
                ControllerContext(
                    client=client_for(controller.name),
                    informers=self.informers,
                    events=events,
                    plugins=self.plugins,
                )
            )
        plugin_controllers: Sequence[Any] = (
            [
                r.provider
                for r in self.plugins.controllers()
                if not getattr(r.provider, "in_apiserver", False)  # the API server runs those
            ]
            if self.plugins is not None
            else []
        )

        async def lead() -> None:
            try:
                async with trio.open_nursery() as nursery:
                    for controller in self.controllers:
                        await nursery.start(controller.run)
                    for provider in plugin_controllers:
                        await nursery.start(provider.run, client_for(provider.name))
                    self.leading.set()
                    log.info("%s: %d controllers running", self.identity, len(self.controllers))
            finally:
                self.leading = trio.Event()

        async with trio.open_nursery() as nursery:
            await nursery.start(self.informers.run)
            nursery.start_soon(events.run)
            if self.leader_election:
                await nursery.start(self.elector.run, lead)
            else:
                nursery.start_soon(lead)
            task_status.started()
