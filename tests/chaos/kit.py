"""What the chaos scenarios share: a real ``kubetrio server`` process to kill and restart,
a paced write load that records its history, watchers that resume, and the figures.

Each scenario reports one JSON object: printed as ``CHAOS {json}`` (seen with ``-s``) and
appended to ``.test-logs/chaos.jsonl``, which CI keeps. ``benchmarks/chaos.py`` runs the
same scenarios with more repetitions.

The write history is checked with the store's linearizability checker
(``tests/store/linearizability.py``) under a model of one ConfigMap as the API serves it:
a PUT carrying ``resourceVersion`` is a compare-and-swap, a GET a read. A request whose
outcome is unknown (the connection broke after it was sent) is recorded as porcupine
records one: returning at infinity with any outcome — it either took effect somewhere
after its call, or it is linearized after everything else, which is not at all.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import ssl
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio.client import Client, ClientError
from kubetrio.images import free_loopback_port
from tests.store.linearizability import Operation, is_linearizable

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / ".test-logs" / "chaos.jsonl"
NAMESPACE = "chaos"
UNKNOWN = ("unknown",)
WATCHED = "chaos-watched"
"""The label of the creates the watchers follow: one worker's share of the load, since
100 watchers of every write would cost a 2-core machine more than the writes."""


def report(scenario: str, **figures: Any) -> dict[str, Any]:
    """Print a scenario's figures as ``CHAOS {json}`` and append them to FIGURES."""
    record = {"scenario": scenario, **figures}
    line = json.dumps(record, sort_keys=True)
    print(f"CHAOS {line}")
    FIGURES.parent.mkdir(exist_ok=True)
    with FIGURES.open("a") as f:
        f.write(line + "\n")
    return record


# -- the server process ----------------------------------------------------------------------


def _kill_9(process: subprocess.Popen[bytes] | None) -> None:
    """kill -9 PROCESS, and reap it."""
    assert process is not None
    process.send_signal(signal.SIGKILL)
    process.wait()


