"""Ingresses served by real nginx on every node (k3s ships traefik; we run nginx).

The API server creates the default IngressClass ``kubetrio-nginx`` (controller
``kubetrio.io/ingress-nginx``, :mod:`kubetrio.api.ingress`) and the DefaultIngressClass
admission gives it to new Ingresses without a class. Each node agent runs an
:class:`IngressController`, which renders the Ingresses of that class into one nginx
configuration (:mod:`._render`) and runs nginx from the agent's state folder
(:mod:`._nginx`), listening on the node's ports 80 and 443 (configurable)::

    controller = IngressController(client, "node1", state_dir, http_port=80, https_port=443)
    await nursery.start(controller.run)

Each node that serves puts its ports on its own Node (:data:`HTTP_PORT_ANNOTATION`);
where there is an address pool, :mod:`kubetrio.servicelb` makes the LoadBalancer Service
:data:`LB_SERVICE` lead to every such node's nginx, and Ingresses show its address.

Upstreams are the Services' ready endpoints (pod addresses, reached through the node's
pod network), not the ClusterIP, as ingress-nginx does.
"""

from ._controller import COMPONENT as COMPONENT
from ._controller import HTTP_PORT_ANNOTATION as HTTP_PORT_ANNOTATION
from ._controller import HTTPS_PORT_ANNOTATION as HTTPS_PORT_ANNOTATION
from ._controller import LB_SERVICE as LB_SERVICE
from ._controller import IngressController as IngressController
from ._nginx import NGINX as NGINX
from ._nginx import Nginx as Nginx
from ._nginx import NginxError as NginxError
from ._render import Layout as Layout
from ._render import Plan as Plan
from ._render import Unsafe as Unsafe
from ._render import plan as plan
from ._render import quoted as quoted
from ._render import render as render
