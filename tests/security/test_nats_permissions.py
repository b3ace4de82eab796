"""Each NATS user can do its own job and nothing else (eventbus.access).

The matrix below is written out by hand, from what each service does, not
derived from eventbus.access: it is the intent the rendered configuration is
held to. Every probe is made against a real nats-server running that
configuration: a publish or subscribe the server refuses is reported as a
permissions violation (nats-py's error callback) before the PONG of the
following flush... usually: the server may send the refusal just after the
PONG, so a refusal is waited for (briefly), and an allowance is judged only
after a settling pause in which a late refusal would have arrived.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig

from eventbus import access
from events import subjects
from events.codec import decode, encode
from events.commands import RunVerb, StartTurn, VerbResult
from events.kinds import TextSaid, VerbPhase, VerbProgressed
from eventbus.log import EventLog
from eventbus.topology import EXECUTOR_CONSUMER, RUNNER_CONSUMER, Topology
from events.types import new_id
from eventbus.verb_requests import run_verb
from events.verbs import Verb

from tests.security.nats_rig import Secured, secured, secured_module  # noqa: F401 - fixtures

T = Topology()
EV, CMD, KV = T.events_stream, T.commands_stream, T.kv_stream
GW, RUN, EXE, READ, ADMIN = (access.GATEWAY, access.AGENT_RUNNER, access.PVE_EXECUTOR, access.READER, access.ADMIN)
ROLES = (GW, RUN, EXE, READ, ADMIN)
SERVICES = (GW, RUN, EXE)
NOBODY: frozenset[str] = frozenset()
SID, RID = new_id(), new_id()
API = "$JS.API"


def _ack(durable: str) -> str:
    return f"$JS.ACK.{CMD}.{durable}.1.1.1.1700000000000000000.0"


# subject -> the roles that may publish to it. Everything else: denied.
PUBLISH: dict[str, frozenset[str]] = {
    # commands: only the gateway starts turns; operator verbs come only from
    # the gateway, agent verbs only from agent-runner (the agent's verb tool):
    # pve-executor takes who asked from the subject
    subjects.PROMPT: frozenset({GW}),
    subjects.VERB: frozenset({GW}),
    subjects.AGENT_VERB: frozenset({RUN}),
    "breakglass.cmd.verb.other": NOBODY,
    "breakglass.cmd.other": NOBODY,
    # events: each service records under its own writer subject only (authorship);
    # the subjects of stores before per-writer subjects are read only; the reader never writes
    subjects.session_writer(SID, GW): frozenset({GW}),
    subjects.session_writer(SID, RUN): frozenset({RUN}),
    subjects.session_writer(SID, EXE): frozenset({EXE}),
    subjects.session_events(SID) + ".reader": NOBODY,
    subjects.session_events(SID): NOBODY,
    subjects.audit_writer("verb", GW): frozenset({GW}),
    subjects.audit_writer("verb", RUN): frozenset({RUN}),
    subjects.audit_writer("verb", EXE): frozenset({EXE}),
    subjects.audit("verb"): NOBODY,
    "breakglass.events.audit.other": NOBODY,
    "breakglass.events.other": NOBODY,
    subjects.live(SID): frozenset({RUN}),
    # control requests go from the gateway to the runner; verb results from the executor
    subjects.cancel(SID): frozenset({GW}),
    subjects.approval(SID): frozenset({GW}),
    subjects.warm(SID): frozenset({GW}),
    subjects.verb_reply(RID): frozenset({EXE}),
    # KV: each key family has its writers
    f"$KV.breakglass.sessions.{SID}": frozenset({GW}),
    f"$KV.breakglass.locks.{SID}": frozenset({GW, RUN}),
    "$KV.breakglass.verbs.abc123": frozenset({EXE}),
    "$KV.breakglass.vmlocks.102": frozenset({EXE}),
    "$KV.breakglass.reads.0": frozenset({EXE}),  # read-only verbs' leases
    # approval grants: minted only by the gateway, spent only by the executor
    f"$KV.breakglass.grants.{RID}": frozenset({GW}),
    f"$KV.breakglass.spent.{RID}": frozenset({EXE}),
    "$KV.breakglass.logins." + "ab" * 32: frozenset({GW}),  # browser logins: the gateway alone
    "$KV.breakglass.alerts.vm-devvm": frozenset({GW}),
    "$KV.breakglass.other.x": NOBODY,
    # nobody deletes or purges anything, admin included
    **{f"{API}.STREAM.DELETE.{s}": NOBODY for s in (EV, CMD, KV)},
    **{f"{API}.STREAM.PURGE.{s}": NOBODY for s in (EV, CMD, KV)},
    **{f"{API}.STREAM.MSG.DELETE.{s}": NOBODY for s in (EV, CMD, KV)},
    **{f"{API}.CONSUMER.DELETE.{CMD}.{d}": NOBODY for d in (RUNNER_CONSUMER, EXECUTOR_CONSUMER)},
    f"{API}.ACCOUNT.PURGE.$G": NOBODY,
    f"{API}.STREAM.SNAPSHOT.{EV}": NOBODY,
    # only admin shapes the topology
    **{f"{API}.STREAM.CREATE.{s}": frozenset({ADMIN}) for s in (EV, CMD, KV)},
    **{f"{API}.STREAM.UPDATE.{s}": frozenset({ADMIN}) for s in (EV, CMD, KV)},
    f"{API}.STREAM.CREATE.OTHER": NOBODY,
    **{f"{API}.CONSUMER.DURABLE.CREATE.{CMD}.{d}": frozenset({ADMIN}) for d in (RUNNER_CONSUMER, EXECUTOR_CONSUMER)},
    **{f"{API}.CONSUMER.CREATE.{CMD}.{d}.{f}": frozenset({ADMIN})
       for d, f in ((RUNNER_CONSUMER, subjects.PROMPT), (EXECUTOR_CONSUMER, subjects.VERB))},
    f"{API}.CONSUMER.CREATE.{CMD}": NOBODY,  # an ephemeral consumer on the work queue would steal commands
    f"{API}.CONSUMER.CREATE.{CMD}.thief.{subjects.VERB}": NOBODY,
    f"{API}.CONSUMER.DURABLE.CREATE.{CMD}.thief": NOBODY,
    # each worker pulls and acks only its own queue
    f"{API}.CONSUMER.MSG.NEXT.{CMD}.{EXECUTOR_CONSUMER}": frozenset({EXE}),
    f"{API}.CONSUMER.MSG.NEXT.{CMD}.{RUNNER_CONSUMER}": frozenset({RUN}),
    _ack(EXECUTOR_CONSUMER): frozenset({EXE}),
    _ack(RUNNER_CONSUMER): frozenset({RUN}),
    # the workers' start-up check reads both durables (and may not change them)
    f"{API}.CONSUMER.INFO.{CMD}.{EXECUTOR_CONSUMER}": frozenset({RUN, EXE, ADMIN}),
    f"{API}.CONSUMER.INFO.{CMD}.{RUNNER_CONSUMER}": frozenset({RUN, EXE, ADMIN}),
    f"{API}.CONSUMER.INFO.{CMD}.thief": NOBODY,
    # reading the audit log: the gateway's ordered consumers, and direct gets;
    # the reader may make NO consumer, of any kind (server state it could pile
    # up until the gateway finds no room): it follows the republished events
    f"{API}.CONSUMER.CREATE.{EV}": frozenset({GW}),
    f"{API}.CONSUMER.CREATE.{EV}.notifier.{subjects.EVENTS_ALL}": NOBODY,
    f"{API}.CONSUMER.CREATE.{EV}.notifier": NOBODY,
    f"{API}.CONSUMER.DURABLE.CREATE.{EV}.notifier": NOBODY,
    f"{API}.CONSUMER.INFO.{EV}.notifier": NOBODY,
    f"{API}.CONSUMER.MSG.NEXT.{EV}.notifier": NOBODY,
    f"$JS.ACK.{EV}.notifier.1.1.1.1700000000000000000.0": NOBODY,
    f"{API}.CONSUMER.DURABLE.CREATE.{KV}.watcher": NOBODY,
    f"{API}.CONSUMER.CREATE.{KV}.watcher.>": NOBODY,
    f"$JS.FC.{EV}.abc.1": frozenset({GW}),
    # only the server republishes stored events (followers trust them)
    subjects.stored(subjects.session_writer(SID, GW)): NOBODY,
    "breakglass.stored.x": NOBODY,
    f"{API}.DIRECT.GET.{EV}.{subjects.session_events(SID)}": frozenset({GW, RUN, EXE, READ}),
    f"{API}.STREAM.MSG.GET.{EV}": frozenset({READ}),
    f"{API}.STREAM.INFO.{EV}": frozenset({GW, RUN, EXE, READ, ADMIN}),
    f"{API}.STREAM.INFO.{CMD}": frozenset({GW, RUN, EXE, ADMIN}),
    # the KV bucket: get (all services, reader), list (a watcher: not the executor)
    f"{API}.STREAM.INFO.{KV}": frozenset({GW, RUN, EXE, READ, ADMIN}),
    f"{API}.STREAM.MSG.GET.{KV}": frozenset({GW, RUN, EXE, READ}),
    f"{API}.CONSUMER.CREATE.{KV}": frozenset({GW, RUN}),
    f"{API}.CONSUMER.INFO.{KV}.watcher": frozenset({GW, RUN}),
    f"{API}.STREAM.LIST": NOBODY,
    f"{API}.STREAM.NAMES": NOBODY,
    f"{API}.INFO": frozenset({ADMIN}),
    # nobody writes into anyone's inbox, nor anywhere else
    **{f"_INBOX.{r}.x.y": NOBODY for r in ROLES},
    "_INBOX.x": NOBODY,
    "anything.else": NOBODY,
    "$SYS.REQ.SERVER.PING": NOBODY,
}

# subject -> the roles that may subscribe to it.
SUBSCRIBE: dict[str, frozenset[str]] = {
    **{f"_INBOX.{r}.>": frozenset({r}) for r in ROLES},  # each role reads only its own replies
    **{f"_INBOX.{r}.abc.*": frozenset({r}) for r in ROLES},
    "_INBOX.>": NOBODY,
    ">": NOBODY,
    # nobody takes commands off the bus other than through its own consumer
    subjects.COMMANDS_ALL: NOBODY,
    subjects.PROMPT: NOBODY,
    subjects.VERB: NOBODY,
    # stored events once stored (the server's republish): the reader (integrators,
    # `breakglass tail`, eventbus.follow); raw publishes, stored or not: nobody
    subjects.STORED_ALL: frozenset({READ}),
    subjects.stored(subjects.session_filters(SID)[1]): frozenset({READ}),
    subjects.EVENTS_ALL: NOBODY,
    subjects.session_events(SID): NOBODY,
    subjects.live(SID): frozenset({GW}),
    subjects.LIVE_ALL: frozenset({GW}),
    subjects.cancel(SID): frozenset({RUN}),
    subjects.approval(SID): frozenset({RUN}),
    subjects.warm(SID): frozenset({RUN}),
    subjects.verb_reply(RID): frozenset({GW, RUN}),
    "$KV.breakglass.>": NOBODY,
    f"{API}.>": NOBODY,
    "$JS.ACK.>": NOBODY,
    f"$JS.ACK.{CMD}.{EXECUTOR_CONSUMER}.>": NOBODY,
    "$JS.FC.>": NOBODY,
}


class Violations:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def record(self, exc: Exception) -> None:
        self.seen.append(str(exc))

    def refused(self, verb: str, subject: str) -> bool:
        # nats-py lower-cases the server's message; no two probes differ only in case
        needle = f'permissions violation for {verb} to "{subject}"'.lower()
        return any(needle in s.lower() for s in self.seen)

    async def refuses(self, verb: str, subject: str, timeout: float = 2.0) -> bool:
        """Whether the refusal arrives (the server may send it after a PONG)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.refused(verb, subject):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


