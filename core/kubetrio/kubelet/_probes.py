"""Container probes: exec, tcpSocket, httpGet, grpc-less; and the prober loop.

Probes run from the node, as kubelet's do: tcpSocket and httpGet connect to the pod IP
(routed from the host by the network plugin), exec runs the command in the container
with ``runc exec``. An HTTP status from 200 to 399 is success. ``ProbeLoop`` applies
``initialDelaySeconds``, ``periodSeconds``, ``timeoutSeconds`` and the success/failure
thresholds, and reports each change of the probe's verdict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

import kubetrio
from kubetrio.providers import ContainerRuntime, KubeObject

USER_AGENT = "kube-probe/{}.{}".format(*kubetrio.KUBERNETES_VERSION[:2])


def _port(value: Any, container: KubeObject) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    for port in container.get("ports") or []:
        if port.get("name") == text:
            return int(port["containerPort"])
    raise ValueError(f"port {text!r} is not a named port of the container")


Result = tuple[bool, str]
"""A probe attempt: success, and kubelet's text for a failure."""


async def tcp_check(host: str, port: int, timeout: float) -> Result:
    """Whether a TCP connection to host:port opens within ``timeout``."""
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            return False, f"dial tcp {host}:{port}: connect: {exc.strerror or exc}".lower()
        await stream.aclose()
        return True, ""
    return False, f"dial tcp {host}:{port}: i/o timeout"


async def http_check(
    host: str,
    port: int,
    path: str,
    timeout: float,
    *,
    scheme: str = "HTTP",
    headers: Sequence[KubeObject] = (),
) -> Result:
    """An HTTP GET: success when the status is 200-399 (HTTPS: connection check only)."""
    if scheme.upper() == "HTTPS":
        return await tcp_check(host, port, timeout)
    url = f"http://{host}:{port}{path or '/'}"
    request = (
        f"GET {path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nConnection: close\r\n"
    )
    for header in headers:
        request += f"{header.get('name')}: {header.get('value')}\r\n"
    request += "\r\n"
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            reason = f"dial tcp {host}:{port}: connect: {exc.strerror or exc}".lower()
            return False, f'Get "{url}": {reason}'
        async with stream:
            try:
                await stream.send_all(request.encode())
                head = b""
                while b"\r\n" not in head and len(head) < 4096:
                    chunk = await stream.receive_some(1024)
                    if not chunk:
                        break
                    head += chunk
            except (trio.BrokenResourceError, OSError) as exc:
                return False, f'Get "{url}": {exc}'
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f'Get "{url}": malformed HTTP response'
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"
    return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded)'


async def run_probe(
    probe: KubeObject,
    *,
    container: KubeObject,
    container_id: str,
    pod_ip: str,
    runtime: ContainerRuntime,
) -> Result:
    """One probe attempt."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "exec" in probe:
        command = list(probe["exec"].get("command") or [])
        code, output = await runtime.exec_sync(container_id, command, timeout=timeout)
        if code == 0:
            return True, ""
        text = output.decode(errors="replace").strip()
        if code == -1:
            return False, f"command {command!r} timed out"
        return False, text or f"command {command!r} exited with {code}"
    if "tcpSocket" in probe:
        spec = probe["tcpSocket"]
        return await tcp_check(spec.get("host") or pod_ip, _port(spec["port"], container), timeout)
    if "httpGet" in probe:
        spec = probe["httpGet"]
        return await http_check(
            spec.get("host") or pod_ip,
            _port(spec["port"], container),
            spec.get("path", "/"),
            timeout,
            scheme=spec.get("scheme", "HTTP"),
            headers=spec.get("httpHeaders") or (),
        )
    return True, ""  # grpc and unknown handlers: not checked


async def probe_loop(
    probe: KubeObject,
    attempt: Callable[[], Awaitable[bool]],
    on_result: Callable[[bool], None],
    *,
    initial: bool,
) -> None:
    """Probe forever; call ``on_result`` when the thresholded verdict changes.

    ``initial`` is the verdict before the first result (readiness starts False).
    """
    period = float(probe.get("periodSeconds") or 10)
    success_threshold = int(probe.get("successThreshold") or 1)
    failure_threshold = int(probe.get("failureThreshold") or 3)
    await trio.sleep(float(probe.get("initialDelaySeconds") or 0))
    verdict = initial
    successes = failures = 0
    while True:
        ok = await attempt()
        if ok:
            successes, failures = successes + 1, 0
            if not verdict and successes >= success_threshold:
                verdict = True
                on_result(True)
        else:
            failures, successes = failures + 1, 0
            if (verdict or failures == failure_threshold) and failures >= failure_threshold:
                verdict = False
                on_result(False)
        await trio.sleep(period)
