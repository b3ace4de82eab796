"""Who may do what on the bus: the NATS permission matrix, as data.

Every process that talks to NATS does so as its own user, allowed exactly
the subjects its job needs and nothing else (deny is the default for
anything not listed). The lists are built from `subjects` and `topology`,
so a renamed subject or stream changes the permissions with it.

    role          publishes                                   subscribes
    gateway       StartTurn, operator RunVerb, session + audit its inbox, live frames,
                  events, cancel/approval requests, warm       verb replies
                  hints, KV
                  sessions.*, locks.*, alerts.*, logins.*,
                  pushsubs.*, pushsent.*, pushgrants.*,
                  passkeys.*, stepups.*, observers.*, decisions.*,
                  grants.* (the only writer of approval
                  grants), reads: events (ordered consumers,
                  last event), KV (get, list)
    agent-runner  agent RunVerb (the agent's verb tool), session + its inbox, cancel and approval
                  audit events, live frames, KV locks.*,       requests (answers them: one
                  its own pull consumer (next, ack), reads:    reply each), verb replies,
                  last event, KV (get, list)                   warm hints
    pve-executor  verb replies, session + audit events, KV     its inbox
                  verbs.*, vmlocks.*, reads.*, spent.*, its
                  own pull consumer (next, ack), reads: last
                  event, KV get
    reader        nothing on breakglass.* or KV; JetStream     its inbox, stored events as the
                  reads that keep no server state: events      server republishes them
                  (direct get, message get, stream info), KV   (breakglass.stored.>)
                  (get); NO consumer on any stream
    admin         the JetStream API calls that create and      its inbox
                  update the topology (streams, KV bucket,
                  the two durable consumers); nothing else

- The agent's verb tool (`agent_runner.mcp_server`) has NO NATS user: it
  holds no URL and no credential, and relays one verb over a per-turn Unix
  socket to agent-runner, which publishes as `agent-runner`. The agent's
  shell likewise gets no credential, so it cannot even connect.
- The `reader` user (the CLI's audit commands, integrators, auditors) may
  not create a consumer of any kind on any stream: a consumer is server
  state that outlives the request, a stream holds at most
  `topology.EVENTS_MAX_CONSUMERS`, and nothing in a permission can bound
  how many one user creates. Reads are direct gets; following the log is
  a core subscription to the republished events (eventbus.follow). So no
  read-only credential can fill the room the gateway's own consumer needs.
- Nobody may delete or purge a stream, delete a stored message, or delete a
  consumer: not even admin (`ALWAYS_DENIED`). The events stream refuses
  message deletes and purges on its own as well (topology).
- Each role reads replies on its own inbox prefix (`_INBOX.<role>`; nats-py
  `inbox_prefix=`), so no role can subscribe to another's replies.
- Request/reply toward agent-runner (cancel, approval) uses
  `allow_responses`: the runner may answer each request it received once,
  within a few seconds, and has no standing right to anyone's inbox.

What subject permissions cannot express (see tests/security):
- payloads: a role that may publish RunVerb may ask for any verb with any
  `by`. That is why pve-executor takes who asked from the subject (only
  the gateway may publish operator verbs, only agent-runner agent verbs)
  and runs an agent's mutating verb only against a grant that only the
  gateway may write (pve_executor.grants). The gateway may ask the runner
  to cancel or approve in any session;
- the body of a consumer-create request: a role that may create consumers
  on a stream (the gateway on the events stream, the KV listers on the
  bucket; all of them services) chooses their deliver subject, and nats-server does not check
  it against the creator's permissions (nats-io/nats-server#8274), so it
  can have stored messages of that stream re-sent to any subject that has
  subscribers. Commands are safe (an event or KV record never decodes as a
  command, and nobody may create a consumer on the commands stream); a
  verb requester ignores a "reply" a consumer delivered (events.
  verb_requests); the gateway's live-frame subscription does not check yet;
- allow_responses: the requester (the gateway) chooses the reply subject,
  so it can have the runner publish one fixed CancelReply/ApprovalReply
  anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from events import subjects
from .topology import (
    ALERT_KEYS,
    CONSUMERS,
    DECISION_KEYS,
    EXECUTOR_CONSUMER,
    GRANT_KEYS,
    LOCK_KEYS,
    LOGIN_KEYS,
    OBSERVER_KEYS,
    PASSKEY_KEYS,
    PUSH_CLAIM_KEYS,
    PUSH_GRANT_KEYS,
    PUSH_SUB_KEYS,
    READ_LEASE_KEYS,
    RUNNER_CONSUMER,
    SESSION_KEYS,
    SPENT_KEYS,
    STEPUP_KEYS,
    VERB_KEYS,
    VM_LOCK_KEYS,
    Topology,
)

API = "$JS.API"

GATEWAY = "gateway"
AGENT_RUNNER = "agent-runner"
PVE_EXECUTOR = "pve-executor"
READER = "reader"
ADMIN = "admin"

#: Every NATS user, in the order the config lists them.
ROLES: tuple[str, ...] = (ADMIN, GATEWAY, AGENT_RUNNER, PVE_EXECUTOR, READER)

#: Processes that must not talk to NATS at all, and why (documentation; the
#: security tests hold the code to it).
NO_NATS_USER: Mapping[str, str] = {
    "agent verb tool": "relays one verb over a per-turn Unix socket to agent-runner, which publishes it",
    "agent shell (the CLI and its tools)": "its environment is scrubbed of every NATS URL and credential",
}

#: Destructive JetStream API calls no user may make, whatever else it may.
ALWAYS_DENIED: tuple[str, ...] = (
    f"{API}.STREAM.DELETE.>",
    f"{API}.STREAM.PURGE.>",
    f"{API}.STREAM.MSG.DELETE.>",
    f"{API}.STREAM.RESTORE.>",
    f"{API}.CONSUMER.DELETE.>",
    f"{API}.ACCOUNT.PURGE.>",
)

#: How long agent-runner may take to answer a request it received (the
#: gateway waits 3 s for cancel and approval answers).
RESPONSE_EXPIRES = "10s"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    #: May answer (once, within RESPONSE_EXPIRES) each request it received.
    allow_responses: bool = False
    deny_publish: tuple[str, ...] = field(default=ALWAYS_DENIED)

    def __post_init__(self) -> None:
        # Listed once each, in the order given (the rendered config is reviewed).
        object.__setattr__(self, "publish", tuple(dict.fromkeys(self.publish)))
        object.__setattr__(self, "subscribe", tuple(dict.fromkeys(self.subscribe)))


def inbox_prefix(role: str) -> str:
    """The inbox prefix a role's connection uses (nats-py `inbox_prefix=`)."""
    if role not in ROLES:
        raise ValueError(f"unknown NATS role {role!r}")
    return f"_INBOX.{role}"


