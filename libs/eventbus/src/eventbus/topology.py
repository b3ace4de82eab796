"""The JetStream topology: streams, the KV bucket and durable consumers.

- Events stream: the audit log (SPEC §8). File storage, message deletes and
  purges denied, retention configurable (default 400 days).
- Commands stream: a work queue. A command is removed once a consumer acks
  it; `duplicate_window` gives `Nats-Msg-Id` de-duplication, which is how a
  retried verb press with the same idempotency key is published only once.
- KV bucket: session records (`sessions.<id>`) and turn locks (`locks.<id>`),
  updated with compare-and-set so replicas can never start two turns.

`ensure` is idempotent: it creates what is missing and updates what drifted,
so every service can call it at start-up and `breakglass up` calls it once.
It reads before it writes: with per-service NATS users (eventbus.access) only
the admin user may create or change the topology, and a service's `ensure`
is then a check that everything is as this version expects.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamConsumerLimits,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from events import subjects
from events.config import Env

DAY = 86_400.0


@dataclass(frozen=True)
class Topology:
    events_stream: str = "BREAKGLASS_EVENTS"
    commands_stream: str = "BREAKGLASS_COMMANDS"
    kv_bucket: str = "breakglass"
    retention_days: float = 400.0
    replicas: int = 1
    #: How long a published command may wait for a consumer before expiring.
    command_max_age: float = DAY
    #: Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate.
    duplicate_window: float = 600.0
    #: Every consumer of the events stream, durable ones included, is removed
    #: by the server after this long without a reader. Only the services may
    #: create consumers there (eventbus.access: the `reader` user may not), so
    #: this is hygiene: a consumer a crashed service left goes away.
    events_consumer_idle: float = 3600.0

    @property
    def kv_stream(self) -> str:
        """The stream behind the KV bucket (named by the NATS KV convention)."""
        return f"KV_{self.kv_bucket}"

    @property
    def kv_subjects(self) -> str:
        """The prefix of the KV bucket's subjects: a key `k` is `<prefix>.k`."""
        return f"$KV.{self.kv_bucket}"

    @classmethod
    def from_env(cls, env: Env | None = None) -> "Topology":
        """Every process that calls `ensure` must agree on these, so they come
        from the same variables everywhere (BREAKGLASS_RETENTION_DAYS,
        BREAKGLASS_NATS_REPLICAS)."""
        env = env or Env()
        return cls(
            retention_days=env.float("RETENTION_DAYS", 400.0, minimum=1.0),
            replicas=env.int("NATS_REPLICAS", 1, minimum=1, maximum=5),
        )


RUNNER_CONSUMER = "agent-runner"
EXECUTOR_CONSUMER = "pve-executor"


#: See events_stream_config.
EVENTS_MAX_CONSUMERS = 1000


def events_stream_config(t: Topology) -> StreamConfig:
    return StreamConfig(
        name=t.events_stream,
        description="breakglass events: the audit log of every session",
        subjects=[subjects.EVENTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=t.retention_days * DAY,
        discard=DiscardPolicy.OLD,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        # The recorder's pipelined appends are JetStream atomic batches
        # (eventbus.log.Appender; nats-server 2.12+).
        allow_atomic=True,
        # Set, not left to the server's default (1,000 on 2.15, unlimited on
        # older ones), so every server behaves the same. Nothing here takes
        # a consumer per client, per session or per listing (reads are direct
        # gets, see eventbus.direct), and only the services may create one
        # (eventbus.access): one firehose per gateway process (gateway.hub), a
        # few short-lived ones for long replays and alert triage. Readers
        # (the CLI, integrators) follow the republished events instead
        # (eventbus.follow), which costs the server nothing per reader. A cap
        # far above that turns a leak into an error, not unbounded state.
        max_consumers=EVENTS_MAX_CONSUMERS,
        # Each event again on `breakglass.stored.<rest>` once stored, with its
        # sequence: core NATS, no server state per reader (eventbus.follow).
        republish=RePublish(src=subjects.EVENTS_ALL, dest=subjects.STORED_ALL),
        duplicate_window=120.0,
        num_replicas=t.replicas,
        consumer_limits=StreamConsumerLimits(inactive_threshold=t.events_consumer_idle),
    )


def commands_stream_config(t: Topology) -> StreamConfig:
    return StreamConfig(
        name=t.commands_stream,
        description="breakglass commands: a work queue for runners and the executor",
        subjects=[subjects.COMMANDS_ALL],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=t.command_max_age,
        duplicate_window=t.duplicate_window,
        num_replicas=t.replicas,
    )


def kv_config(t: Topology) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=t.kv_bucket,
        description="breakglass sessions and turn locks",
        history=5,
        storage=StorageType.FILE,
        replicas=t.replicas,
        # Direct gets: the sessions listing reads a page of session records
        # by batched direct gets, without a consumer (eventbus.index).
        direct=True,
    )


