"""The Pod Security Standards (baseline and restricted), as the PodSecurity admission
plugin of Kubernetes 1.33 checks them (``k8s.io/pod-security-admission/policy``).

Each check looks at a pod's metadata and spec (plain dicts) and gives ``None`` when the
pod passes, or a (reason, detail) pair worded exactly as upstream's, so that messages
such as ``violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false
(container "c" must set securityContext.allowPrivilegeEscalation=false)`` match
kube-apiserver's. Checks run in upstream's order: baseline ones, then restricted ones,
each group sorted by check ID; a restricted check may replace a baseline one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

LEVELS = ("privileged", "baseline", "restricted")
LATEST = (1, 33)
"""The newest policy version this server knows: ``latest`` and newer versions mean it."""

Version = tuple[int, int]
Result = tuple[str, str] | None
Check = Callable[[dict[str, Any], dict[str, Any], Version], Result]

MODES = ("enforce", "audit", "warn")
LABEL_PREFIX = "pod-security.kubernetes.io/"


# --- policies from namespace labels ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LevelVersion:
    """A level at a policy version (None: latest)."""

    level: str = "privileged"
    version: Version | None = None

    def __str__(self) -> str:
        version = "latest" if self.version is None else f"v{self.version[0]}.{self.version[1]}"
        return f"{self.level}:{version}"

    @property
    def effective_version(self) -> Version:
        """The version whose checks apply: newer than this server's means its latest."""
        if self.version is None or self.version > LATEST:
            return LATEST
        return self.version


@dataclasses.dataclass(frozen=True)
class Policy:
    """The level and version of each mode for one namespace."""

    enforce: LevelVersion = LevelVersion()
    audit: LevelVersion = LevelVersion()
    warn: LevelVersion = LevelVersion()
    errors: tuple[str, ...] = ()

    @property
    def fully_privileged(self) -> bool:
        """Nothing to check in any mode."""
        return all(mode.level == "privileged" for mode in (self.enforce, self.audit, self.warn))


def parse_version(text: str) -> Version | None:
    """``latest`` → None, ``v1.x`` → (1, x); anything else raises ValueError."""
    if text == "latest":
        return None
    major, _, minor = text.removeprefix("v").partition(".")
    if not text.startswith("v1.") or major != "1" or not minor.isdigit():
        raise ValueError('must be "latest" or "v1.x"')
    return (1, int(minor))


def policy_of(labels: dict[str, str]) -> Policy:
    """A namespace's policy from its labels, as upstream's ``PolicyToEvaluate``: a bad
    enforce level fails closed (restricted), bad audit/warn levels fail open, bad
    versions mean latest; warn defaults to a stricter enforce level."""
    errors: list[str] = []
    modes: dict[str, LevelVersion] = {}
    for mode in MODES:
        level = "privileged"
        version: Version | None = None
        level_text = labels.get(f"{LABEL_PREFIX}{mode}")
        if level_text is not None:
            if level_text in LEVELS:
                level = level_text
            else:
                level = "restricted" if mode == "enforce" else "privileged"
                errors.append(
                    f'metadata.labels[{LABEL_PREFIX}{mode}]: Invalid value: "{level_text}": '
                    f"must be one of {', '.join(LEVELS)}"
                )
        version_text = labels.get(f"{LABEL_PREFIX}{mode}-version")
        if version_text is not None:
            try:
                version = parse_version(version_text)
            except ValueError as exc:
                errors.append(
                    f"metadata.labels[{LABEL_PREFIX}{mode}-version]: Invalid value: "
                    f'"{version_text}": {exc}'
                )
        modes[mode] = LevelVersion(level, version)
    enforce_set = labels.get(f"{LABEL_PREFIX}enforce") in LEVELS
    warn = modes["warn"]
    if (
        f"{LABEL_PREFIX}warn" not in labels
        and enforce_set
        and LEVELS.index(modes["enforce"].level) > LEVELS.index(warn.level)
    ):
        version = (
            warn.version if f"{LABEL_PREFIX}warn-version" in labels else modes["enforce"].version
        )
        warn = LevelVersion(modes["enforce"].level, version)
    return Policy(modes["enforce"], modes["audit"], warn, tuple(errors))


