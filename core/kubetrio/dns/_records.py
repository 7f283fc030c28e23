"""The cluster zone: DNS answers computed from Services, EndpointSlices and Pods.

Names follow the Kubernetes DNS specification (``cluster.local`` stands for the
configured domain)::

    <svc>.<ns>.svc.cluster.local                A   ClusterIP(s); headless: ready endpoint IPs
                                                CNAME  spec.externalName (ExternalName Services)
    _<port>._<proto>.<svc>.<ns>.svc.cluster.local   SRV  per named port (headless: per endpoint)
    <hostname>.<svc>.<ns>.svc.cluster.local     A   a headless Service's endpoint (StatefulSet pods)
    <a-b-c-d>.<svc>.<ns>.svc.cluster.local      A   a headless endpoint by its dashed address
    <a-b-c-d>.<ns>.pod.cluster.local            A   a pod by its dashed address
    d.c.b.a.in-addr.arpa                        PTR the Service (or headless endpoint) of an address

A name inside the zone that matches nothing is NXDOMAIN; a name that exists with other
record types (or is an ancestor of one, such as ``<ns>.svc.cluster.local``) is an empty
NOERROR answer. Lookups read the informers' caches directly — no index to rebuild —
except addresses for PTR, kept per Service as it changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from kubetrio.kubeobject import KubeObject


@dataclass(slots=True)
class Answer:
    """What the zone says about one question."""

    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    authoritative: bool = True


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")


def _undashed(label: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(label.replace("-", ".")))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """One endpoint of a headless Service as DNS sees it."""

    ip: str
    hostname: str
    ready: bool


class ClusterZone:
    """Answers questions about ``svc``/``pod`` names under ``domain`` from object caches.

    :param domain: the cluster domain (``cluster.local``).
    :param ttl: TTL of every answer, in seconds (short: endpoints change).
    """

    def __init__(self, *, domain: str = "cluster.local", ttl: int = 5) -> None:
        self.domain = dns.name.from_text(domain)
        self.ttl = ttl
        self.services: dict[str, KubeObject] = {}
        """``ns/name`` → Service."""
        self.slices: dict[str, dict[str, KubeObject]] = {}
        """``ns/service`` → slice key → EndpointSlice."""
        self.pods: dict[str, KubeObject] = {}
        """``ns/name`` → Pod (for hostnames and subdomains)."""
        self._ptr: dict[str, set[str]] = {}
        """IPv4 address → owner names (fqdn) for PTR."""
        self._ptr_of: dict[str, dict[str, str]] = {}
        """``ns/service`` → (address → name) it contributed."""

    # --- cache maintenance -------------------------------------------------------------

    def set_service(self, key: str, service: KubeObject | None) -> None:
        """Record a Service (None = deleted)."""
        if service is None:
            self.services.pop(key, None)
        else:
            self.services[key] = service
        self._reindex(key)

    def set_slice(self, service_key: str, slice_key: str, slice_: KubeObject | None) -> None:
        """Record an EndpointSlice of ``service_key`` (None = deleted)."""
        bucket = self.slices.setdefault(service_key, {})
        if slice_ is None:
            bucket.pop(slice_key, None)
            if not bucket:
                self.slices.pop(service_key, None)
        else:
            bucket[slice_key] = slice_
        self._reindex(service_key)

    def set_pod(self, key: str, pod: KubeObject | None) -> None:
        """Record a Pod (None = deleted)."""
        if pod is None:
            self.pods.pop(key, None)
        else:
            self.pods[key] = pod

    def _reindex(self, key: str) -> None:
        for ip, name in self._ptr_of.pop(key, {}).items():
            names = self._ptr.get(ip)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._ptr[ip]
        service = self.services.get(key)
        if service is None:
            return
        namespace, _, name = key.partition("/")
        fqdn = f"{name}.{namespace}.svc.{self.domain.to_text(omit_final_dot=True)}"
        contributed: dict[str, str] = {}
        if self._headless(service):
            for endpoint in self.endpoints(key):
                if endpoint.hostname:
                    contributed[endpoint.ip] = f"{endpoint.hostname}.{fqdn}"
        else:
            for ip in self._cluster_ips(service):
                contributed[ip] = fqdn
        for ip, owner in contributed.items():
            self._ptr.setdefault(ip, set()).add(owner)
        self._ptr_of[key] = contributed

    # --- object helpers ----------------------------------------------------------------

    @staticmethod
    def _cluster_ips(service: KubeObject) -> list[str]:
        spec = service.get("spec") or {}
        ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
        result = []
        for ip in ips:
            try:
                if ip and ipaddress.ip_address(ip).version == 4:
                    result.append(str(ip))
            except ValueError:
                continue
        return result

    @staticmethod
    def _headless(service: KubeObject) -> bool:
        spec = service.get("spec") or {}
        return spec.get("clusterIP") == "None" and spec.get("type", "ClusterIP") == "ClusterIP"

    def endpoints(self, service_key: str) -> list[EndpointRecord]:
        """Endpoints of a Service, ready ones first (hostnames from slices or pods)."""
        service = self.services.get(service_key) or {}
        namespace, _, name = service_key.partition("/")
        publish = (service.get("spec") or {}).get("publishNotReadyAddresses", False)
        seen: dict[str, EndpointRecord] = {}
        for slice_ in (self.slices.get(service_key) or {}).values():
            if slice_.get("addressType", "IPv4") != "IPv4":
                continue
            for endpoint in slice_.get("endpoints") or []:
                addresses = endpoint.get("addresses") or []
                if not addresses:
                    continue
                hostname = endpoint.get("hostname") or ""
                ref = endpoint.get("targetRef") or {}
                if not hostname and ref.get("kind") == "Pod":
                    # StatefulSet pods: spec.hostname with spec.subdomain = this Service.
                    pod_spec = (self.pods.get(f"{namespace}/{ref.get('name')}") or {}).get(
                        "spec"
                    ) or {}
                    if pod_spec.get("subdomain") == name and pod_spec.get("hostname"):
                        hostname = str(pod_spec["hostname"])
                ready = (endpoint.get("conditions") or {}).get("ready") is not False
                record = EndpointRecord(str(addresses[0]), hostname, ready or bool(publish))
                if record.ip not in seen or (record.ready and not seen[record.ip].ready):
                    seen[record.ip] = record
        return sorted(seen.values(), key=lambda e: (not e.ready, e.ip))

    # --- answering ---------------------------------------------------------------------

    def soa(self) -> dns.rrset.RRset:
        """The zone's SOA (sent with NXDOMAIN and empty answers for negative caching)."""
        apex = self.domain.to_text(omit_final_dot=True)
        return dns.rrset.from_text(
            self.domain,
            self.ttl,
            "IN",
            "SOA",
            f"ns.dns.{apex}. hostmaster.{apex}. 1 7200 1800 86400 {self.ttl}",
        )

    def in_zone(self, qname: dns.name.Name) -> bool:
        """Whether the zone is authoritative for ``qname`` (else: forward)."""
        return qname.is_subdomain(self.domain) or self._reverse_ip(qname) in self._ptr

    @staticmethod
    def _reverse_ip(qname: dns.name.Name) -> str | None:
        labels = [label.decode(errors="replace").lower() for label in qname.labels if label]
        if len(labels) != 6 or labels[-2:] != ["in-addr", "arpa"]:
            return None
        try:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        except ValueError:
            return None

    def _rrset(
        self, name: dns.name.Name | str, rdtype: str, values: Iterable[str]
    ) -> dns.rrset.RRset:
        return dns.rrset.from_text_list(name, self.ttl, "IN", rdtype, list(values))

    def answer(self, qname: dns.name.Name, qtype: int) -> Answer:
        """Answer one question inside the zone (call :meth:`in_zone` first)."""
        reverse = self._reverse_ip(qname)
        if reverse is not None and not qname.is_subdomain(self.domain):
            names = sorted(self._ptr.get(reverse, ()))
            if not names:
                return Answer(rcode=dns.rcode.NXDOMAIN)
            if qtype in (dns.rdatatype.PTR, dns.rdatatype.ANY):
                return Answer(answer=[self._rrset(qname, "PTR", [f"{n}." for n in names])])
            return Answer()
        relative = [
            label.decode(errors="replace").lower()
            for label in qname.relativize(self.domain).labels
            if label
        ]
        if not relative or relative == ["svc"] or relative == ["pod"]:
            return Answer()  # the zone apex and its two subtrees exist
        kind = relative[-1]
        if kind == "svc":
            return self._service_answer(qname, relative[:-1], qtype)
        if kind == "pod" and len(relative) == 3:
            ip = _undashed(relative[0])
            if ip is None:
                return Answer(rcode=dns.rcode.NXDOMAIN)
            if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
                return Answer(answer=[self._rrset(qname, "A", [ip])])
            return Answer()
        if kind == "pod" and len(relative) == 2:
            return Answer()  # <ns>.pod: an existing branch
        return Answer(rcode=dns.rcode.NXDOMAIN)

    def _service_answer(self, qname: dns.name.Name, labels: list[str], qtype: int) -> Answer:
        if len(labels) == 1:  # <ns>.svc
            namespace = labels[0]
            exists = any(k.startswith(f"{namespace}/") for k in self.services)
            return Answer() if exists else Answer(rcode=dns.rcode.NXDOMAIN)
        if len(labels) < 2:
            return Answer(rcode=dns.rcode.NXDOMAIN)
        namespace, name = labels[-1], labels[-2]
        key = f"{namespace}/{name}"
        service = self.services.get(key)
        if service is None:
            return Answer(rcode=dns.rcode.NXDOMAIN)
        fqdn = f"{name}.{namespace}.svc.{self.domain.to_text(omit_final_dot=True)}"
        prefix = labels[:-2]
        if not prefix:
            return self._service_record(qname, service, key, qtype)
        if len(prefix) == 2 and prefix[0].startswith("_") and prefix[1].startswith("_"):
            return self._srv(qname, service, key, fqdn, prefix[0][1:], prefix[1][1:], qtype)
        if len(prefix) == 1 and self._headless(service):
            label = prefix[0]
            for endpoint in self.endpoints(key):
                if endpoint.hostname == label or _dashed(endpoint.ip) == label:
                    if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
                        return Answer(answer=[self._rrset(qname, "A", [endpoint.ip])])
                    return Answer()
        return Answer(rcode=dns.rcode.NXDOMAIN)

    def _service_record(
        self, qname: dns.name.Name, service: KubeObject, key: str, qtype: int
    ) -> Answer:
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").rstrip(".") + "."
            return Answer(answer=[self._rrset(qname, "CNAME", [target])])
        if qtype not in (dns.rdatatype.A, dns.rdatatype.ANY):
            return Answer()
        if self._headless(service):
            ips = [e.ip for e in self.endpoints(key) if e.ready]
        else:
            ips = self._cluster_ips(service)
        return Answer(answer=[self._rrset(qname, "A", ips)] if ips else [])

    def _srv(
        self,
        qname: dns.name.Name,
        service: KubeObject,
        key: str,
        fqdn: str,
        port_name: str,
        protocol: str,
        qtype: int,
    ) -> Answer:
        spec = service.get("spec") or {}
        ports = [
            p
            for p in spec.get("ports") or []
            if (p.get("name") or "").lower() == port_name
            and (p.get("protocol") or "TCP").lower() == protocol
        ]
        if not ports or spec.get("type") == "ExternalName":
            return Answer(rcode=dns.rcode.NXDOMAIN)
        if qtype not in (dns.rdatatype.SRV, dns.rdatatype.ANY):
            return Answer()
        port = ports[0]
        if not self._headless(service):
            srv = self._rrset(qname, "SRV", [f"0 100 {port['port']} {fqdn}."])
            ips = self._cluster_ips(service)
            extra = [self._rrset(f"{fqdn}.", "A", ips)] if ips else []
            return Answer(answer=[srv], additional=extra)
        # Headless: one SRV per ready endpoint, at the endpoint's port of that name.
        numbers: dict[str, int] = {}
        for slice_ in (self.slices.get(key) or {}).values():
            for slice_port in slice_.get("ports") or []:
                if (slice_port.get("name") or "").lower() == port_name and slice_port.get("port"):
                    for endpoint in slice_.get("endpoints") or []:
                        for ip in endpoint.get("addresses") or []:
                            numbers[str(ip)] = int(slice_port["port"])
        records, extra = [], []
        for endpoint in self.endpoints(key):
            if not endpoint.ready or endpoint.ip not in numbers:
                continue
            target = f"{endpoint.hostname or _dashed(endpoint.ip)}.{fqdn}."
            records.append(f"0 {100 // max(1, len(numbers))} {numbers[endpoint.ip]} {target}")
            extra.append(self._rrset(target, "A", [endpoint.ip]))
        if not records:
            return Answer()
        return Answer(answer=[self._rrset(qname, "SRV", records)], additional=extra)


def respond(zone: ClusterZone, query: dns.message.Message) -> dns.message.Message:
    """The zone's response to a query whose questions are all in the zone."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA | dns.flags.RA
    for question in query.question:
        result = zone.answer(question.name, question.rdtype)
        response.set_rcode(result.rcode)
        response.answer.extend(result.answer)
        response.additional.extend(result.additional)
        if result.rcode == dns.rcode.NXDOMAIN or not result.answer:
            response.authority.append(zone.soa())
    return response
