"""``kubetrio up`` / ``kubetrio down``: a local cluster running in the background.

``up`` starts a local OCI registry (Debian's docker-registry) holding a busybox image,
mirrors ``docker.io`` to it — so ``image: busybox`` works offline — and then
``kubetrio server`` as a detached process. State lives under
``~/.local/share/kubetrio/clusters/<name>/`` (data, logs, pid files). ``up`` waits until
the server answers ``/readyz`` and points kubectl at it; ``down`` stops both by their
pid files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

CLUSTERS_DIR = Path("~/.local/share/kubetrio/clusters").expanduser()
DEFAULT_KUBECONFIG = Path("~/.kube/config").expanduser()
READY_TIMEOUT = 60.0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie does not: it exited and only awaits its reaper,
    which for a detached server may be a subreaper that never waits (a node agent is one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def up(
    name: str = typer.Option(
        "kubetrio", help="Cluster name: the kubeconfig context and state folder."
    ),
    port: int = typer.Option(6443, help="Port the API server listens on."),
    kubeconfig: Path = typer.Option(
        DEFAULT_KUBECONFIG, help="kubeconfig to merge the context into."
    ),
    store: str = typer.Option(
        "", help="Use etcd instead of the embedded store: etcd://host:port,..."
    ),
    registry_port: int = typer.Option(5000, help="Port of the local OCI registry."),
) -> None:
    """Start a local cluster in the background and point kubectl at it.

    A local OCI registry with busybox starts too, and docker.io is mirrored to it, so
    `kubectl create deployment web --image=busybox -- httpd -f` works offline. State
    (SQLite store, logs, pid files) lives in ~/.local/share/kubetrio/clusters/NAME.
    Run it again to see where the running cluster is; `kubetrio down` stops it.
    """
    home = CLUSTERS_DIR / name
    pid_file = home / "server.pid"
    url = f"http://127.0.0.1:{port}"
    running = _read_pid(pid_file)
    if running is not None:
        console.print(f"cluster [bold]{name}[/] is already running (pid {running}) at {url}")
        return
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    command = [
        sys.executable,
        "-m",
        "kubetrio",
        "server",
        "--data-dir",
        str(home / "data"),
        "--port",
        str(port),
        "--kubeconfig",
        str(kubeconfig),
    ]
    if store:
        command += ["--store", store]
    mirrors = _start_registry(home, registry_port)
    if mirrors is not None:
        command += ["--registries", str(mirrors)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT
    with console.status(f"starting cluster [bold]{name}[/] (log: {log_path})"):
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pid_file.unlink(missing_ok=True)
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                err_console.print(
                    f"[bold red]error:[/] the server exited with status "
                    f"{process.returncode}:\n" + "\n".join(tail)
                )
                raise typer.Exit(code=1)
            try:
                if httpx.get(f"{url}/readyz", timeout=1).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            err_console.print(
                f"[bold red]error:[/] not ready after {READY_TIMEOUT:.0f} s; see {log_path}"
            )
            raise typer.Exit(code=1)
    console.print(f"cluster [bold]{name}[/] is up at {url} (pid {process.pid})")
    console.print(f"kubectl context [bold]kubetrio[/] written to {kubeconfig}; try:")
    hint = "" if kubeconfig == DEFAULT_KUBECONFIG else f"KUBECONFIG={kubeconfig} "
    console.print(f"  {hint}kubectl get namespaces")
    console.print("stop it with: kubetrio down" + ("" if name == "kubetrio" else f" --name {name}"))


def _start_registry(home: Path, port: int) -> Path | None:
    """Run the local registry with a busybox image; return the mirrors file (None: no registry)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        err_console.print(
            "[yellow]note:[/] docker-registry is not installed: no local registry "
            "(images must come from registries this machine reaches)"
        )
        return None
    storage = home / "registry"
    storage.mkdir(exist_ok=True)
    config = storage / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage / 'data'}}}, "
        "delete: {enabled: true}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    pid_file = home / "registry.pid"
    if _read_pid(pid_file) is None:
        with open(storage / "registry.log", "ab") as log:
            process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        pid_file.write_text(f"{process.pid}\n")
    endpoint = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    with console.status(f"starting the local registry at {endpoint}"):
        while True:
            try:
                httpx.get(f"http://{endpoint}/v2/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    err_console.print(
                        f"[bold red]error:[/] the registry did not start; see "
                        f"{storage / 'registry.log'}"
                    )
                    raise typer.Exit(code=1) from None
                time.sleep(0.1)
        tags = httpx.get(f"http://{endpoint}/v2/library/busybox/tags/list", timeout=5)
        if tags.status_code != 200 or "latest" not in (tags.json().get("tags") or []):
            import trio

            from kubetrio.images import build_image

            trio.run(lambda: build_image(f"{endpoint}/library/busybox:latest"))
    mirrors = home / "registries.yaml"
    mirrors.write_text(f'mirrors:\n  docker.io:\n    endpoint: ["http://{endpoint}"]\n')
    console.print(
        f"local registry at {endpoint} (docker.io is mirrored there; "
        "busybox is preloaded; push more with `kubetrio image build`)"
    )
    return mirrors


def _stop(pid_file: Path, what: str, *, sig: int = signal.SIGTERM, wait: float = 15) -> None:
    pid = _read_pid(pid_file)
    if pid is not None:
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        with console.status(f"stopping {what} (pid {pid})"):
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def down(
    name: str = typer.Option("kubetrio", help="Cluster name given to `kubetrio up`."),
    delete_data: bool = typer.Option(
        False, "--delete-data", help="Also remove the cluster's state."
    ),
) -> None:
    """Stop the local cluster started by `kubetrio up`: its pods, the server, the registry."""
    home = CLUSTERS_DIR / name
    if _read_pid(home / "server.pid") is None:
        console.print(f"cluster [bold]{name}[/] is not running")
    else:
        # SIGUSR1: the server stops its pods before it exits.
        _stop(home / "server.pid", f"cluster {name}", sig=signal.SIGUSR1, wait=75)
        console.print(f"cluster [bold]{name}[/] stopped")
    _stop(home / "registry.pid", "the local registry")
    if delete_data and home.exists():
        shutil.rmtree(home)
        console.print(f"removed {home}")
