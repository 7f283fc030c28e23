"""The reconcile framework every built-in controller is written in.

A controller is level-based: informer handlers map each change to the key of the
object that must be looked at again (its own key, or its owner's) and put that key on
a :class:`~kubetrio.client.WorkQueue`; workers take keys and call
:meth:`QueueController.reconcile`, which reads the *current* state from the informer
caches and acts to make the world match the spec. Nothing depends on seeing every
event, so missed or merged events are harmless.

What ``reconcile`` returns or raises says what happens to the key next:

* ``None`` / ``Result()`` — done, and the key's backoff is reset;
* ``Result(requeue_after=s)`` — look again in ``s`` seconds (time-based conditions);
* ``Result(requeue=True)`` — look again after the key's backoff delay;
* :class:`TemporaryError` ``(delay)`` — retry after ``delay`` (or the backoff);
* :class:`PermanentError` — log, record a Warning event if one is attached, don't retry;
* any other exception (including a 409 conflict from a stale cache) — retry with
  exponential per-key backoff.

The queue never hands one key to two workers, so a reconcile never races itself.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Protocol

import trio

from kubetrio.client import ClientError, Informer, KubeObject, WorkQueue

if TYPE_CHECKING:
    from kubetrio.client import Client, EventRecorder
    from kubetrio.plugins import PluginManager

log = logging.getLogger("kubetrio.controllers")


@dataclasses.dataclass(frozen=True)
class Result:
    """What a reconcile wants next: nothing, a look after a delay, or a backoff retry."""

    requeue_after: float | None = None
    requeue: bool = False


class TemporaryError(Exception):
    """A failure worth retrying after ``delay`` seconds (None: the key's backoff)."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """A failure retrying will not fix (bad spec); the key waits for the next change."""


class InformerFactory(Protocol):
    """Hands out shared informers (:class:`~kubetrio.client.SharedInformers`)."""

    def informer(
        self,
        api_version: str,
        resource: str,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> Informer:
        """The shared informer of a resource."""
        ...

    def stop(self, informer: Informer) -> None:
        """Stop an informer whose resource is no longer served."""
        ...


@dataclasses.dataclass
class ControllerContext:
    """What a controller is given: the (leader-guarded) client, shared informers, events,
    and the plugins (the volume controllers take the storage drivers from them)."""

    client: Client
    informers: InformerFactory
    events: EventRecorder
    plugins: PluginManager | None = None


class QueueController:
    """Base of the built-in controllers: a work queue, workers and a reconcile method.

    Subclasses set :attr:`name`, build informers and handlers in :meth:`setup` (which
    runs once, before leadership, so caches are warm for a fast failover) and implement
    :meth:`reconcile`. :meth:`primary` names the informer whose keys a resync enqueues.
    """

    name = "controller"
    workers = 2

    def __init__(self) -> None:
        self.queue = WorkQueue(name=self.name)  # measured as client-go's, by this name
        self._ctx: ControllerContext | None = None

    @property
    def ctx(self) -> ControllerContext:
        """The context given to :meth:`setup`."""
        assert self._ctx is not None, f"{self.name}: setup() was not called"
        return self._ctx

    @property
    def client(self) -> Client:
        """The leader-guarded client."""
        return self.ctx.client

    def setup(self, ctx: ControllerContext) -> None:
        """Keep the context and register informer handlers (override, call super)."""
        self._ctx = ctx

    def primary(self) -> Informer | None:
        """The informer whose every object is enqueued on (re)gaining leadership."""
        return None

    def started_leading(self) -> None:
        """Leadership (re)gained: forget local bookkeeping and look at everything again."""
        informer = self.primary()
        if informer is not None:
            for obj in informer.list():
                self.queue.add(object_key(obj))

    async def reconcile(self, key: str) -> Result | None:
        """Make the object named ``key`` match its spec (override)."""
        raise NotImplementedError

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the workers until cancelled (informers are run by the manager)."""
        self.started_leading()
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker)
            task_status.started()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._process(key)
            finally:
                self.queue.done(key)

    async def _process(self, key: str) -> None:
        queue = self.queue
        try:
            result = await self.reconcile(key)
        except TemporaryError as exc:
            log.info("%s %s: %s (retrying)", self.name, key, exc)
            delay = exc.delay if exc.delay is not None else queue.backoff(key)
            queue.add_after(key, delay)
            return
        except PermanentError as exc:
            log.warning("%s %s: %s (not retrying)", self.name, key, exc)
            queue.forget(key)
            return
        except ClientError as exc:
            level = logging.DEBUG if exc.conflict or exc.not_found else logging.WARNING
            log.log(level, "%s %s: %s (retrying)", self.name, key, exc)
            queue.add_rate_limited(key)
            return
        except Exception:
            log.exception("%s %s: reconcile failed (retrying)", self.name, key)
            queue.add_rate_limited(key)
            return
        if result is not None and result.requeue:
            queue.add_rate_limited(key)
            return
        queue.forget(key)
        if result is not None and result.requeue_after is not None:
            queue.add_after(key, result.requeue_after)


def object_key(obj: KubeObject) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects)."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


def split_key(key: str) -> tuple[str, str]:
    """``(namespace, name)`` of a key (namespace empty for cluster-scoped objects)."""
    namespace, _, name = key.rpartition("/")
    return namespace, name