def _api(*tokens: str) -> str:
    return ".".join((API, *tokens))


def _inbox(role: str) -> str:
    return f"{inbox_prefix(role)}.>"


def _topology_check(t: Topology) -> list[str]:
    """What `topology.check` and a service's `ensure` read."""
    return [_api("STREAM.INFO", s) for s in (t.events_stream, t.commands_stream, t.kv_stream)]


def _event_writes(role: str) -> list[str]:
    """Appending to the events stream, under the role's own writer subjects
    only (session logs and the audit subjects): who wrote an event is where
    it is stored, and `breakglass verify` holds each writer to its kinds
    (events.authorship)."""
    return list(subjects.writer_subjects(role))


def _last_event(t: Topology) -> list[str]:
    """`EventLog` reads by direct get: a subject's newest event (the subject
    in the API subject) and batches (the request in the body, eventbus.direct)."""
    return [_api("DIRECT.GET", t.events_stream), _api("DIRECT.GET", t.events_stream, ">")]


def _ordered_consumers(stream: str) -> list[str]:
    """Ephemeral ordered consumers (nats-py's short create form, which cannot
    create a durable), and their flow-control replies."""
    return [_api("CONSUMER.CREATE", stream), f"$JS.FC.{stream}.>"]


def _kv_get(t: Topology) -> list[str]:
    return [
        _api("STREAM.INFO", t.kv_stream), _api("STREAM.MSG.GET", t.kv_stream),
        _api("DIRECT.GET", t.kv_stream), _api("DIRECT.GET", t.kv_stream, ">"),
    ]


