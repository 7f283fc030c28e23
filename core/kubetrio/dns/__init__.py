"""Cluster DNS: the ``cluster.local`` zone answered from Services, EndpointSlices and Pods.

:class:`ClusterDNS` serves A, CNAME (ExternalName), SRV (named ports), PTR, headless
Services and their pods' hostnames on trio UDP and TCP sockets, answers NXDOMAIN inside
the zone, and forwards other names to an upstream (or refuses them when offline).
:func:`resolv_conf` renders a pod's ``/etc/resolv.conf``. In a cluster it listens behind
the ``kube-dns`` Service of ``kube-system``::

    dns = ClusterDNS(client, listen=("10.244.0.10", 53), upstream=("192.0.2.53", 53))
    host, port = await nursery.start(dns.run)

Messages are parsed and built with dnspython.
"""

from ._records import Answer as Answer
from ._records import ClusterZone as ClusterZone
from ._records import respond as respond
from ._server import ClusterDNS as ClusterDNS
from ._server import resolv_conf as resolv_conf
from ._service import DNS_SERVICE_IP as DNS_SERVICE_IP
from ._service import publish_dns_service as publish_dns_service
