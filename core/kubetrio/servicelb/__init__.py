"""LoadBalancer Services: addresses from a pool, announced on the node network (L2).

Two parts, as k3s' ServiceLB and MetalLB in L2 mode split them:

* :class:`ServiceLBController` runs in the controller manager (``ControllerManager(...,
  lb_pool="192.168.1.240/28")``) and writes an address of the pool into each
  LoadBalancer Service's ``status.loadBalancer.ingress`` (:mod:`._allocator`);
* :class:`ServiceLBAnnouncer` runs on every node and makes exactly one node answer ARP
  for each such address (:mod:`._announcer`); the service proxy on that node DNATs the
  traffic like any external IP::

      announcer = ServiceLBAnnouncer(client, "node1")
      await nursery.start(announcer.run)

With a pool, the controller manager also runs :class:`IngressLoadBalancer`
(:mod:`._ingress`): the ``kube-system/kubetrio-ingress`` LoadBalancer Service, whose
endpoints are the nginx of every node that serves Ingresses.

Services with ``spec.loadBalancerClass`` other than :data:`LB_CLASS` are left to
whatever implements that class.
"""

from ._allocator import ServiceLBController as ServiceLBController
from ._announcer import ServiceLBAnnouncer as ServiceLBAnnouncer
from ._announcer import choose_node as choose_node
from ._announcer import node_is_ready as node_is_ready
from ._announcer import plan as plan
from ._garp import garp_frame as garp_frame
from ._garp import send_garp as send_garp
from ._ingress import IngressLoadBalancer as IngressLoadBalancer
from ._ingress import ingress_ports as ingress_ports
from ._ingress import ingress_service as ingress_service
from ._ingress import ingress_slices as ingress_slices
from ._pool import AddressPool as AddressPool
from ._service import IP_MODE as IP_MODE
from ._service import LB_CLASS as LB_CLASS
from ._service import ingress_ips as ingress_ips
from ._service import is_ours as is_ours