# --- helpers ----------------------------------------------------------------------------------


def _join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Init containers, containers, ephemeral containers: the order upstream visits."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(field) or []


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def _windows(spec: dict[str, Any]) -> bool:
    return ((spec.get("os") or {}).get("name")) == "windows"


def _setters(pod_bad: bool, containers: list[str]) -> list[str]:
    setters = ["pod"] if pod_bad else []
    if containers:
        setters.append(
            f"{_plural('container', 'containers', len(containers))} {_join_quote(containers)}"
        )
    return setters


# --- baseline ---------------------------------------------------------------------------------


def app_armor_profile(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """AppArmor profiles other than RuntimeDefault/Localhost (fields and annotations)."""
    allowed = ("RuntimeDefault", "Localhost")
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("appArmorProfile") or {}
    pod_bad = bool(pod_profile) and pod_profile.get("type") not in allowed
    if pod_bad:
        bad_values.add(str(pod_profile.get("type", "")))
    containers = []
    for c in _containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if profile and profile.get("type") not in allowed:
            containers.append(c.get("name", ""))
            bad_values.add(str(profile.get("type", "")))
    setters = _setters(pod_bad, containers)
    values = sorted(bad_values)
    prefix = "container.apparmor.security.beta.kubernetes.io/"
    annotations = sorted(
        f'{key}="{value}"'
        for key, value in (meta.get("annotations") or {}).items()
        if key.startswith(prefix)
        and value
        and value != "runtime/default"
        and not value.startswith("localhost/")
    )
    if annotations:
        values += annotations
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return (
        _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
        f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(values)}",
    )


BASELINE_CAPABILITIES = frozenset(
    [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ]
)


