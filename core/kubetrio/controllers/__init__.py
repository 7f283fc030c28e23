"""The controller manager of kubetrio and the framework its controllers are written in.

Start everything with :class:`ControllerManager`::

    client = Client.in_process(running.api)          # or Client.connect(url, token=...)
    manager = ControllerManager(client, plugins=plugin_manager, identity="node-a")
    await nursery.start(manager.run)                  # caches synced, campaigning

``run`` returns from ``nursery.start`` once the informer caches are filled; the manager
then campaigns for the ``kube-system/kubetrio-controller-manager`` Lease and runs every
controller (``BUILT_IN`` and the plugins' ``kubetrio_register_controllers``) while it
holds it. ``manager.leading`` is an Event set while leading. Cancelling the nursery
stops everything and releases the Lease. Given ``credentials=`` (a client per user), each
controller acts as its own ServiceAccount in kube-system (``controller_user``), as
kube-controller-manager's ``--use-service-account-credentials``.

The pieces, each in its own module:

* :class:`WorkQueue` — de-duplicating, delaying, per-key backoff queue (``_queue``);
* :class:`QueueController`, :class:`Result`, :class:`TemporaryError`,
  :class:`PermanentError` — the level-based reconcile loop (``_reconcile``);
* :class:`EventRecorder` — core/v1 Events with count aggregation (``_events``);
* :class:`LeaderElector`, :class:`LeaderGuardedTransport` — the Lease and the write
  guard (``_leader``);
* :class:`CreateBrake`, :class:`BrakeLimit`, :func:`slow_start` — runaway brakes: slow-start
  create batches and a per-owner create rate limit (``_brakes``);
* the controllers: ReplicaSet, Deployment, garbage collector, ServiceAccount,
  Endpoints/EndpointSlice, Job, CronJob, DaemonSet, StatefulSet, node lifecycle,
  disruption (PodDisruptionBudgets' status), the horizontal pod autoscaler (``_hpa``;
  its arithmetic in ``_hpa_replicas``), the volume controllers: PV/PVC binder and
  provisioner (``_persistentvolume``), expansion (``_pvresize``), pvc- and pv-protection
  (``_pvprotection``), and the root-ca-cert-publisher (``kube-root-ca.crt``, given the CA
  bundle);
* :class:`KubernetesService` — the ``kubernetes`` Service in ``default`` and its
  endpoints, kept by each API server (not under the Lease).
"""

from kubetrio.api.cron import CronSchedule as CronSchedule

from ._brakes import TOO_MANY_CREATES as TOO_MANY_CREATES
from ._brakes import BrakeLimit as BrakeLimit
from ._brakes import CreateBrake as CreateBrake
from ._brakes import slow_start as slow_start
from ._cronjob import CronJobController as CronJobController
from ._daemonset import DaemonSetController as DaemonSetController
from ._deployment import DeploymentController as DeploymentController
from ._deployment import template_hash as template_hash
from ._endpoints import EndpointsController as EndpointsController
from ._expectations import Expectations as Expectations
from ._gc import DEFAULT_MONITORED as DEFAULT_MONITORED
from ._gc import GarbageCollector as GarbageCollector
from ._gc import MonitoredResource as MonitoredResource
from ._hpa import HorizontalController as HorizontalController
from ._hpa_replicas import MetricsError as MetricsError
from ._hpa_replicas import MetricsSource as MetricsSource
from ._hpa_replicas import PodMetric as PodMetric
from ._hpa_replicas import Recommendations as Recommendations
from ._hpa_replicas import ReplicaCalculator as ReplicaCalculator
from ._hpa_replicas import Tolerances as Tolerances
from ._index import NodeIndex as NodeIndex
from ._index import OwnerIndex as OwnerIndex
from ._job import JobController as JobController
from ._kubernetes_service import KubernetesService as KubernetesService
from ._leader import LeaderElector as LeaderElector
from ._leader import LeaderGuardedTransport as LeaderGuardedTransport
from ._leader import LeaseTiming as LeaseTiming
from ._leader import NotLeaderError as NotLeaderError
from ._leader import guarded_client as guarded_client
from ._manager import BUILT_IN as BUILT_IN
from ._manager import LEASE_NAME as LEASE_NAME
from ._manager import SERVICE_ACCOUNTS as SERVICE_ACCOUNTS
from ._manager import USER as USER
from ._manager import ControllerManager as ControllerManager
from ._manager import controller_user as controller_user
from ._nodelifecycle import NodeLifecycleController as NodeLifecycleController
from ._persistentvolume import PersistentVolumeController as PersistentVolumeController
from ._pvprotection import PVCProtectionController as PVCProtectionController
from ._pvprotection import PVProtectionController as PVProtectionController
from ._pvresize import VolumeResizeController as VolumeResizeController
from ._reconcile import ControllerContext as ControllerContext
from ._reconcile import PermanentError as PermanentError
from ._reconcile import QueueController as QueueController
from ._reconcile import Result as Result
from ._reconcile import TemporaryError as TemporaryError
from ._replicaset import ReplicaSetController as ReplicaSetController
from ._rootca import RootCACertPublisher as RootCACertPublisher
from ._serviceaccount import ServiceAccountController as ServiceAccountController
from ._statefulset import StatefulSetController as StatefulSetController
