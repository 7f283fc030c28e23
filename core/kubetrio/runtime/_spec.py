"""Turning a pod's container into an OCI runtime spec (``config.json`` for runc).

The rules are Kubernetes' (kubelet + containerd's CRI plugin):

* command/args: ``command`` replaces the image's Entrypoint, ``args`` its Cmd; a
  ``command`` without ``args`` drops the image's Cmd. ``$(VAR)`` expands from the
  container's environment and ``$$(VAR)`` escapes it.
* environment: the image's variables, overridden by the container's.
* user: ``runAsUser``/``runAsGroup`` (container over pod), else the image's ``User``;
  ``runAsNonRoot`` refuses uid 0 and names it cannot resolve, with kubelet's messages.
* namespaces: a new PID and mount namespace per container; network, IPC and UTS are the
  pod sandbox's, so a pod's containers share localhost, SysV IPC and the hostname.
* cgroup v1 resources: memory limit, CPU shares from requests and a CFS quota from
  limits, a pids limit; default capabilities as containerd's, ``add``/``drop``
  (``ALL``) applied, everything for ``privileged``.
"""

from __future__ import annotations

import re
import resource
from collections.abc import Mapping, Sequence
from typing import Any

from kubetrio.api.quantity import Quantity
from kubetrio.providers import ContainerConfigError, KubeObject, VolumeMount

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
ALL_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
CPU_PERIOD = 100_000
# containerd's 1048576 open files, capped at what this agent may itself raise to.
_NOFILE = min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown names stay as written, ``$$`` is ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(replace, text)


def resolve_args(
    container: KubeObject, image_config: Mapping[str, Any], env: Mapping[str, str]
) -> list[str]:
    """The process arguments from ``command``/``args`` and the image's Entrypoint/Cmd."""
    command = container.get("command")
    args = container.get("args")
    entrypoint = list(image_config.get("Entrypoint") or [])
    cmd = list(image_config.get("Cmd") or [])
    if command:
        result = [expand(c, env) for c in command] + [expand(a, env) for a in args or []]
    elif args:
        result = entrypoint + [expand(a, env) for a in args]
    else:
        result = entrypoint + cmd
    if not result:
        raise ContainerConfigError("no command specified")
    return result