def consumer_config(durable: str, filter_subject: str) -> ConsumerConfig:
    """A durable pull consumer on the commands work queue.

    `max_deliver` bounds redelivery of a message whose handler keeps dying;
    messages that do not decode are terminated on first sight instead.
    """
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30.0,
        max_deliver=5,
        max_ack_pending=1000,
    )


CONSUMERS: dict[str, str] = {
    RUNNER_CONSUMER: subjects.PROMPT,
    EXECUTOR_CONSUMER: subjects.VERB_ALL,
}


class TopologyError(RuntimeError):
    """The topology is missing or out of date and this connection could not
    fix it; the message says what and why."""


def _drifted(want: dict, have: dict) -> list[str]:
    """The settings of `want` (what this version asks for) that `have` (what
    the server holds) does not match. Only what we set is compared: the
    server fills in defaults of its own."""
    return sorted(key for key, value in want.items() if have.get(key) != value)


async def _write(what: str, write) -> None:  # type: ignore[no-untyped-def]
    """Create or update `what`. A NATS user without the right (every service
    but the admin user, see eventbus.access) gets no answer at all: the server
    drops the request, so a timeout here is most likely that."""
    try:
        await write()
    except (NatsTimeoutError, asyncio.TimeoutError):
        raise TopologyError(
            f"{what}: the server did not answer the change; if this NATS user may not create or update the "
            "topology (only the admin user may), set it up first: `breakglass up` does, or `breakglass setup` "
            "with the admin user's URL"
        ) from None


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        info = await js.stream_info(config.name)  # type: ignore[arg-type]
    except NotFoundError:
        await _write(f"stream {config.name} is missing", lambda: js.add_stream(config))
        return
    drift = _drifted(config.as_dict(), info.config.as_dict())
    if drift:
        await _write(f"stream {config.name} differs ({', '.join(drift)})", lambda: js.update_stream(config))


async def _ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    durable = config.durable_name
    try:
        info = await js.consumer_info(stream, durable)  # type: ignore[arg-type]
    except NotFoundError:
        await _write(f"consumer {durable} is missing", lambda: js.add_consumer(stream, config))
        return
    drift = _drifted(config.as_dict(), info.config.as_dict())
    if drift:
        await _write(f"consumer {durable} differs ({', '.join(drift)})", lambda: js.add_consumer(stream, config))


async def ensure(js: JetStreamContext, t: Topology = Topology()) -> KeyValue:
    """Create or update every stream, the KV bucket and the durable consumers.

    Reads first and writes only what is missing or differs, so a service
    whose NATS user may only read the topology (eventbus.access) passes
    through here untouched once the admin user has set it up."""
    await _ensure_stream(js, events_stream_config(t))
    await _ensure_stream(js, commands_stream_config(t))
    for durable in CONSUMERS:
        await _ensure_consumer(js, t.commands_stream, consumer_config(durable, CONSUMERS[durable]))
    try:
        await js.key_value(t.kv_bucket)
        info = await js.stream_info(t.kv_stream)
        if not info.config.allow_direct:  # made before direct gets were used: add them
            info.config.allow_direct = True
            await _write(f"KV bucket {t.kv_bucket} differs (allow_direct)", lambda: js.update_stream(info.config))
        return await js.key_value(t.kv_bucket)
    except BucketNotFoundError:
        kv: KeyValue | None = None

        async def create() -> None:
            nonlocal kv
            kv = await js.create_key_value(kv_config(t))

        await _write(f"KV bucket {t.kv_bucket} is missing", create)
        assert kv is not None
        return kv


