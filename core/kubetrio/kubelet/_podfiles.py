"""The files a pod's containers get from the node: ``/etc/resolv.conf`` and ``/etc/hosts``.

Pure functions of the pod and the node's settings (the DNS policy's rules as kubelet
applies them), plus the small blocking file helpers the worker runs in threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kubetrio.providers import KubeObject


def host_resolv_conf() -> str:
    """The node's own ``/etc/resolv.conf`` (empty when unreadable)."""
    return read_text("/etc/resolv.conf")


def read_text(path: str) -> str:
    """A file's text, or empty when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def write_file(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` whole (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content)
    tmp.replace(path)


def etc_hosts(pod: KubeObject, *, ips: Sequence[str], cluster_domain: str, base: str = "") -> str:
    """A pod's /etc/hosts as kubelet writes it: localhost, the pod's own names (with the
    FQDN when it has a ``subdomain``) and ``hostAliases``; ``base`` (the node's file, for
    host-network pods) replaces the first part."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if base:
        text = base if base.endswith("\n") else base + "\n"
    else:
        text = (
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
            "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        )
        hostname = str(spec.get("hostname") or meta.get("name", ""))[:63]
        names = [hostname]
        if spec.get("subdomain"):
            namespace = meta.get("namespace") or "default"
            names.insert(0, f"{hostname}.{spec['subdomain']}.{namespace}.svc.{cluster_domain}")
        for ip in ips:
            text += f"{ip}\t" + "\t".join(names) + "\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for alias in aliases:
            text += f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or []) + "\n"
    return text


def resolv_conf(
    pod: KubeObject, *, cluster_dns: Sequence[str], cluster_domain: str, host: str
) -> str:
    """A pod's resolv.conf: ``dnsPolicy`` (ClusterFirst, ClusterFirstWithHostNet, Default,
    None) applied to the cluster DNS servers or the host's file, then ``dnsConfig``."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"  # as kubelet: host-network pods use the node's DNS unless asked
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        servers = list(cluster_dns)
        searches = [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        options = ["ndots:5"]
    elif policy != "None":
        for line in host.splitlines():
            fields = line.split()
            if not fields or fields[0].startswith(("#", ";")):
                continue
            if fields[0] == "nameserver":
                servers += fields[1:2]
            elif fields[0] in ("search", "domain"):
                searches += fields[1:]
            elif fields[0] == "options":
                options += fields[1:]
    config = spec.get("dnsConfig") or {}
    servers += [s for s in config.get("nameservers") or [] if s not in servers]
    searches += [s for s in config.get("searches") or [] if s not in searches]
    for option in config.get("options") or []:
        name = option.get("name", "")
        options = [o for o in options if o.split(":")[0] != name]
        options.append(f"{name}:{option['value']}" if option.get("value") else name)
    lines = [f"nameserver {server}" for server in servers[:3]]
    if searches:
        lines.append("search " + " ".join(searches[:32]))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"
