"""One API address for several API servers: a userspace TCP balancer on trio.

As k3s' agent load balancer: a listener (on loopback, beside a node agent or kubectl)
passes each connection through to one of the API servers whose ``/readyz`` answers ``ok``,
so TLS stays end to end — clients verify the server's own certificate, which names the
loopback address — and a server that dies only breaks the connections it held; clients
reconnect (watches resume from their resourceVersion) and land on a healthy one.
"""

from ._balancer import Backend as Backend
from ._balancer import TCPBalancer as TCPBalancer
from ._balancer import parse_backend as parse_backend
