"""The service proxy: Services and EndpointSlices programmed into nftables on each node.

:class:`ServiceProxy` watches Services and EndpointSlices through the cluster client and
keeps one table, ``table ip kubetrio``, in the node's network namespace, shaped like
kube-proxy's nftables mode (verdict maps keyed by address . protocol . port, masquerade
marks, hairpin, ClusterIP, NodePort, external and LoadBalancer IPs, session affinity,
Local traffic policies, rejects for services without endpoints), except that endpoints
are chosen through data maps — ``dnat ip to <service key> . numgen random mod N map
@service-endpoints`` in a few chains shared by all Services — so that an endpoint change
writes map elements only and no commit re-validates a chain per Service (see
:mod:`._rules`). ``mode="maglev"`` replaces the random choice with Maglev consistent
hashing of the flow: ``jhash(flow) mod M`` picks one of M slots per service key, filled
from :class:`kubetrio.datapath.MaglevTable` and updated slot by slot. The mode is the
node's default: a Service picks its own with the annotation ``kubetrio.io/proxy-mode:
maglev`` (or ``nftables``), and both kinds live in the one table.

The renderer builds typed nft commands (:mod:`kubetrio.nft`); transactions go to the
kernel as raw nf_tables netlink batches (nft 1.0.6's libnftables re-reads the whole table
before each one), with libnftables as the fallback and for listing. Start one per node::

    proxy = ServiceProxy(client, node_name="node1", netns="node1")
    await nursery.start(proxy.run)

Nodes need a route to the service CIDR for their own connections to ClusterIPs (the
NAT hook runs after routing); the network plugin's node services set that up.
"""

from kubetrio.nft import Nft as Nft
from kubetrio.nft import NftError as NftError

from ._model import PROXY_MODE_ANNOTATION as PROXY_MODE_ANNOTATION
from ._model import PROXY_MODES as PROXY_MODES
from ._model import Endpoint as Endpoint
from ._model import ServicePort as ServicePort
from ._model import service_ports as service_ports
from ._proxy import ServiceProxy as ServiceProxy
from ._proxy import SyncStats as SyncStats
from ._proxy import announce_mode as announce_mode
from ._proxy import describe as describe
from ._rules import MAGLEV_SLOTS as MAGLEV_SLOTS
from ._rules import PROXY_TABLE as PROXY_TABLE
from ._rules import TABLE as TABLE
from ._rules import Fragment as Fragment
from ._rules import Renderer as Renderer
from ._rules import base_commands as base_commands
from ._rules import diff_script as diff_script
from ._rules import full_script as full_script
from ._rules import gc_paused as gc_paused
from ._rules import shared_parts as shared_parts
