"""The node agent (kubelet): node registration, Lease heartbeats, pod workers, status.

Start one in a nursery (it follows trio's start protocol)::

    agent = NodeAgent(
        client,                                  # in-process or Client.connect(url, token=...)
        node_name="node-1",
        plugins=plugins.load(),                  # the network plugin, storage drivers
        root_dir="/var/lib/kubetrio/agent",
        registries={"mirrors": {"docker.io": {"endpoint": ["http://127.0.0.1:5000"]}}},
        kubelet_port=10250,                      # pods/log: the API server asks this port
        kubelet_token=token,                     # ... with this Bearer token
    )
    await nursery.start(agent.run)

Cancelling ``run`` leaves the pods' containers running (a restarted agent adopts
them); ``await agent.shutdown()`` first stops every pod of the node.
``NodeAgent.read_logs`` serves ``pods/log`` in-process too.
"""

from ._agent import NodeAgent as NodeAgent
from ._containers import BackOff as BackOff
from ._worker import PodWorker as PodWorker

__all__ = ["BackOff", "NodeAgent", "PodWorker"]