async def check(js: JetStreamContext, t: Topology = Topology()) -> str | None:
    """None when the topology is present, else why not (for `/ready`)."""
    for name in (t.events_stream, t.commands_stream):
        try:
            await js.stream_info(name)
        except NotFoundError:
            return f"stream {name} is missing"
    try:
        await js.key_value(t.kv_bucket)
    except BucketNotFoundError:
        return f"KV bucket {t.kv_bucket} is missing"
    return None


#: How long the server keeps a KV listing's consumer once its reader is gone.
KV_LISTING_INACTIVE_SECONDS = 2.0


async def kv_keys(kv: KeyValue, pattern: str = ">") -> list[str]:
    """The bucket's live keys matching `pattern` (e.g. `locks.*`; deleted
    ones left out), [] when none.

    Use this, not `kv.keys()`: nats-py's watcher behind `keys()` leaves its
    ordered consumer on the server for 5 minutes after it is done, and a
    stream holds at most 1,000 consumers (nats-server's default), so about a
    thousand listings within 5 minutes (GET /api/sessions, the reaper) made
    every further one fail. Here the server removes it 2 s after."""
    watcher = await kv.watch(pattern, ignore_deletes=True, meta_only=True,
                             inactive_threshold=KV_LISTING_INACTIVE_SECONDS)
    keys: list[str] = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of the initial values
                break
            keys.append(entry.key)
    finally:
        await watcher.stop()
    return keys


#: The KV key families: each key is `<family>.<one token>`, and each family
#: has its own writers (eventbus.access gives each service only its own).
SESSION_KEYS = "sessions"
LOCK_KEYS = "locks"
VERB_KEYS = "verbs"
VM_LOCK_KEYS = "vmlocks"
#: Leases of running read-only verbs (`status`, `forensics`): a bounded set
#: of slots, so a dead executor's read is found (and ended) without listing.
READ_LEASE_KEYS = "reads"
READ_LEASE_SLOTS = 8
#: Approval grants: written only by the gateway (the operator's Approve),
#: read and redeemed by pve-executor, which marks each spent once.
GRANT_KEYS = "grants"
SPENT_KEYS = "spent"
#: Browser logins (gateway only): `logins.<sha256 of the cookie's login id>`.
LOGIN_KEYS = "logins"
#: The alert receiver's state: alert groups and per-VM triage windows.
ALERT_KEYS = "alerts"
#: Web Push (gateway only, gateway.push): the browsers' subscriptions, one
#: claim per pushed event (so one of several gateways sends it), and the
#: single-use decision grants a notification's Approve/Deny carries.
PUSH_SUB_KEYS = "pushsubs"
PUSH_CLAIM_KEYS = "pushsent"
PUSH_GRANT_KEYS = "pushgrants"
#: Operators' passkeys (gateway only): `passkeys.<sha256 of the user name>`.
PASSKEY_KEYS = "passkeys"
#: Step-up challenges (gateway only), single use: `stepups.<sha256 of the challenge>`.
STEPUP_KEYS = "stepups"
#: Decisions on an operator's two-person press (gateway only), created
#: once: `decisions.<approval_id>`, so the first Approve/Deny wins.
DECISION_KEYS = "decisions"
#: Observer links (gateway only): `observers.<link id>`, the id a hash of the link's secret.
OBSERVER_KEYS = "observers"


def session_key(session_id: str) -> str:
    subjects.session_events(session_id)  # validates the id
    return f"{SESSION_KEYS}.{session_id}"


