"""The cluster client: how controllers, the node agent and tools talk to the API server.

``Client.in_process(server)`` for an embedded control plane (no HTTP, same semantics),
``Client.connect(url, token=...)`` over HTTP; :class:`Informer` and
:class:`SharedInformers` keep local caches current with list + watch; :class:`WorkQueue`
(de-duplicating, per-key backoff) and :class:`EventRecorder` (aggregated Events) are the
parts client-go keeps beside them, used by controllers, the scheduler and the node agent.
``Client.history``/``history_at``/``restore`` read and restore an object's kept revisions
(``_history``); :func:`from_kubeconfig` makes a client as kubectl would.
"""

from ._client import Client as Client
from ._client import KubeObject as KubeObject
from ._client import WatchEvent as WatchEvent
from ._client import resource_path as resource_path
from ._discovery import ApiResource as ApiResource
from ._discovery import Discovery as Discovery
from ._discovery import discover as discover
from ._discovery import group_of as group_of
from ._errors import ClientError as ClientError
from ._events import NORMAL as NORMAL
from ._events import WARNING as WARNING
from ._events import EventRecorder as EventRecorder
from ._events import now_micro as now_micro
from ._events import now_rfc3339 as now_rfc3339
from ._history import diff_revisions as diff_revisions
from ._history import parse_time as parse_time
from ._history import summarize_change as summarize_change
from ._informer import EventHandler as EventHandler
from ._informer import FunctionHandler as FunctionHandler
from ._informer import Informer as Informer
from ._informer import SharedInformers as SharedInformers
from ._informer import object_key as object_key
from ._kubeconfig import context_namespace as context_namespace
from ._kubeconfig import from_kubeconfig as from_kubeconfig
from ._kubeconfig import kubeconfig_path as kubeconfig_path
from ._workqueue import WorkQueue as WorkQueue