def _kv_list(t: Topology) -> list[str]:
    """`kv.keys()`: a watcher, i.e. an ordered consumer, asked for its info."""
    return [*_ordered_consumers(t.kv_stream), _api("CONSUMER.INFO", t.kv_stream, "*")]


def _kv_put(t: Topology, *families: str) -> list[str]:
    return [f"{t.kv_subjects}.{family}.*" for family in families]


def _pull(t: Topology, durable: str) -> list[str]:
    """Its own durable pull consumer on the commands work queue: next (fetch)
    and acks/terms of what it fetched. Its start-up check (`ensure`) reads
    the info of both durables, as it always has; reading is all it may."""
    stream = t.commands_stream
    return [
        *(_api("CONSUMER.INFO", stream, d) for d in CONSUMERS),
        _api("CONSUMER.MSG.NEXT", stream, durable),
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _admin(t: Topology) -> Permissions:
    streams = (t.events_stream, t.commands_stream, t.kv_stream)
    publish = [_api("INFO")]
    for verb in ("INFO", "CREATE", "UPDATE"):
        publish += [_api("STREAM", verb, s) for s in streams]
    for durable in CONSUMERS:
        publish += [
            _api("CONSUMER.INFO", t.commands_stream, durable),
            _api("CONSUMER.DURABLE.CREATE", t.commands_stream, durable),
            _api("CONSUMER.CREATE", t.commands_stream, durable, ">"),
        ]
    return Permissions(publish=tuple(publish), subscribe=(_inbox(ADMIN),))


def matrix(t: Topology = Topology()) -> dict[str, Permissions]:
    """Every role's permissions."""
    return {
        ADMIN: _admin(t),
        GATEWAY: Permissions(
            publish=(
                subjects.PROMPT, subjects.VERB, *_event_writes(GATEWAY), subjects.CANCEL_ALL, subjects.APPROVAL_ALL,
                subjects.WARM_ALL,
                *_kv_put(t, SESSION_KEYS, LOCK_KEYS, ALERT_KEYS, GRANT_KEYS, LOGIN_KEYS,
                         PUSH_SUB_KEYS, PUSH_CLAIM_KEYS, PUSH_GRANT_KEYS,
                         PASSKEY_KEYS, STEPUP_KEYS, OBSERVER_KEYS, DECISION_KEYS),
                *_topology_check(t), *_last_event(t), *_ordered_consumers(t.events_stream),
                *_kv_get(t), *_kv_list(t),
            ),
            subscribe=(_inbox(GATEWAY), subjects.LIVE_ALL, subjects.VERB_REPLY_ALL),
        ),
        AGENT_RUNNER: Permissions(
            publish=(
                subjects.AGENT_VERB, *_event_writes(AGENT_RUNNER), subjects.LIVE_ALL, *_kv_put(t, LOCK_KEYS),
                *_pull(t, RUNNER_CONSUMER), *_topology_check(t), *_last_event(t), *_kv_get(t), *_kv_list(t),
            ),
            subscribe=(_inbox(AGENT_RUNNER), subjects.CANCEL_ALL, subjects.APPROVAL_ALL, subjects.VERB_REPLY_ALL,
                       subjects.WARM_ALL),
            allow_responses=True,
        ),
        PVE_EXECUTOR: Permissions(
            publish=(
                subjects.VERB_REPLY_ALL, *_event_writes(PVE_EXECUTOR),
                *_kv_put(t, VERB_KEYS, VM_LOCK_KEYS, READ_LEASE_KEYS, SPENT_KEYS),
                *_pull(t, EXECUTOR_CONSUMER), *_topology_check(t), *_last_event(t), *_kv_get(t),
            ),
            subscribe=(_inbox(PVE_EXECUTOR),),
        ),
        # Reads only, and none that leaves state on the server: no consumer
        # (ordered, ephemeral or durable) on any stream, see the module doc.
        READER: Permissions(
            publish=(
                _api("STREAM.INFO", t.events_stream), *_last_event(t), _api("STREAM.MSG.GET", t.events_stream),
                *_kv_get(t),
            ),
            subscribe=(_inbox(READER), subjects.STORED_ALL),
        ),
    }


# --- the nats-server configuration -------------------------------------------------


@dataclass(frozen=True)
class EnvRef:
    """A password the server takes from its environment (`$NAME` in the
    config), for configurations that are committed (deploy/nats)."""

    name: str

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum() or not self.name[0].isalpha():
            raise ValueError(f"not an environment variable name: {self.name!r}")


def env_refs(prefix: str = "NATS_") -> dict[str, EnvRef]:
    """Role -> `$NATS_<ROLE>_PASSWORD`, e.g. `$NATS_PVE_EXECUTOR_PASSWORD`."""
    return {role: EnvRef(f"{prefix}{role.upper().replace('-', '_')}_PASSWORD") for role in ROLES}


def _string(value: str) -> str:
    """A quoted config string. The server's parser takes JSON-style escapes;
    anything that would need more than that is refused, not guessed at."""
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in value) or "$" in value:
        raise ValueError("config strings here must be printable ASCII without '$'")
    return json.dumps(value)