def lock_key(session_id: str) -> str:
    subjects.session_events(session_id)
    return f"{LOCK_KEYS}.{session_id}"


def verb_key(idempotency_key: str) -> str:
    """KV key of a verb request. Hashed: client keys may hold characters KV
    keys cannot, and two different keys must never share a record."""
    return f"{VERB_KEYS}.{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


def vm_lock_key(vmid: int) -> str:
    """KV key held while a mutating verb runs on a VM (one at a time)."""
    return f"{VM_LOCK_KEYS}.{int(vmid)}"


def read_lease_key(slot: int) -> str:
    """KV key of one read-only verb's lease slot (0 <= slot < READ_LEASE_SLOTS)."""
    if not 0 <= int(slot) < READ_LEASE_SLOTS:
        raise ValueError(f"no read lease slot {slot!r}")
    return f"{READ_LEASE_KEYS}.{int(slot)}"


def grant_key(approval_id: str) -> str:
    """KV key of the operator's grant for one approval (gateway-written)."""
    subjects.verb_reply(approval_id)  # validates the id
    return f"{GRANT_KEYS}.{approval_id}"


def spent_key(approval_id: str) -> str:
    """KV key pve-executor creates when it redeems a grant: a second
    redemption of the same grant finds it and is refused (no replay)."""
    subjects.verb_reply(approval_id)
    return f"{SPENT_KEYS}.{approval_id}"


def login_key(digest: str) -> str:
    """KV key of a browser login, by the hex SHA-256 of its id (gateway.logins)."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("a login key is a lower-case hex SHA-256")
    return f"{LOGIN_KEYS}.{digest}"


def _digest_key(family: str, digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"a {family} key is a lower-case hex SHA-256")
    return f"{family}.{digest}"


def passkey_key(digest: str) -> str:
    """KV key of one operator's passkeys, by the hex SHA-256 of the user name."""
    return _digest_key(PASSKEY_KEYS, digest)


def stepup_key(digest: str) -> str:
    """KV key of one step-up challenge, by the hex SHA-256 of the challenge."""
    return _digest_key(STEPUP_KEYS, digest)


def decision_key(approval_id: str) -> str:
    """KV key of the decision on one two-person press (gateway-written, once)."""
    subjects.verb_reply(approval_id)  # validates the id
    return f"{DECISION_KEYS}.{approval_id}"


def observer_key(digest: str) -> str:
    """KV key of one observer link, by the hex SHA-256 of its secret."""
    return _digest_key(OBSERVER_KEYS, digest)


def alert_group_key(group_key: str) -> str:
    """KV key of one Alertmanager alert group. Hashed: a group key is free
    text (`{}:{alertname="X"}`) that KV keys cannot hold."""
    return f"{ALERT_KEYS}.group-{hashlib.sha256(group_key.encode()).hexdigest()[:40]}"


def alert_vm_key(vm: str) -> str:
    """KV key of a VM's triage window (the per-VM rate limit)."""
    if not vm or not all(c.isalnum() or c in "-_" for c in vm) or len(vm) > 64:
        raise ValueError(f"a VM name must be 1-64 letters, digits, - or _, got {vm!r}")
    return f"{ALERT_KEYS}.vm-{vm}"


def _digest_key(family: str, digest: str) -> str:
    if not 16 <= len(digest) <= 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"a {family} key is a lower-case hex digest")
    return f"{family}.{digest}"


def push_sub_key(digest: str) -> str:
    """KV key of one push subscription, by the hex SHA-256 of its endpoint."""
    return _digest_key(PUSH_SUB_KEYS, digest)


def push_claim_key(digest: str) -> str:
    """KV key a gateway creates (compare-and-set) before it pushes one
    event: the gateway that created it sends, the others skip."""
    return _digest_key(PUSH_CLAIM_KEYS, digest)


def push_grant_key(digest: str) -> str:
    """KV key of a notification's decision grant, by the hex SHA-256 of the
    token the push carried (the store never holds the token itself)."""
    return _digest_key(PUSH_GRANT_KEYS, digest)
