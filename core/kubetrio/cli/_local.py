"""``kubetrio up`` / ``kubetrio down``: a local cluster running in the background.

``up`` starts ``kubetrio server`` as a detached process whose state lives under
``~/.local/share/kubetrio/clusters/<name>/`` (data, log, pid file), waits until it
answers ``/readyz`` and points kubectl at it. ``down`` stops it by its pid file.
"""

from __future__ import annotations

import os
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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
) -> None:
    """Start a local cluster in the background and point kubectl at it.

    State (SQLite store, log, pid file) lives in ~/.local/share/kubetrio/clusters/NAME.
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


def down(
    name: str = typer.Option("kubetrio", help="Cluster name given to `kubetrio up`."),
    delete_data: bool = typer.Option(
        False, "--delete-data", help="Also remove the cluster's state."
    ),
) -> None:
    """Stop the local cluster started by `kubetrio up` (SIGTERM, then SIGKILL after 15 s)."""
    home = CLUSTERS_DIR / name
    pid_file = home / "server.pid"
    pid = _read_pid(pid_file)
    if pid is None:
        console.print(f"cluster [bold]{name}[/] is not running")
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        with console.status(f"stopping cluster [bold]{name}[/] (pid {pid})"):
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        console.print(f"cluster [bold]{name}[/] stopped")
    pid_file.unlink(missing_ok=True)
    if delete_data and home.exists():
        import shutil

        shutil.rmtree(home)
        console.print(f"removed {home}")