def capabilities_baseline(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """Capabilities added beyond the container runtime's default set."""
    containers: list[str] = []
    extra: set[str] = set()
    for c in _containers(spec):
        added = [str(a) for a in (_sc(c).get("capabilities") or {}).get("add") or []]
        bad = [a for a in added if a not in BASELINE_CAPABILITIES]
        if bad:
            containers.append(c.get("name", ""))
            extra.update(bad)
    if not containers:
        return None
    return (
        "non-default capabilities",
        f"{_plural('container', 'containers', len(containers))} {_join_quote(containers)} "
        f"must not include {_join_quote(sorted(extra))} in securityContext.capabilities.add",
    )


def host_namespaces(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """hostNetwork, hostPID, hostIPC."""
    used = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    return ("host namespaces", ", ".join(used)) if used else None


def host_path_volumes(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """hostPath volumes."""
    names = [v.get("name", "") for v in spec.get("volumes") or [] if v.get("hostPath") is not None]
    if not names:
        return None
    return "hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_join_quote(names)}"


def host_ports(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """Container ports bound on the host."""
    containers: list[str] = []
    ports: set[str] = set()
    for c in _containers(spec):
        used = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if used:
            containers.append(c.get("name", ""))
            ports.update(used)
    if not containers:
        return None
    n = len(containers)
    return (
        "hostPort",
        f"{_plural('container', 'containers', n)} {_join_quote(containers)} "
        f"{_plural('uses', 'use', n)} {_plural('hostPort', 'hostPorts', len(ports))} "
        + ", ".join(sorted(ports)),
    )


def privileged(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """Privileged containers."""
    names = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged") is True]
    if not names:
        return None
    return (
        "privileged",
        f"{_plural('container', 'containers', len(names))} {_join_quote(names)} "
        "must not set securityContext.privileged=true",
    )


def proc_mount(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """A /proc mount other than Default."""
    containers: list[str] = []
    types: set[str] = set()
    for c in _containers(spec):
        mount = _sc(c).get("procMount")
        if mount is not None and mount != "Default":
            containers.append(c.get("name", ""))
            types.add(str(mount))
    if not containers:
        return None
    return (
        "procMount",
        f"{_plural('container', 'containers', len(containers))} {_join_quote(containers)} "
        f"must not set securityContext.procMount to {_join_quote(sorted(types))}",
    )


def se_linux_options(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """SELinux types beyond the container ones, or a user or role set."""
    allowed = {"", "container_t", "container_init_t", "container_kvm_t"}
    if version >= (1, 31):
        allowed.add("container_engine_t")
    bad_types: set[str] = set()
    set_user = set_role = False

    def valid(options: dict[str, Any]) -> bool:
        nonlocal set_user, set_role
        ok = True
        if options.get("type", "") not in allowed:
            ok = False
            bad_types.add(str(options.get("type")))
        if options.get("user"):
            set_user = True
            ok = False
        if options.get("role"):
            set_role = True
            ok = False
        return ok

    pod_options = _sc(spec).get("seLinuxOptions")
    pod_bad = pod_options is not None and not valid(pod_options)
    containers = [
        c.get("name", "")
        for c in _containers(spec)
        if _sc(c).get("seLinuxOptions") is not None and not valid(_sc(c)["seLinuxOptions"])
    ]
    setters = _setters(pod_bad, containers)
    if not setters:
        return None
    data = []
    if bad_types:
        data.append(f"{_plural('type', 'types', len(bad_types))} {_join_quote(sorted(bad_types))}")
    if set_user:
        data.append("user may not be set")
    if set_role:
        data.append("role may not be set")
    return (
        "seLinuxOptions",
        f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: " + "; ".join(data),
    )


def _explicit_seccomp(spec: dict[str, Any]) -> tuple[bool, list[str], set[str], bool]:
    """Who sets a seccomp profile type other than RuntimeDefault/Localhost: (pod bad,
    bad containers, bad values, pod sets a good one)."""
    allowed = ("RuntimeDefault", "Localhost")
    values: set[str] = set()
    profile: dict[str, Any] | None = _sc(spec).get("seccompProfile")
    pod_bad = profile is not None and profile.get("type") not in allowed
    if profile is not None and pod_bad:
        values.add(str(profile.get("type", "")))
    containers = []
    for c in _containers(spec):
        own = _sc(c).get("seccompProfile")
        if own is not None and own.get("type") not in allowed:
            containers.append(c.get("name", ""))
            values.add(str(own.get("type", "")))
    return pod_bad, containers, values, profile is not None and not pod_bad


def seccomp_profile_baseline(
    meta: dict[str, Any], spec: dict[str, Any], version: Version
) -> Result:
    """seccompProfile type Unconfined (or anything but RuntimeDefault/Localhost)."""
    pod_bad, containers, values, _ = _explicit_seccomp(spec)
    setters = _setters(pod_bad, containers)
    if not setters:
        return None
    return (
        "seccompProfile",
        f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
        + _join_quote(sorted(values)),
    )


SAFE_SYSCTLS: list[tuple[Version, frozenset[str]]] = [
    ((1, 32), frozenset({"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})),
    (
        (1, 29),
        frozenset(
            {
                "net.ipv4.tcp_keepalive_time",
                "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes",
            }
        ),
    ),
    ((1, 27), frozenset({"net.ipv4.ip_local_reserved_ports"})),
    (
        (1, 0),
        frozenset(
            {
                "kernel.shm_rmid_forced",
                "net.ipv4.ip_local_port_range",
                "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range",
                "net.ipv4.ip_unprivileged_port_start",
            }
        ),
    ),
]
"""Sysctls allowed from each policy version on."""


def sysctls(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """Sysctls outside the safe set of the policy version."""
    allowed = set().union(*(names for since, names in SAFE_SYSCTLS if version >= since))
    bad = [
        str(s.get("name")) for s in _sc(spec).get("sysctls") or [] if s.get("name") not in allowed
    ]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


def windows_host_process(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """Windows HostProcess pods or containers."""

    def host_process(sc: dict[str, Any]) -> bool:
        return (sc.get("windowsOptions") or {}).get("hostProcess") is True

    containers = [c.get("name", "") for c in _containers(spec) if host_process(_sc(c))]
    setters = _setters(host_process(_sc(spec)), containers)
    if not setters:
        return None
    return (
        "hostProcess",
        f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
    )


# --- restricted -------------------------------------------------------------------------------


def allow_privilege_escalation(
    meta: dict[str, Any], spec: dict[str, Any], version: Version
) -> Result:
    """allowPrivilegeEscalation must be false (not checked for Windows pods from 1.25)."""
    if version >= (1, 25) and _windows(spec):
        return None
    names = [
        c.get("name", "")
        for c in _containers(spec)
        if _sc(c).get("allowPrivilegeEscalation") is not False
    ]
    if not names:
        return None
    return (
        "allowPrivilegeEscalation != false",
        f"{_plural('container', 'containers', len(names))} {_join_quote(names)} "
        "must set securityContext.allowPrivilegeEscalation=false",
    )


def capabilities_restricted(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """Drop ALL; add nothing but NET_BIND_SERVICE."""
    if version >= (1, 25) and _windows(spec):
        return None
    missing_drop: list[str] = []
    adding: list[str] = []
    forbidden: set[str] = set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities")
        if capabilities is None:
            missing_drop.append(c.get("name", ""))
            continue
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(c.get("name", ""))
        bad = [str(a) for a in capabilities.get("add") or [] if a != "NET_BIND_SERVICE"]
        if bad:
            adding.append(c.get("name", ""))
            forbidden.update(bad)
    details = []
    if missing_drop:
        details.append(
            f"{_plural('container', 'containers', len(missing_drop))} {_join_quote(missing_drop)} "
            'must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{_plural('container', 'containers', len(adding))} {_join_quote(adding)} "
            f"must not include {_join_quote(sorted(forbidden))} in "
            "securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


RESTRICTED_VOLUME_SOURCES = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
]
ALLOWED_VOLUME_SOURCES = frozenset(
    [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ]
)


def restricted_volumes(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """Only configMap, csi, downwardAPI, emptyDir, ephemeral, image, PVC, projected, secret."""
    names: list[str] = []
    types: set[str] = set()
    for volume in spec.get("volumes") or []:
        if any(volume.get(source) is not None for source in ALLOWED_VOLUME_SOURCES):
            continue
        names.append(volume.get("name", ""))
        found = [s for s in RESTRICTED_VOLUME_SOURCES if volume.get(s) is not None]
        types.add(found[0] if found else "unknown")
    if not names:
        return None
    n = len(names)
    return (
        "restricted volume types",
        f"{_plural('volume', 'volumes', n)} {_join_quote(names)} {_plural('uses', 'use', n)} "
        f"{_plural('restricted volume type', 'restricted volume types', len(types))} "
        + _join_quote(sorted(types)),
    )


def run_as_non_root(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """runAsNonRoot true on the pod or every container, false nowhere."""
    pod_value = _sc(spec).get("runAsNonRoot")
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is not None:
            if not value:
                explicit.append(c.get("name", ""))
        elif pod_value is not True:
            implicit.append(c.get("name", ""))
    setters = _setters(pod_value is False, explicit)
    if setters:
        return (
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if implicit:
        return (
            "runAsNonRoot != true",
            f"pod or {_plural('container', 'containers', len(implicit))} {_join_quote(implicit)} "
            "must set securityContext.runAsNonRoot=true",
        )
    return None


def run_as_user(meta: dict[str, Any], spec: dict[str, Any], version: Version) -> Result:
    """runAsUser 0 nowhere."""
    containers = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    setters = _setters(_sc(spec).get("runAsUser") == 0, containers)
    if not setters:
        return None
    return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"


def seccomp_profile_restricted(
    meta: dict[str, Any], spec: dict[str, Any], version: Version
) -> Result:
    """seccompProfile RuntimeDefault or Localhost, on the pod or every container."""
    if version >= (1, 25) and _windows(spec):
        return None
    pod_bad, containers, values, pod_set = _explicit_seccomp(spec)
    setters = _setters(pod_bad, containers)
    if setters:
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
            + _join_quote(sorted(values)),
        )
    implicit = [
        c.get("name", "")
        for c in _containers(spec)
        if _sc(c).get("seccompProfile") is None and not pod_set
    ]
    if implicit:
        return (
            "seccompProfile",
            f"pod or {_plural('container', 'containers', len(implicit))} {_join_quote(implicit)} "
            'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
        )
    return None


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """One check: its upstream ID, level, first version, and the baseline checks it replaces."""

    id: str
    level: str
    since: Version
    run: Check
    overrides: tuple[str, ...] = ()


CHECKS = [
    CheckSpec("appArmorProfile", "baseline", (1, 0), app_armor_profile),
    CheckSpec("capabilities_baseline", "baseline", (1, 0), capabilities_baseline),
    CheckSpec("hostNamespaces", "baseline", (1, 0), host_namespaces),
    CheckSpec("hostPathVolumes", "baseline", (1, 0), host_path_volumes),
    CheckSpec("hostPorts", "baseline", (1, 0), host_ports),
    CheckSpec("privileged", "baseline", (1, 0), privileged),
    CheckSpec("procMount", "baseline", (1, 0), proc_mount),
    CheckSpec("seLinuxOptions", "baseline", (1, 0), se_linux_options),
    CheckSpec("seccompProfile_baseline", "baseline", (1, 19), seccomp_profile_baseline),
    CheckSpec("sysctls", "baseline", (1, 0), sysctls),
    CheckSpec("windowsHostProcess", "baseline", (1, 0), windows_host_process),
    CheckSpec("allowPrivilegeEscalation", "restricted", (1, 8), allow_privilege_escalation),
    CheckSpec(
        "capabilities_restricted",
        "restricted",
        (1, 22),
        capabilities_restricted,
        ("capabilities_baseline",),
    ),
    CheckSpec("restrictedVolumes", "restricted", (1, 0), restricted_volumes, ("hostPathVolumes",)),
    CheckSpec("runAsNonRoot", "restricted", (1, 0), run_as_non_root),
    CheckSpec("runAsUser", "restricted", (1, 23), run_as_user),
    CheckSpec(
        "seccompProfile_restricted",
        "restricted",
        (1, 19),
        seccomp_profile_restricted,
        ("seccompProfile_baseline",),
    ),
]
"""In upstream's order: baseline checks, then restricted ones, each sorted by ID (bytewise)."""


def evaluate(
    policy: LevelVersion,
    meta: dict[str, Any],
    spec: dict[str, Any],
    results: dict[tuple[str, Version], Result] | None = None,
) -> str:
    """What a pod violates at a level and version, as upstream words it (``reason
    (detail), ...``), or "" when it passes.

    :param results: checks already run on this pod, by ID and version (filled in), so
        evaluating its enforce, audit and warn levels runs each check once.
    """
    if policy.level == "privileged":
        return ""
    version = policy.effective_version
    active = [
        check
        for check in CHECKS
        if version >= check.since and (policy.level == "restricted" or check.level == "baseline")
    ]
    replaced = {o for check in active for o in check.overrides}
    parts = []
    for check in active:
        if check.id in replaced:
            continue
        key = (check.id, version)
        if results is not None and key in results:
            result = results[key]
        else:
            result = check.run(meta, spec, version)
            if results is not None:
                results[key] = result
        if result is not None:
            reason, detail = result
            parts.append(f"{reason} ({detail})" if detail else reason)
    return ", ".join(parts)