@asynccontextmanager
async def connect(secured: Secured, role: str):  # type: ignore[no-untyped-def]
    violations = Violations()
    nc = await nats.connect(
        secured.url(role), name=f"probe-{role}", error_cb=violations.record, allow_reconnect=False,
        inbox_prefix=access.inbox_prefix(role),
    )
    try:
        yield nc, violations
    finally:
        await nc.close()


SETTLE_SECONDS = 0.5


async def _verdicts(expected: dict[str, frozenset[str]], role: str, violations: Violations, verb: str) -> list[str]:
    await asyncio.sleep(SETTLE_SECONDS)  # late refusals of allowed probes arrive here
    wrong = []
    for subject, allowed in expected.items():
        if role in allowed and violations.refused(verb, subject):
            wrong.append(f"{role} was refused {subject}")
        elif role not in allowed and not await violations.refuses(verb, subject):
            wrong.append(f"{role} may {subject}")
    return wrong


@pytest.mark.parametrize("role", ROLES)
async def test_publish_matrix(secured_module: Secured, role: str) -> None:
    async with connect(secured_module, role) as (nc, violations):
        for subject in PUBLISH:
            await nc.publish(subject, b"{}")
            await nc.flush(timeout=5)
        wrong = await _verdicts(PUBLISH, role, violations, "Publish")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
