"""`python -m bench.push [--runs N] [--keep]`: Web Push figures. Not part of
`python -m bench` (it needs a push service of its own).

Figures (median and p95 over the runs):
- event stored -> push request received: an `approval` event appended to
  the events stream (the moment a core subscriber on the session subjects
  sees it stored) until the gateway's encrypted POST reaches a push service
  on loopback. Baseline, same event: until an attached SSE client of the
  same gateway parses its frame (what the open page gets).
- notification action -> verb command published: from the service
  worker's `POST /api/push/decision` (the push's grant) until the agent's
  RunVerb is on the commands stream. Baseline, alternated with it: the
  page's own Approve (`POST /api/session/.../approval/...`, bearer).

Rig: a fresh nats-server and the gateway as its own process. The runner
that holds the approval is a stand-in in this process (it answers the
approval request and publishes the RunVerb as agent-runner's verb tool
does), so the figure is the gateway's path: grant spent (compare-and-set),
the approval found in the session, the executor's grant stored, the runner
asked, the decision recorded. The push service decrypts each push (RFC
8291, with `cryptography`) to read the grant, as the browser would.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

import httpx
import nats
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from events import subjects
from events.codec import decode_command, encode
from events.commands import ApprovalReply, RunVerb
from events.kinds import ApprovalRequested
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import Topology
from events.verbs import Verb

from .rig import AUTH, Rig
from .sse import SSE
from . import standalone
from .standalone import figure, summary


def b64u(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class PushService:
    """Loopback push endpoint: notes when each push arrives and decrypts it."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.port = 0
        self.arrivals: asyncio.Queue[tuple[int, dict]] = asyncio.Queue()

    @property
    def public(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def subscription(self) -> dict:
        return {"endpoint": f"http://127.0.0.1:{self.port}/push/bench",
                "keys": {"p256dh": b64u(self.public), "auth": b64u(self.auth)}}

    def decrypt(self, body: bytes) -> dict:
        salt, idlen = body[:16], body[20]
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), body[21:21 + idlen])
        mac = lambda k, d: hmac.new(k, d, hashlib.sha256).digest()  # noqa: E731
        ikm = mac(mac(self.auth, self.key.exchange(ec.ECDH(), sender)),
                  b"WebPush: info\x00" + self.public + body[21:21 + idlen] + b"\x01")
        prk = mac(salt, ikm)
        plain = AESGCM(mac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]).decrypt(
            mac(prk, b"Content-Encoding: nonce\x00\x01")[:12], body[21 + idlen:], None)
        return json.loads(plain.rstrip(b"\x00")[:-1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._writers: set[asyncio.StreamWriter] = set()

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                at = time.monotonic_ns()
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                await self.arrivals.put((at, self.decrypt(body)))
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


class StandInRunner:
    """Answers approval requests as the turn's runner does, publishing the
    approved verb first (agent-runner's verb tool, `eventbus.verb_requests`)."""

    def __init__(self, nc, js) -> None:  # type: ignore[no-untyped-def]
        self.nc, self.js = nc, js
        self.pending: dict[str, ApprovalRequested] = {}

    async def on(self, msg) -> None:  # type: ignore[no-untyped-def]
        command = decode_command(msg.data)
        asked = self.pending.pop(command.approval_id, None)
        if asked is not None and command.approved:
            verb = RunVerb(by="agent", origin="agent", request_id=asked.request_id, verb=asked.verb,
                           session_id=asked.session_id, approval_id=asked.approval_id)
            await self.js.publish(subjects.AGENT_VERB, encode(verb), headers={"Nats-Msg-Id": asked.request_id})
        await msg.respond(encode(ApprovalReply(accepted=asked is not None)))


async def measure(rig: Rig, runs: int) -> dict:
    gw = await asyncio.to_thread(rig.start_gateway, BREAKGLASS_PUSH_ALLOW_HTTP="1",
                                 BREAKGLASS_DATA_DIR=str(rig.tmp / "gw"))
    push = PushService()
    await push.start()
    nc = await nats.connect(rig.url)
    js = nc.jetstream()
    stored: dict[str, int] = {}
    published: dict[str, int] = {}

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        at = time.monotonic_ns()
        body = json.loads(msg.data)
        if body.get("kind") == "approval":
            stored.setdefault(body["approval_id"], at)

    async def on_verb(msg) -> None:  # type: ignore[no-untyped-def]
        published.setdefault(json.loads(msg.data)["request_id"], time.monotonic_ns())

    runner = StandInRunner(nc, js)
    await nc.subscribe(subjects.SESSION_EVENTS_EVERY, cb=on_event)
    await nc.subscribe(subjects.AGENT_VERB, cb=on_verb)
    await nc.subscribe(subjects.APPROVAL_ALL, cb=runner.on)
    log = EventLog(js, writer="agent-runner")
    kv = await js.key_value(Topology().kv_bucket)
    to_push, to_sse, by_action, by_page = [], [], [], []
    async with httpx.AsyncClient(base_url=gw.base, headers=AUTH, timeout=30) as client, \
            httpx.AsyncClient(base_url=gw.base, timeout=30) as worker:
        deadline = time.monotonic() + 20
        while (await client.post("/api/push/subscription", json=push.subscription())).status_code != 201:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway's push sender did not start")
            await asyncio.sleep(0.1)
        sid = (await client.post("/api/session")).json()["session_id"]
        turn_id = str(uuid.uuid4())
        assert await TurnLocks(kv, log).take(sid, turn_id, "operator")
        sse = await SSE.open("127.0.0.1", gw.port, f"/api/session/{sid}/stream", AUTH)
        frames = sse.frames()

        async def one(by_push: bool) -> tuple[float, float, float]:
            asked = ApprovalRequested(session_id=sid, turn_id=turn_id, by="agent", approval_id=str(uuid.uuid4()),
                                      verb=Verb.CYCLE, request_id=str(uuid.uuid4()))
            runner.pending[asked.approval_id] = asked
            await log.append(asked)
            while True:  # the same event on the open stream
                frame = await asyncio.wait_for(frames.__anext__(), 10)
                if frame.data and json.loads(frame.data).get("approval_id") == asked.approval_id:
                    seen = time.monotonic_ns()
                    break
            arrived, payload = await asyncio.wait_for(push.arrivals.get(), 10)
            assert payload["id"] == asked.approval_id, payload
            t0 = time.monotonic_ns()
            if by_push:
                answer = await worker.post("/api/push/decision", json={"approve": True},
                                           headers={"X-Breakglass-Push-Grant": payload["grant"]})
            else:
                answer = await client.post(f"/api/session/{sid}/approval/{asked.approval_id}", json={"approve": True})
            assert answer.status_code == 200 and answer.json()["accepted"], answer.text
            while asked.request_id not in published:
                await asyncio.sleep(0.001)
            start = stored[asked.approval_id]
            return (arrived - start) / 1e6, (seen - start) / 1e6, (published[asked.request_id] - t0) / 1e6

        await one(True)  # warm-up
        await one(False)
        for n in range(runs):
            a, b, c = await one(True)
            _, _, d = await one(False)
            to_push.append(a)
            to_sse.append(b)
            by_action.append(c)
            by_page.append(d)
            print(f"  run {n + 1}/{runs}: stored->push {a:.1f} ms (SSE {b:.1f} ms); "
                  f"action->verb {c:.1f} ms (page {d:.1f} ms)", flush=True)
        sse.close()
    await push.stop()
    await nc.close()
    return {"push": summary(to_push), "sse": summary(to_sse), "action": summary(by_action),
            "page": summary(by_page)}


def report(result: dict) -> None:
    p, s, a, g = result["push"], result["sse"], result["action"], result["page"]
    print(f"event stored -> push request received: {figure(p, 1)} (goal p95 <= 500 ms); "
          f"baseline, SSE frame parsed: {figure(s, 1)}")
    print(f"notification action -> verb command published: {figure(a, 1)} (goal p95 <= 300 ms); "
          f"baseline, the page's Approve: {figure(g, 1)}")


if __name__ == "__main__":
    sys.exit(standalone.main("push", 50, measure, report))