def _end(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send SIG to PROCESS and reap it, SIGKILL after TIMEOUT s; nothing if not running."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Server:
    """``kubetrio server --no-agent`` as a user runs it, on one port across restarts."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.data = data_dir or workdir / "data"
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.env.pop("KUBETRIO_PLUGINS", None)
        self.port = free_loopback_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        return self.data / "pki" / "ca.crt"

    def start(self) -> None:
        """Start the process (not waiting for it to be ready)."""
        command = [
            sys.executable, "-m", "kubetrio", "server", "--no-agent",
            "--port", str(self.port), "--data-dir", str(self.data),
            "--kubeconfig", str(self.workdir / "kubeconfig"), *self.args,
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=self.env,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until /readyz answers ok; fail with the log's end if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), self.log_tail()
            if self.ca.exists():
                try:
                    if (
                        httpx.get(f"{self.url}/readyz", timeout=2, verify=self.context()).text
                        == "ok"
                    ):
                        return
                except (httpx.HTTPError, OSError, ssl.SSLError):
                    pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9, and reap it."""
        _kill_9(self.process)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 30 s); nothing if not running."""
        _end(self.process, signal.SIGTERM, 30)

    def token(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self) -> Client:
        """An HTTPS client with the admin token (a new connection pool each)."""
        return Client.connect(self.url, token=self.token(), verify=self.context())


# -- the model of one ConfigMap through the API ----------------------------------------------


def configmap(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"v": value},
    }


def api_step(state: Any, inp: Any, out: Any) -> tuple[bool, Any]:
    """Sequential model of one ConfigMap under GET and PUT-with-resourceVersion.

    state: (live, value, resourceVersion); the version is None after a write whose outcome
    was unknown took effect, until a read shows it. A 409 carries no current value.
    """
    live, value, rev = state
    if inp[0] == "read":
        if out is None:
            return not live, state
        seen_value, seen_rev = out
        if not live or seen_value != value:
            return False, state
        if rev is None:
            return True, (live, value, seen_rev)
        return seen_rev == rev, state
    _, expected, new_value = inp
    if out == UNKNOWN:  # took effect here (or, placed after everything, never)
        if live and rev in (None, expected):
            return True, (True, new_value, None)
        return True, state
    if not live:
        return out == ("notfound",), state
    if out[0] == "ok":
        if rev is not None and (rev != expected or out[1] <= rev):
            return False, state
        return True, (True, new_value, out[1])
    if out == ("conflict",):
        return rev is None or rev != expected, state
    return False, state


def linearizable(history: dict[str, list[Operation]], init: dict[str, Hashable]) -> list[str]:
    """The keys whose history is not linearizable under :func:`api_step`."""
    return [key for key, ops in history.items() if not is_linearizable(ops, init[key], api_step)]


# -- the write load ----------------------------------------------------------------------------


@dataclass
class Load:
    """What a paced write load did: every attempt's outcome, per kind."""

    shared: list[str]
    history: dict[str, list[Operation]] = field(default_factory=lambda: defaultdict(list))
    init: dict[str, Hashable] = field(default_factory=dict)
    acked_creates: dict[str, str] = field(default_factory=dict)
    acked_revisions: set[int] = field(default_factory=set)
    unknown_writes: int = 0
    #: revisions of the acknowledged creates labelled WATCHED, and how many such
    #: creates had an unknown outcome (the watchers' expected events)
    watched_revisions: set[int] = field(default_factory=set)
    watched_unknown: int = 0
    failed_writes: int = 0
    #: (sent, answered) of every acknowledged write
    acked_at: list[tuple[float, float]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def acked(self) -> int:
        return len(self.acked_at)

    def first_ack_after(self, moment: float) -> float | None:
        """When the first write sent after ``moment`` was acknowledged (a write sent
        before it may be answered later, from the buffers of a server killed meanwhile)."""
        later = [answered for sent, answered in self.acked_at if sent >= moment]
        return min(later) if later else None


def _outcome(exc: BaseException) -> tuple[str, bool]:
    """(a label, whether the write surely did not happen) for a failed request."""
    if isinstance(exc, ClientError):
        # The API answered: a 4xx changed nothing; a 5xx may come after the store moved.
        return f"{exc.code}", exc.code < 500 or exc.code == 503
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect", True
    return type(exc).__name__, False


async def prepare(client: Client, keys: int) -> Load:
    """The namespace and the shared keys the load CASes; their first versions."""
    try:
        await client.create("v1", "namespaces", {"metadata": {"name": NAMESPACE}})
    except ClientError as exc:
        if not exc.conflict:
            raise
    load = Load(shared=[f"lin-{k}" for k in range(keys)])
    for name in load.shared:
        made = await client.create("v1", "configmaps", configmap(name, "0"), namespace=NAMESPACE)
        load.init[name] = (True, "0", int(made["metadata"]["resourceVersion"]))
    return load


async def run_load(
    load: Load,
    client: Client,
    stop: trio.Event,
    *,
    rate: float = 200,
    workers: int = 10,
    seed: int = 1,
) -> None:
    """Write at ``rate`` writes/s across ``workers`` until ``stop``: half creates of new
    ConfigMaps (their acknowledgement is what must survive), half compare-and-swaps of
    the shared keys, each followed by a read of that key when it failed (to learn the
    version) and otherwise one time in four."""
    rng = random.Random(seed)

    async def worker(w: int) -> None:
        interval = workers / rate
        known: dict[str, int] = {k: v[2] for k, v in load.init.items()}  # type: ignore[index]
        tick = trio.current_time()
        i = 0
        while not stop.is_set():
            i += 1
            value = f"w{w}-{i}"
            if rng.random() < 0.5:
                await _create(load, client, value, watched=w == 0)
            else:
                key = rng.choice(load.shared)
                if not await _cas(load, client, key, known, value) or rng.random() < 0.25:
                    await _read(load, client, key, known)
            tick += interval
            await trio.sleep_until(max(tick, trio.current_time()))

    async with trio.open_nursery() as nursery:
        for w in range(workers):
            nursery.start_soon(worker, w)


async def _create(load: Load, client: Client, name: str, *, watched: bool = False) -> None:
    start = trio.current_time()
    body = configmap(name, name)
    if watched:
        body["metadata"]["labels"] = {WATCHED: "yes"}
    try:
        made = await client.create("v1", "configmaps", body, namespace=NAMESPACE)
    except (ClientError, httpx.HTTPError) as exc:
        label, surely_not = _outcome(exc)
        load.statuses[label] += 1
        if surely_not:
            load.failed_writes += 1
        else:
            load.unknown_writes += 1
            load.watched_unknown += watched
        return
    load.statuses["201"] += 1
    load.acked_creates[name] = name
    rev = int(made["metadata"]["resourceVersion"])
    load.acked_revisions.add(rev)
    if watched:
        load.watched_revisions.add(rev)
    load.acked_at.append((start, trio.current_time()))


async def _cas(load: Load, client: Client, key: str, known: dict[str, int], value: str) -> bool:
    """One compare-and-swap from the version last seen; whether it was acknowledged."""
    expected = known[key]
    body = configmap(key, value)
    body["metadata"]["resourceVersion"] = str(expected)
    start = trio.current_time()
    out: Any
    try:
        made = await client.update("v1", "configmaps", body, namespace=NAMESPACE)
    except (ClientError, httpx.HTTPError) as exc:
        label, surely_not = _outcome(exc)
        load.statuses[label] += 1
        if isinstance(exc, ClientError) and exc.code == 409:
            out = ("conflict",)
        elif isinstance(exc, ClientError) and exc.code == 404:
            out = ("notfound",)
        elif surely_not:
            load.failed_writes += 1
            return False  # never happened: nothing to record
        else:
            load.unknown_writes += 1
            load.history[key].append(
                Operation(0, ("cas", expected, value), UNKNOWN, start, math.inf)
            )
            return False
        load.history[key].append(
            Operation(0, ("cas", expected, value), out, start, trio.current_time())
        )
        return False
    rev = int(made["metadata"]["resourceVersion"])
    known[key] = rev
    load.statuses["200"] += 1
    load.acked_revisions.add(rev)
    load.acked_at.append((start, trio.current_time()))
    load.history[key].append(
        Operation(0, ("cas", expected, value), ("ok", rev), start, trio.current_time())
    )
    return True


async def _read(load: Load, client: Client, key: str, known: dict[str, int]) -> None:
    start = trio.current_time()
    try:
        got = await client.get("v1", "configmaps", key, namespace=NAMESPACE)
    except (ClientError, httpx.HTTPError):
        return  # a failed read observed nothing
    rev = int(got["metadata"]["resourceVersion"])
    known[key] = rev
    out = (got["data"]["v"], rev)
    load.history[key].append(Operation(0, ("read",), out, start, trio.current_time()))


async def final_reads(load: Load, client: Client) -> None:
    """Read every shared key once more (after recovery), into the history: a lost
    acknowledged compare-and-swap makes that read impossible to linearize."""
    for key in load.shared:
        await _read(load, client, key, {})


async def lost_creates(load: Load, client: Client) -> list[str]:
    """Acknowledged creates whose ConfigMap is not (or not as written) in the store."""
    listed = await client.list("v1", "configmaps", namespace=NAMESPACE)
    stored = {o["metadata"]["name"]: (o.get("data") or {}).get("v") for o in listed["items"]}
    return sorted(n for n, v in load.acked_creates.items() if stored.get(n) != v)


async def retry(what: Any, *, timeout: float = 60) -> Any:
    """Await ``what()`` until it stops failing on the server's absence."""
    with trio.fail_after(timeout):
        while True:
            try:
                return await what()
            except (httpx.HTTPError, ClientError) as exc:
                if isinstance(exc, ClientError) and exc.code < 500:
                    raise
                await trio.sleep(0.1)


# -- watchers -----------------------------------------------------------------------------


@dataclass
class Watcher:
    """One watch of the namespace's ConfigMaps labelled WATCHED that resumes from its
    last resourceVersion whenever its stream ends or breaks."""

    start: str
    established: trio.Event = field(default_factory=trio.Event)
    events: list[tuple[str, str, int]] = field(default_factory=list)
    last: int = 0
    reconnects: int = 0
    expired: int = 0

    async def run(self, client: Client) -> None:
        self.last = int(self.start)
        while True:
            try:
                async with client.watch(
                    "v1",
                    "configmaps",
                    namespace=NAMESPACE,
                    label_selector=f"{WATCHED}=yes",
                    resource_version=str(self.last),
                ) as stream:
                    self.established.set()
                    async for event in stream:
                        rev = int(event.object["metadata"]["resourceVersion"])
                        if event.type != "BOOKMARK":
                            name = event.object["metadata"]["name"]
                            self.events.append((event.type, name, rev))
                        self.last = max(self.last, rev)
            except ClientError as exc:
                if exc.code == 410:  # could not resume: that is a failure of the scenario
                    self.expired += 1
                    return
            except httpx.HTTPError:
                pass
            self.reconnects += 1
            await trio.sleep(0.2 + random.random() * 0.2)  # as a reflector backs off

    def revisions(self) -> list[int]:
        return [rev for _, _, rev in self.events]


class Agent:
    """``kubetrio agent`` joining ``server`` as node NAME, in this host's network namespace."""

    def __init__(self, server: Server, workdir: Path, name: str, registries: Path) -> None:
        self.server = server
        self.name = name
        self.data = workdir / "agent"
        self.registries = registries
        self.log = workdir / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def runc_root(self) -> Path:
        return self.data / "runc"

    def start(self) -> None:
        command = [
            sys.executable, "-m", "kubetrio", "agent", "--server", self.server.url,
            "--certificate-authority", str(self.server.ca), "--node-name", self.name,
            "--node-ip", "127.0.0.1", "--data-dir", str(self.data),
            "--registries", str(self.registries), "--ingress-http-port", "0",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                # The admin token, not on the command line (the API reaches the agent with it).
                env={**self.server.env, "KUBETRIO_TOKEN": self.server.token()},
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9, and reap it."""
        _kill_9(self.process)

    def stop(self) -> None:
        """SIGUSR1: the agent stops its pods, then itself (as ``kubetrio down`` does)."""
        _end(self.process, signal.SIGUSR1, 75)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def runc(self, *args: str) -> str:
        """``runc --root <the agent's> ARGS``'s output."""
        return subprocess.run(
            ["runc", "--root", str(self.runc_root), *args],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