async def test_subscribe_matrix(secured_module: Secured, role: str) -> None:
    async with connect(secured_module, role) as (nc, violations):
        for subject in SUBSCRIBE:
            sub = await nc.subscribe(subject)
            await nc.flush(timeout=5)
            await sub.unsubscribe()
        wrong = await _verdicts(SUBSCRIBE, role, violations, "Subscription")
    assert not wrong, "\n".join(wrong)


def test_the_matrix_names_every_subject_of_the_contract() -> None:
    """A subject added to events.subjects must be added to the matrix here."""
    families = {s.rsplit(".", 1)[0] for s in PUBLISH} | {s.rsplit(".", 1)[0] for s in SUBSCRIBE}
    for pattern in (subjects.SESSION_EVENTS_ALL, subjects.AUDIT_ALL, subjects.LIVE_ALL, subjects.CANCEL_ALL,
                    subjects.APPROVAL_ALL, subjects.WARM_ALL, subjects.VERB_REPLY_ALL):
        assert pattern.rsplit(".", 1)[0] in families, pattern
    assert {subjects.PROMPT, subjects.VERB, subjects.AGENT_VERB} <= set(PUBLISH)


# --- no credentials, wrong credentials ---------------------------------------------


async def test_no_credentials_no_connection(secured: Secured) -> None:
    """What the agent's shell has: no user, so not even a connection."""
    with pytest.raises(Exception) as caught:
        await nats.connect(secured.anonymous, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    assert "authorization" in str(caught.value).lower() or "no servers" in str(caught.value).lower()


@pytest.mark.parametrize("role", SERVICES)
async def test_a_wrong_password_no_connection(secured: Secured, role: str) -> None:
    other = next(r for r in ROLES if r != role)
    url = secured.url(role).replace(secured.passwords[role], secured.passwords[other])
    with pytest.raises(Exception):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)