def _subject_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(s) for s in items) + "]"


def render(
    passwords: Mapping[str, str | EnvRef], t: Topology = Topology(), *, roles: tuple[str, ...] | None = None,
) -> str:
    """The `authorization { users = [...] }` block of nats-server's config:
    one user per role (default: every role in `passwords`), named after it,
    with its password (or `$VAR` reference) and its permissions.

    No user = no connection: without `no_auth_user`, a client that presents
    no credentials is refused."""
    perms = matrix(t)
    chosen = roles if roles is not None else tuple(r for r in ROLES if r in passwords)
    lines = ["authorization {", "  users = ["]
    for role in chosen:
        p = perms[role]
        secret = passwords[role]
        password = f"${secret.name}" if isinstance(secret, EnvRef) else _string(secret)
        lines += [
            "    {",
            f"      user: {_string(role)}",
            f"      password: {password}",
            "      permissions: {",
            "        publish: {",
            f"          allow: {_subject_list(p.publish)}",
            f"          deny: {_subject_list(p.deny_publish)}",
            "        }",
            "        subscribe: {",
            f"          allow: {_subject_list(p.subscribe)}",
            "        }",
        ]
        if p.allow_responses:
            lines.append(f"        allow_responses: {{max: 1, expires: {json.dumps(RESPONSE_EXPIRES)}}}")
        lines += ["      }", "    }"]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


#: The committed configuration of compose.yaml's NATS (regenerate: `make docs`).
DEPLOY_CONFIG = "deploy/nats/authorization.conf"


def deploy_config(t: Topology = Topology()) -> str:
    """deploy/nats/authorization.conf: the same matrix, each password taken
    from the server's environment (`$NATS_<ROLE>_PASSWORD`, see compose.yaml)."""
    header = (
        "# The NATS users of breakglass and what each may publish and subscribe to.\n"
        "# GENERATED from libs/eventbus/src/eventbus/access.py by `make docs`: do not edit.\n"
        "# Each password comes from the server's environment; the server refuses to\n"
        "# start when one is unset. A value must not look like a number or a boolean\n"
        "# (e.g. `openssl rand -hex 24 | sed 's/^/p/'`).\n"
    )
    return header + render(env_refs(), t)


if __name__ == "__main__":  # python -m eventbus.access [PATH]
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else DEPLOY_CONFIG)
    target.write_text(deploy_config(), encoding="utf-8")
    print(f"wrote {target}")
