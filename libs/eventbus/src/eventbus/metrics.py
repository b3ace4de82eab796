"""Prometheus metrics every service has, and the workers' metrics endpoint.

Each service is one process with the default registry, so no multiprocess
mode. Names carry the `breakglass_` prefix and their unit; label values come
from small fixed sets (a durable's name, an outcome), never from a session,
turn or request id: those are unbounded, and they belong in the event log,
which is where an operator goes from a metric to the session behind it.

Nothing here ever takes a setting's value as a label: the worst a scrape can
show is a count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, start_http_server

PREFIX = "breakglass_"

NATS_CONNECTED = Gauge(
    f"{PREFIX}nats_connected", "1 while this process is connected to NATS, else 0 (never connected, away, closed)."
)
NATS_DISCONNECTS = Counter(f"{PREFIX}nats_disconnects", "Times this process lost its NATS connection.")
COMMANDS_REDELIVERED = Counter(
    f"{PREFIX}commands_redelivered",
    "Commands fetched again after an earlier delivery (its ack was lost, or a worker died before acking).",
    ["consumer"],
)
COMMANDS_TERMINATED = Counter(
    f"{PREFIX}commands_terminated",
    "Poison commands terminated without running: undecodable, or of a type this worker does not handle.",
    ["consumer"],
)
LEASES_LAPSED = Counter(
    f"{PREFIX}turn_leases_lapsed",
    "Turns ended as `interrupted` because their runner's lease lapsed (the runner died or hung).",
)

log = logging.getLogger("eventbus.metrics")


@contextmanager
def serving(host: str, port: int) -> Iterator[int | None]:
    """Serve the default registry on `host:port` (`GET /metrics`) while in
    the block; port 0 = off. Yields the port, or None when off.

    A thread, not the event loop: a scrape must answer even while the loop
    is busy or wedged, which is when the numbers matter. A busy port raises
    OSError, which stops the service with one line (eventbus.service.run).
    """
    if port == 0:
        yield None
        return
    server, _ = start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