# --- the same refusals through the client API a thief would use -------------------


async def _denied(coro, violations: Violations, verb: str, subject: str) -> None:  # type: ignore[no-untyped-def]
    """The call gets no answer (the server dropped the request) and the
    refusal names the subject."""
    with pytest.raises((NatsTimeoutError, asyncio.TimeoutError)):
        await coro
    assert await violations.refuses(verb, subject), violations.seen


async def test_the_reader_cannot_publish_into_a_stream(secured: Secured) -> None:
    command = RunVerb(by="mallory", request_id=new_id(), verb=Verb.RESET)
    async with connect(secured, READ) as (nc, violations):
        js = nc.jetstream(timeout=0.3)
        await _denied(js.publish(subjects.VERB, encode(command)), violations, "Publish", subjects.VERB)
        event = subjects.session_events(SID)
        await _denied(js.publish(event, encode(TextSaid(session_id=SID, by="mallory", text="forged"))),
                      violations, "Publish", event)
        kv = await js.key_value(T.kv_bucket)
        await _denied(kv.put(f"sessions.{SID}", b"{}"), violations, "Publish", f"$KV.breakglass.sessions.{SID}")
    async with connect(secured, ADMIN) as (nc, _):
        assert (await nc.jetstream().stream_info(CMD)).state.messages == 0


