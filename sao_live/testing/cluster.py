"""A Ray cluster on this one machine, made with Ray's own test utilities (`ray.cluster_utils`).

A head node with no CPUs (it holds no actor, as a performer's laptop that joins a cluster would
not) and worker nodes added and removed at will, each a raylet of its own with its own
resources. The head runs a Ray client server, so `ray://` addresses work too. Small object
stores and no dashboard: three raylets on a 2-core machine are heavy enough.
"""

from __future__ import annotations

import socket

from ..daemon.preflight import free_port

OBJECT_STORE = 80 * 2**20  # bytes per node: clips of a few MB pass through it


class LocalCluster:
    def __init__(self, nodes: int = 2, cpus: int = 1):
        from ray.cluster_utils import Cluster

        self.client_port = free_port(kind=socket.SOCK_STREAM)
        head = dict(num_cpus=0, include_dashboard=False, object_store_memory=OBJECT_STORE,
                    ray_client_server_port=self.client_port)  # fmt: skip
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self.nodes = []
        for _ in range(nodes):
            self.add_node(cpus)

    @property
    def address(self) -> str:
        """The cluster's GCS address, for RAY_ADDRESS (a driver on this machine joins it with `--pool ray`)."""
        return self.cluster.address

    @property
    def client_address(self) -> str:
        """`ray://HOST:PORT` of the head's client server (`--pool ray://...`)."""
        return f"ray://{self.cluster.address.split(':')[0]}:{self.client_port}"

    def add_node(self, cpus: int = 1):
        node = self.cluster.add_node(num_cpus=cpus, object_store_memory=OBJECT_STORE)
        self.cluster.wait_for_nodes()
        self.nodes.append(node)
        return node

    def node(self, node_id_prefix: str):
        """The worker node whose Ray node id starts with `node_id_prefix` (an actor's node names it)."""
        return next(n for n in self.nodes if n.node_id.startswith(node_id_prefix))

    def kill_node(self, node) -> None:
        """Kills the node's processes at once (raylet, object store, its actors): no graceful exit."""
        self.nodes.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def shutdown(self) -> None:
        self.cluster.shutdown()
