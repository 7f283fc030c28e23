"""The node agent (kubelet): node registration, Lease heartbeats, pod workers, status.

Start one with::

    agent = NodeAgent(client, node_name="node-1", plugins=plugins.load(),
                      root_dir="/var/lib/kubetrio/agent",
                      registries={"mirrors": {"docker.io": {"endpoint": ["http://127.0.0.1:5000"]}}})
    await nursery.start(agent.run)

``NodeAgent.read_logs`` serves ``pods/log`` for pods of this node.
"""

from ._agent import NodeAgent as NodeAgent
from ._worker import BackOff as BackOff
from ._worker import PodWorker as PodWorker

__all__ = ["BackOff", "NodeAgent", "PodWorker"]