def merge_env(image_config: Mapping[str, Any], env: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The image's environment overridden by the container's (order kept, PATH ensured)."""
    merged: dict[str, str] = {}
    for item in image_config.get("Env") or []:
        name, _, value = str(item).partition("=")
        merged[name] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    for name, value in env:
        merged[name] = value
    return merged


def _security(pod: KubeObject, container: KubeObject) -> tuple[KubeObject, KubeObject]:
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    return pod_sc, container.get("securityContext") or {}


def pod_description(pod: KubeObject) -> str:
    """How kubelet names a pod in messages: ``name_namespace(uid)``."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def resolve_user(
    pod: KubeObject,
    container: KubeObject,
    image_config: Mapping[str, Any],
    passwd: Mapping[str, tuple[int, int]],
    groups: Mapping[str, int],
) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) of the container's process; enforces ``runAsNonRoot``.

    ``passwd`` maps user names to (uid, gid) and ``groups`` group names to gids, both
    read from the image's ``/etc/passwd`` and ``/etc/group``.
    """
    pod_sc, ctr_sc = _security(pod, container)
    run_as_user = ctr_sc.get("runAsUser", pod_sc.get("runAsUser"))
    run_as_group = ctr_sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    non_root = ctr_sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    who = f'(pod: "{pod_description(pod)}", container: {container.get("name", "")})'
    image_user = str(image_config.get("User") or "")
    user_part, _, group_part = image_user.partition(":")
    uid: int | None = None
    gid: int | None = None
    if run_as_user is not None:
        uid = int(run_as_user)
    elif user_part:
        if user_part.isdigit():
            uid = int(user_part)
        elif user_part in passwd:
            if non_root:
                raise ContainerConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({user_part}), "
                    f"cannot verify user is non-root {who}"
                )
            uid, gid = passwd[user_part]
        else:
            raise ContainerConfigError(f"unable to find user {user_part}: no matching entries")
    else:
        uid = 0
    if non_root and uid == 0:
        if run_as_user is not None:
            raise ContainerConfigError(f"container's runAsUser breaks non-root policy {who}")
        raise ContainerConfigError(f"container has runAsNonRoot and image will run as root {who}")
    if run_as_group is not None:
        gid = int(run_as_group)
    elif group_part:
        if group_part.isdigit():
            gid = int(group_part)
        elif group_part in groups:
            gid = groups[group_part]
        else:
            raise ContainerConfigError(f"unable to find group {group_part}: no matching entries")
    if gid is None:
        by_uid = {u: g for u, g in passwd.values()}
        gid = by_uid.get(uid, 0)
    extra = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        extra.append(int(pod_sc["fsGroup"]))
    return uid, gid, sorted(set(extra))


def _capabilities(container: KubeObject, privileged: bool) -> list[str]:
    if privileged:
        return list(ALL_CAPABILITIES)
    caps = (container.get("securityContext") or {}).get("capabilities") or {}

    def name(cap: str) -> str:
        cap = cap.upper()
        return cap if cap.startswith("CAP_") else f"CAP_{cap}"

    result = list(DEFAULT_CAPABILITIES)
    drop = {name(c) for c in caps.get("drop") or []}
    result = [] if "CAP_ALL" in drop else [c for c in result if c not in drop]
    add = [name(c) for c in caps.get("add") or []]
    if "CAP_ALL" in add:
        return list(ALL_CAPABILITIES)
    result += [c for c in add if c not in result]
    return result


def resources(container: KubeObject, *, pids_limit: int) -> dict[str, Any]:
    """The ``linux.resources`` of a container from its requests and limits."""
    spec = container.get("resources") or {}
    limits = spec.get("limits") or {}
    requests = spec.get("requests") or {}
    result: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if "memory" in limits:
        result["memory"] = {"limit": Quantity(limits["memory"]).value()}
    cpu: dict[str, int] = {}
    cpu_request = requests.get("cpu", limits.get("cpu"))
    # kubelet's shares: 1024 per CPU requested, at least 2 (the kernel's minimum).
    cpu["shares"] = max(2, Quantity(cpu_request).milli_value() * 1024 // 1000) if cpu_request else 2
    if "cpu" in limits:
        cpu["quota"] = max(1000, Quantity(limits["cpu"]).milli_value() * CPU_PERIOD // 1000)
        cpu["period"] = CPU_PERIOD
    result["cpu"] = cpu
    if pids_limit > 0:
        result["pids"] = {"limit": pids_limit}
    return result


def build_spec(
    *,
    pod: KubeObject,
    container: KubeObject,
    image_config: Mapping[str, Any],
    env: Sequence[tuple[str, str]],
    rootfs: str,
    netns_path: str,
    ipc_path: str,
    uts_path: str,
    cgroups_path: str,
    pid_path: str = "",
    user: tuple[int, int, list[int]],
    mounts: Sequence[VolumeMount],
    pids_limit: int = 0,
) -> dict[str, Any]:
    """The OCI runtime spec of one container run; ``pid_path`` is a PID namespace to join
    (an ephemeral container's target's)."""
    config = image_config.get("config") or {}
    pod_sc, ctr_sc = _security(pod, container)
    privileged = bool(ctr_sc.get("privileged"))
    environment = merge_env(config, env)
    tty = bool(container.get("tty"))
    if tty:
        environment.setdefault("TERM", "xterm")  # as containerd's WithTTY
    args = resolve_args(container, config, environment)
    uid, gid, extra_gids = user
    caps = _capabilities(container, privileged)
    # As in containerd, a non-root process gets only the bounding set: the kernel would
    # clear effective/permitted at exec anyway, and keeping them would be a surprise.
    process_caps = caps if uid == 0 else []
    allow_escalation = ctr_sc.get("allowPrivilegeEscalation")
    process: dict[str, Any] = {
        "terminal": tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
        "args": args,
        "env": [f"{k}={v}" for k, v in environment.items()],
        "cwd": container.get("workingDir") or config.get("WorkingDir") or "/",
        "capabilities": {
            "bounding": caps,
            "effective": process_caps,
            "permitted": process_caps,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _NOFILE, "soft": _NOFILE}],
        "noNewPrivileges": allow_escalation is False and not privileged,
    }
    oci_mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if privileged else "ro"],
        },
    ]
    for mount in mounts:
        oci_mounts.append(
            {
                "destination": mount.container_path,
                "type": "bind",
                "source": mount.host_path,
                "options": ["rbind", "rprivate", "ro" if mount.read_only else "rw"],
            }
        )
    # An empty path shares the host's namespace (hostNetwork, hostIPC); hostPID drops the
    # PID namespace.
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if not (pod.get("spec") or {}).get("hostPID"):
        namespaces.append({"type": "pid", "path": pid_path} if pid_path else {"type": "pid"})
    for kind, path in (("network", netns_path), ("ipc", ipc_path), ("uts", uts_path)):
        if path:
            namespaces.append({"type": kind, "path": path})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": resources(container, pids_limit=pids_limit),
        # Unprivileged ports from 0, as containerd sets in pod network namespaces, so a
        # non-root web server can listen on :80.
        "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"} if netns_path else {},
    }
    sysctls = {s["name"]: str(s["value"]) for s in pod_sc.get("sysctls") or [] if "name" in s}
    linux["sysctl"].update(sysctls)
    if privileged:
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(ctr_sc.get("readOnlyRootFilesystem"))},
        "mounts": oci_mounts,
        "linux": linux,
    }


def read_passwd(text: str) -> dict[str, tuple[int, int]]:
    """User name → (uid, gid) from an ``/etc/passwd`` text."""
    users: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
            users[fields[0]] = (int(fields[2]), int(fields[3]))
    return users


def read_group(text: str) -> dict[str, int]:
    """Group name → gid from an ``/etc/group`` text."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            found[fields[0]] = int(fields[2])
    return found
