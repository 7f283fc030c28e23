"""What the audit log and encryption at rest cost a request, measured in one run.

Two API servers in this process, each over its own SQLite store: one as ``kubetrio
server`` runs by default (every mutating request audited at ``Metadata`` into a file,
Secrets encrypted with secretbox), one with neither. The same load goes to both in
alternating rounds (so drift of the machine hits both alike), over HTTP with
``--concurrency`` keep-alive clients:

* pod creates: p50/p99 latency with the audit log on and off;
* Secret creates: p50/p99 latency with audit and encryption on and off;
* the direct costs, which load on a shared machine cannot blur: microseconds the audit
  log adds to one request (a stub handler), and to seal and open one Secret.

The last line is one JSON object with the figures and the on/off ratios.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
from _kit import bench_pod, quantiles, timed_round

from kubetrio import store as kv
from kubetrio.apiserver import RunningApiServer, open_apiserver, open_audit_log


def creator(
    path: str, make: Callable[[str], dict[str, Any]]
) -> Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]:
    """A request POSTing MAKE(name) to PATH."""

    async def create(http: httpx.AsyncClient, name: str) -> httpx.Response:
        return await http.post(path, json=make(name))

    return create


def secret(name: str) -> dict[str, Any]:
    """A Secret with a few keys."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {f"key-{i}": "v" * 64 for i in range(4)},
    }


async def direct_costs(root: Path, encryption: kv.EncryptionConfig) -> dict[str, float]:
    """Microseconds the audit log adds to one pod create (its handler a stub) and that
    sealing plus opening one Secret costs: the figures load on the machine cannot blur."""
    from kubetrio.api.scheme import Scheme
    from kubetrio.handler import Request, Response

    body = json.dumps(bench_pod("p")).encode()
    request = Request(
        method="POST",
        target="/api/v1/namespaces/default/pods",
        path="/api/v1/namespaces/default/pods",
        query={},
        headers={"content-type": "application/json", "user-agent": "bench"},
        body=body,
        remote="127.0.0.1:5555",
    )

    async def handler(_: Request) -> Response:
        return Response(status=201, body=body)

    scheme = Scheme.builtin()
    audit = open_audit_log(str(root / "direct.log"))
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        await handler(request)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(n):
        await audit.around(scheme, request, handler)
    audited = time.perf_counter() - started
    audit.close()
    transformer = encryption.transformer_for("", "secrets")
    assert transformer is not None
    value = json.dumps(secret("s")).encode()
    key = b"/registry/core/secrets/default/s"
    started = time.perf_counter()
    for _ in range(n):
        transformer.from_storage(transformer.to_storage(value, key), key)
    sealed = time.perf_counter() - started
    return {
        "audit_us_per_request": round((audited - bare) / n * 1e6, 2),
        "secretbox_us_per_write_and_read": round(sealed / n * 1e6, 2),
    }


async def main(count: int, rounds: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kubetrio-audit-bench-") as tmp:
        root = Path(tmp)
        config_path = root / "encryption.yaml"
        kv.write_default_encryption_config(config_path)
        encryption = kv.load_encryption_config(config_path)
        audit = open_audit_log(str(root / "audit.log"))
        async with (
            kv.open_store(f"sqlite://{root}/on.db") as on_store,
            kv.open_store(f"sqlite://{root}/off.db") as off_store,
            open_apiserver(kv.EncryptedStore(on_store, encryption), audit=audit) as on,
            open_apiserver(off_store) as off,
        ):
            servers: dict[str, RunningApiServer] = {"on": on, "off": off}
            latencies: dict[tuple[str, str], list[float]] = {
                (kind, mode): [] for kind in ("pods", "secrets") for mode in servers
            }
            for r in range(rounds):
                for kind, make in (("pods", bench_pod), ("secrets", secret)):
                    order = ("on", "off") if r % 2 == 0 else ("off", "on")
                    for mode in order:
                        names = [f"{kind[:-1]}-{r}-{i}" for i in range(count // rounds)]
                        await timed_round(
                            servers[mode].url,
                            names,
                            concurrency,
                            creator(f"/api/v1/namespaces/default/{kind}", make),
                            201,
                            latencies[kind, mode],
                        )
        audit.close()
        lines = (root / "audit.log").read_text().count("\n")
        direct = await direct_costs(root, encryption)
    figures: dict[str, float] = {}
    for (kind, mode), values in latencies.items():
        p50, p99 = quantiles(values)
        figures[f"{kind}_{mode}_p50_ms"] = round(p50, 3)
        figures[f"{kind}_{mode}_p99_ms"] = round(p99, 3)
    for kind in ("pods", "secrets"):
        for q in ("p50", "p99"):
            figures[f"{kind}_{q}_ratio"] = round(
                figures[f"{kind}_on_{q}_ms"] / figures[f"{kind}_off_{q}_ms"], 3
            )
    figures["audit_lines"] = lines
    return {**figures, **direct}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="creates per kind and mode")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    result = trio.run(main, options.count, options.rounds, options.concurrency)
    for kind in ("pods", "secrets"):
        on = [result[f"{kind}_on_{q}_ms"] for q in ("p50", "p99")]
        off = [result[f"{kind}_off_{q}_ms"] for q in ("p50", "p99")]
        print(
            f"{kind} creates, audit{' + encryption' if kind == 'secrets' else ''} on / off: "
            f"p50 {on[0]:.2f} / {off[0]:.2f} ms, p99 {on[1]:.2f} / {off[1]:.2f} ms"
        )
    print(
        f"audit log: +{result['audit_us_per_request']:.1f} µs per audited request; secretbox: "
        f"{result['secretbox_us_per_write_and_read']:.1f} µs to seal and open one Secret"
    )
    print(json.dumps(result))