@pytest.mark.parametrize("role", ROLES)
async def test_nobody_deletes_or_purges_a_stream(secured: Secured, role: str) -> None:
    async with connect(secured, role) as (nc, violations):
        js = nc.jetstream(timeout=0.3)
        for stream in (EV, CMD, KV):
            await _denied(js.delete_stream(stream), violations, "Publish", f"{API}.STREAM.DELETE.{stream}")
            await _denied(js.purge_stream(stream), violations, "Publish", f"{API}.STREAM.PURGE.{stream}")
    async with connect(secured, ADMIN) as (nc, _):
        for stream in (EV, CMD, KV):
            await nc.jetstream().stream_info(stream)  # all still there


@pytest.mark.parametrize("role", (GW, RUN, READ))
async def test_only_the_executor_pulls_verb_commands(secured: Secured, role: str) -> None:
    async with connect(secured, GW) as (nc, _):
        await nc.jetstream().publish(subjects.VERB, encode(RunVerb(by="alice", request_id=new_id(), verb=Verb.STATUS)))
    async with connect(secured, role) as (nc, violations):
        js = nc.jetstream(timeout=0.3)
        sub = await js.pull_subscribe_bind(EXECUTOR_CONSUMER, stream=CMD)
        with pytest.raises((NatsTimeoutError, asyncio.TimeoutError)):
            await sub.fetch(1, timeout=1)
        assert await violations.refuses("Publish", f"{API}.CONSUMER.MSG.NEXT.{CMD}.{EXECUTOR_CONSUMER}")
        # nor with a consumer of its own on the work queue (ephemeral, or a durable of another name)
        await _denied(js.add_consumer(CMD, ConsumerConfig(filter_subject=subjects.VERB)),
                      violations, "Publish", f"{API}.CONSUMER.CREATE.{CMD}")
        await _denied(js.add_consumer(CMD, ConsumerConfig(durable_name="thief", filter_subject=subjects.VERB)),
                      violations, "Publish", f"{API}.CONSUMER.DURABLE.CREATE.{CMD}.thief")
    async with connect(secured, ADMIN) as (nc, _):
        assert (await nc.jetstream().stream_info(CMD)).state.messages == 1  # still queued for the executor


@pytest.mark.parametrize("role", (GW, EXE, READ))
async def test_only_the_runner_pulls_prompts(secured: Secured, role: str) -> None:
    async with connect(secured, role) as (nc, violations):
        sub = await nc.jetstream(timeout=0.3).pull_subscribe_bind(RUNNER_CONSUMER, stream=CMD)
        with pytest.raises((NatsTimeoutError, asyncio.TimeoutError)):
            await sub.fetch(1, timeout=1)
        assert await violations.refuses("Publish", f"{API}.CONSUMER.MSG.NEXT.{CMD}.{RUNNER_CONSUMER}")


@pytest.mark.parametrize("role", (EXE, READ))
async def test_only_gateway_and_runner_ask_for_verbs(secured: Secured, role: str) -> None:
    async with connect(secured, role) as (nc, violations):
        command = RunVerb(by="mallory", request_id=new_id(), verb=Verb.CYCLE)
        await _denied(nc.jetstream(timeout=0.3).publish(subjects.VERB, encode(command)),
                      violations, "Publish", subjects.VERB)


@pytest.mark.parametrize("role", (RUN, EXE, READ))
async def test_only_the_gateway_starts_turns(secured: Secured, role: str) -> None:
    async with connect(secured, role) as (nc, violations):
        command = StartTurn(by="mallory", session_id=SID, turn_id=new_id(), prompt="rm -rf /", model="sonnet")
        await _denied(nc.jetstream(timeout=0.3).publish(subjects.PROMPT, encode(command)),
                      violations, "Publish", subjects.PROMPT)


async def test_a_service_cannot_read_another_s_replies(secured: Secured) -> None:
    """The executor's JetStream answers go to its own inbox, which no other
    role may subscribe to, not even with a wildcard."""
    for role in (GW, RUN, READ):
        async with connect(secured, role) as (nc, violations):
            for subject in ("_INBOX.pve-executor.>", "_INBOX.*.>", "_INBOX.>"):
                await nc.subscribe(subject)
                await nc.flush()
                assert await violations.refuses("Subscription", subject), (role, subject)


