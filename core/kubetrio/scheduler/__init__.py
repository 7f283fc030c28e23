"""kubetrio's scheduler: the scheduling cycle in core, the plugins through the hooks.

``Scheduler(client, plugins=..., config=...)`` watches nodes and pods through the
client, keeps a node cache, and assigns pending pods with the registered
:class:`~kubetrio.providers.SchedulerPlugin` objects (the built-in ones come from the
``plugins/scheduler`` distribution, exactly as a third-party plugin would):

* ``_queue``: active/backoff/unschedulable queues with priority;
* ``_cache``: nodes with their pods' aggregates (:class:`~kubetrio.providers.NodeInfo`);
* ``_framework``: one profile's plugins, stage by stage, and the ``FailedScheduling`` text;
* ``_config``: ``KubeSchedulerConfiguration`` YAML (profiles, enabled plugins, weights);
* ``_events``: the bounded event queue (Normal events dropped under pressure, counted;
  FailedScheduling kept, one per pod);
* ``_scheduler``: the service — informers, cycles, bindings, events, conditions.
"""

from ._cache import SchedulerCache as SchedulerCache
from ._config import ConfigError as ConfigError
from ._config import PluginSet as PluginSet
from ._config import Profile as Profile
from ._config import SchedulerConfig as SchedulerConfig
from ._framework import FitError as FitError
from ._framework import Framework as Framework
from ._framework import ScoreRangeError as ScoreRangeError
from ._queue import QueuedPod as QueuedPod
from ._queue import SchedulingQueue as SchedulingQueue
from ._resources import node_allocatable as node_allocatable
from ._resources import pod_info as pod_info
from ._scheduler import USER as USER
from ._scheduler import Scheduler as Scheduler
