"""The pve-executor test rig: the real service in-process, requests the way
the gateway makes them, and readers for what it recorded.

Everything is real: nats-server (tests/conftest.py), the service's own
`bootstrap.main`, OpenSSH's sshd (tests/sshd.py) running the shipped forced
command (deploy/pve-host) over a fake `qm` (tests/fake_qm).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from msgspec.structs import replace

from eventbus import direct
from events import subjects
from events.codec import decode, decode_event, encode
from events.commands import RunVerb, VerbResult
from events.kinds import VerbProgressed
from eventbus.topology import Topology
from events.types import new_id, utcnow
from events.verbs import Verb
from pve_executor.bootstrap import main
from pve_executor.settings import Settings

from tests import sshd


def settings_for(nats_url: str, server: sshd.Sshd | None = None, **overrides: object) -> Settings:
    base = Settings(nats_url=nats_url, agent_socket=None, verb_timeout_seconds=20.0, poll_seconds=0.1)
    if server is not None:
        base = replace(
            base, pve_host=server.host, pve_port=server.port, pve_user=server.user,
            pve_key_file=str(server.client_key), pve_known_hosts=str(server.known_hosts_file),
        )
    return replace(base, **overrides)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def executor(settings: Settings, replicas: int = 1) -> AsyncIterator[None]:
    """pve-executor running in this event loop (`replicas` instances)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(main(stop, settings)) for _ in range(replicas)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


@dataclass
class Answer:
    command: RunVerb
    result: VerbResult
    seconds: float


async def request(
    nc, js, verb: Verb | str, *, by: str = "alice", session_id: str | None = None,  # type: ignore[no-untyped-def]
    idempotency_key: str | None = None, timeout: float = 30.0, age_seconds: float = 0.0, vmid: int | None = None,
) -> Answer:
    """What the gateway does: subscribe to the reply, publish the command, wait.
    `age_seconds` back-dates the command, as if it had waited on the queue."""
    command = RunVerb(by=by, request_id=new_id(), verb=verb, session_id=session_id,  # type: ignore[arg-type]
                      idempotency_key=idempotency_key, ts=utcnow() - timedelta(seconds=age_seconds), vmid=vmid)
    reply = await nc.subscribe(subjects.verb_reply(command.request_id), max_msgs=1)
    started = time.monotonic()
    try:
        await js.publish(subjects.VERB, encode(command))
        msg = await reply.next_msg(timeout=timeout)
    finally:
        with contextlib.suppress(Exception):
            await reply.unsubscribe()
    return Answer(command, decode(msg.data, VerbResult), time.monotonic() - started)


async def stored(js, filters: tuple[str, ...], topology: Topology = Topology()):  # type: ignore[no-untyped-def]
    """Every event stored on the `filters` (events.subjects), in order: by
    batched direct gets, as an auditor on the read-only user reads (it may
    create no consumer)."""
    events, seq = [], 1
    while True:
        got, more = await direct.get_batch_any(js._nc, topology.events_stream, seq=seq, filters=filters)
        events += [decode_event(g.data) for g in got]
        if not got or not more:
            return events
        seq = got[-1].seq + 1


async def audit_of(js, request_id: str) -> list[VerbProgressed]:  # type: ignore[no-untyped-def]
    return [e for e in await stored(js, subjects.audit_filters("verb")) if e.request_id == request_id]


async def session_of(js, session_id: str) -> list[VerbProgressed]:  # type: ignore[no-untyped-def]
    return await stored(js, subjects.session_filters(session_id))


@contextlib.contextmanager
def script_dir() -> Iterator[Path]:
    """A 0755 directory the sshd test account can read (tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="breakglass-executor-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def other_known_hosts(directory: Path, server: sshd.Sshd) -> Path:
    """A known_hosts file pinning a different key for the server's address."""
    other = sshd.keypair(directory / "other_host_key", "not-the-proxmox-host")
    path = directory / "known_hosts.other"
    path.write_text(sshd.known_hosts_line(server.host, server.port, other))
    return path