async def test_the_runner_may_answer_a_request_once_but_not_write_into_inboxes(secured: Secured) -> None:
    """allow_responses: agent-runner answers the gateway's cancel request on
    its reply subject, once; it has no standing right to the gateway's inbox."""
    async with connect(secured, RUN) as (runner, runner_violations), connect(secured, GW) as (gateway, _):
        async def answer(msg) -> None:  # type: ignore[no-untyped-def]
            await runner.publish(msg.reply, b'{"cancelled": true}')
            await runner.publish(msg.reply, b'{"cancelled": "twice"}')  # a second answer is refused

        await runner.subscribe(subjects.CANCEL_ALL, cb=answer)
        await runner.flush()
        replies = await gateway.subscribe(f"{access.inbox_prefix(GW)}.probe")
        await gateway.flush()
        for _ in range(5):
            await gateway.publish(subjects.cancel(SID), b"{}", reply=f"{access.inbox_prefix(GW)}.probe")
            first = await replies.next_msg(timeout=3)
            if (first.headers or {}).get("Status") != "503":
                break
            await asyncio.sleep(0.2)  # "no responders": the runner's interest had not reached the server yet
        assert first.data == b'{"cancelled": true}'
        with pytest.raises(NatsTimeoutError):
            await replies.next_msg(timeout=0.5)
        await runner.publish(f"{access.inbox_prefix(GW)}.probe", b"unasked")
        await runner.flush()
        assert await runner_violations.refuses("Publish", f"{access.inbox_prefix(GW)}.probe")
        with pytest.raises(NatsTimeoutError):
            await replies.next_msg(timeout=0.5)


# --- each role can do its job -------------------------------------------------------


async def test_the_reader_replays_what_the_services_recorded(secured: Secured) -> None:
    sid = new_id()
    async with connect(secured, RUN) as (nc, violations):
        log = EventLog(nc.jetstream(), T, writer=RUN)
        seqs = [await log.append(TextSaid(session_id=sid, by="agent", text=f"line {i}")) for i in range(3)]
    async with connect(secured, READ) as (nc, reader_violations):
        records = await EventLog(nc.jetstream(), T).read(sid)
        assert [r.seq for r in records] == seqs
        await asyncio.sleep(SETTLE_SECONDS)
    assert violations.seen == reader_violations.seen == []


async def test_a_stored_event_pointed_at_a_reply_subject_is_not_taken_for_the_answer(secured: Secured) -> None:
    """What permissions cannot stop (nats-io/nats-server#8274): a user that
    may create consumers on the events stream (only the gateway now; another
    connection of it, say a compromised one, plays the attacker) points one at
    a pending verb request's reply subject, so the server re-sends a stored
    `done` event there, which decodes as a result. The requester ignores
    what a JetStream consumer delivered and takes pve-executor's answer."""
    async with connect(secured, EXE) as (nc, _):
        stored = VerbProgressed(by="pve-executor", verb=Verb.RESET, phase=VerbPhase.DONE, request_id=new_id(),
                                exit_code=0, stdout="an old reset", stderr="")
        await EventLog(nc.jetstream(), T, writer=EXE).append_audit("verb", stored)
    assert decode(encode(stored), VerbResult).stdout == "an old reset"  # the threat is real

    command = RunVerb(by="alice", request_id=new_id(), verb=Verb.RESET)
    config = {"deliver_subject": subjects.verb_reply(command.request_id), "ack_policy": "none",
              "filter_subject": subjects.audit_writer("verb", EXE)}
    async with connect(secured, GW) as (gw, _), connect(secured, GW) as (attacker, _), \
            connect(secured, EXE) as (executor, _):
        async def attack_then_answer() -> None:
            await asyncio.sleep(0.3)  # the requester listens by now
            created = await attacker.request(f"{API}.CONSUMER.CREATE.{EV}",
                                           json.dumps({"stream_name": EV, "config": config}).encode(), timeout=3)
            assert "error" not in json.loads(created.data)
            await asyncio.sleep(0.5)
            await executor.publish(subjects.verb_reply(command.request_id),
                                   encode(VerbResult(verb=Verb.RESET, exit_code=0, stdout="the real reset")))

        answering = asyncio.create_task(attack_then_answer())
        result = await run_verb(gw, gw.jetstream(), command, wait_seconds=10)
        await answering
    assert result.stdout == "the real reset"
