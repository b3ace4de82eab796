"""Publish the bus contract as JSON Schema and AsyncAPI: `python -m eventbus.docs OUTDIR`.

Other services (a notifier, a dashboard, an incident timeline) build on the
subjects and payloads without reading this code, so the contract is also
published as documents. They are *generated* from the msgspec Structs the
services decode with, never written by hand, so they cannot say something the
decoders do not enforce; `make docs` writes them to docs/ and a contract test
fails when the committed copy is stale.

Choices, and why:
- JSON Schema draft-07: AsyncAPI 3.0 lists it among the schema formats every
  tool must read, and msgspec's output only uses keywords draft-07 knows
  (its OpenAPI `discriminator` is an annotation that validators ignore).
- One self-contained file per event kind, command, reply and record, plus the
  two unions: a consumer can validate with any single file, no resolver.
- Channels, parameters and stream descriptions come from `subjects` and
  `topology` themselves, so a changed subject or retention changes the docs.
- Output is byte-for-byte deterministic (sorted JSON keys, fixed YAML order,
  trailing newline), so "stale" is a plain file comparison.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from events import kinds, subjects
from . import topology
from events.commands import (
    COMMAND_TYPES, AnswerApproval, AnyCommand, ApprovalReply, CancelReply, CancelTurn, RunVerb, WarmSession,
)
from events.commands import SessionRecord, StartTurn, TurnLock, VerbResult
from events.kinds import EPHEMERAL_KINDS, EVENT_TYPES, SCHEMA_VERSION, Event, VerbProgressed, kind_of

DIALECT = "http://json-schema.org/draft-07/schema#"
SCHEMA_FORMAT = "application/schema+json;version=draft-07"
SCHEMAS_DIR = "schemas"
ASYNCAPI_FILE = "asyncapi.yaml"
_REF = "#/definitions/{name}"

#: Replies travel on core NATS; records live in the KV bucket. Neither is an
#: event or a command, but both are part of the contract all the same.
REPLY_TYPES: tuple[type[msgspec.Struct], ...] = (VerbResult, CancelReply, ApprovalReply)
RECORD_TYPES: tuple[type[msgspec.Struct], ...] = (SessionRecord, TurnLock)

#: What each audit subject carries (`subjects.AUDIT_NAMES`). A new audit name
#: without an entry here stops the generator instead of publishing nothing.
AUDIT_MESSAGES: dict[str, tuple[type[msgspec.Struct], ...]] = {"verb": (VerbProgressed,)}

# Placeholder ids: the real subject builders validate ids, so the channel
# addresses are made with these and the placeholders swapped for parameters.
_SESSION = "00000000-0000-4000-8000-00000000000a"
_REQUEST = "00000000-0000-4000-8000-00000000000b"


# -- names -------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def message_key(type_: type[msgspec.Struct]) -> str:
    """The name a type is published under: `event.<kind>`, `command.<type>`,
    or the snake-case class name for replies and records."""
    if type_ in EVENT_TYPES:
        return f"event.{kind_of(type_)}"  # type: ignore[arg-type]
    if type_ in COMMAND_TYPES:
        return f"command.{type_.__struct_config__.tag}"
    return _snake(type_.__name__)


def schema_file(key: str) -> str:
    return f"{key}.schema.json"


def _paragraph(text: str) -> str:
    return " ".join(text.split())


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.;:])\s", text, maxsplit=1)[0]


def _kinds_paragraph(opening: str) -> str:
    for paragraph in (kinds.__doc__ or "").split("\n\n"):
        if paragraph.strip().startswith(opening):
            return _paragraph(paragraph)
    raise LookupError(f"the events.kinds docstring has no paragraph starting {opening!r}")


def evolution_rule() -> str:
    """The schema-evolution paragraph of `events.kinds`, reflowed."""
    return _kinds_paragraph("Evolution rule")


# -- JSON Schema ---------------------------------------------------------------


def _schema_document(root: Any, **annotations: str) -> dict[str, Any]:
    """A draft-07 document for `root` with every referenced part inlined
    under `definitions`. A Struct becomes the document's root itself."""
    (top,), components = msgspec.json.schema_components([root], ref_template=_REF)
    if "$ref" in top:
        name = top["$ref"].rsplit("/", 1)[-1]
        body = components.pop(name)
        if _REF.format(name=name) in json.dumps(components):  # self-referencing type
            components[name] = body
    else:
        body = top
    document: dict[str, Any] = {"$schema": DIALECT, **body, **annotations}
    if components:
        document["definitions"] = components
    return _cleaned(document)


def _cleaned(node: Any) -> Any:
    """Docstring-derived descriptions with their indentation removed here,
    not by msgspec: msgspec releases disagree on it (0.23 dedents, earlier
    ones kept it), and the published files must not change with them."""
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value) if key == "description" and isinstance(value, str) else _cleaned(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_cleaned(item) for item in node]
    return node


def schemas() -> dict[str, dict[str, Any]]:
    """Every schema file, by file name, in publication order."""
    documents: dict[str, dict[str, Any]] = {
        schema_file("event"): _schema_document(
            Event,
            title="Event",
            description=(
                f"Any breakglass event of schema version {SCHEMA_VERSION}; `kind` selects the shape. "
                + evolution_rule()
            ),
        ),
        schema_file("command"): _schema_document(
            AnyCommand, title="Command", description="Any breakglass command; `type` selects the shape."
        ),
    }
    for type_ in (*EVENT_TYPES, *COMMAND_TYPES, *REPLY_TYPES, *RECORD_TYPES):
        documents[schema_file(message_key(type_))] = _schema_document(type_)
    return documents


def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- AsyncAPI ------------------------------------------------------------------


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)}


def _payload(key: str) -> dict[str, Any]:
    return {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"./{SCHEMAS_DIR}/{schema_file(key)}"}}


def _message(type_: type[msgspec.Struct]) -> dict[str, Any]:
    key = message_key(type_)
    name = key.split(".", 1)[-1]
    message: dict[str, Any] = {"name": name, "title": type_.__name__}
    text = _paragraph(type_.__doc__ or "")
    if text:
        summary = _first_sentence(text)
        message["summary"] = summary
        if text != summary:
            message["description"] = text
    message["contentType"] = "application/json"
    message["payload"] = _payload(key)
    return message


def _template(address: str) -> str:
    if address.rsplit(".", 1)[-1] in subjects.WRITERS:  # a per-writer subject: the writer is its last token
        address = address.rsplit(".", 1)[0] + ".{writer}"
    return address.replace(_SESSION, "{session_id}").replace(_REQUEST, "{request_id}")


_PARAMETERS = {
    "session_id": {
        "description": "The breakglass session: a lower-case UUID.",
        "examples": ["6f1c1d7e-3b7a-4c1e-9a55-0d7f2b1e4c90"],
    },
    "request_id": {
        "description": "The verb request (`RunVerb.request_id`): a lower-case UUID.",
        "examples": ["0b8e2f0c-5d0a-4f61-8d3e-7a1c9e2b5f44"],
    },
    "writer": {
        "description": "The service that stored the event; only its NATS user may publish here, and "
                       "`breakglass verify` holds it to the kinds it may state (events.authorship).",
        "enum": list(subjects.WRITERS),
        "examples": ["agent-runner"],
    },
}


def _days(seconds: float | None) -> str:
    days = (seconds or 0) / topology.DAY
    return f"{days:g} day" + ("" if days == 1 else "s")


def _events_stream() -> str:
    c = topology.events_stream_config(topology.Topology())
    retention, storage = c.retention.value, c.storage.value  # type: ignore[union-attr]
    return (
        f"Stored in JetStream stream `{c.name}` ({retention} retention, {storage} storage, "
        f"max age {_days(c.max_age)} by default, deletes {'denied' if c.deny_delete else 'allowed'}, "
        f"purges {'denied' if c.deny_purge else 'allowed'}): this stream is the audit log. "
        f"The stream sequence is each event's id (the SSE `id:`)."
    )


def _commands_stream(subject: str) -> str:
    c = topology.commands_stream_config(topology.Topology())
    retention = c.retention.value  # type: ignore[union-attr]
    durables = ", ".join(f"`{d}`" for d, filtered in topology.CONSUMERS.items() if filtered == subject)
    return (
        f"Stored in JetStream stream `{c.name}` ({retention} retention: removed once acknowledged; "
        f"max age {_days(c.max_age)}; a repeated `Nats-Msg-Id` within {c.duplicate_window:g} s is dropped). "
        f"Consumed by durable pull consumer {durables}; a command that does not decode is terminated, "
        "never redelivered."
    )


_CORE = "Core NATS, not stored."


@dataclass(frozen=True)
class _Channel:
    id: str
    address: str
    types: tuple[type[msgspec.Struct], ...]
    description: str
    send: tuple[str, str]  # (operation id, who publishes)
    receive: tuple[str, str]  # (operation id, who consumes)
    reply: tuple[type[msgspec.Struct], ...] = ()


def _channel_table() -> list[_Channel]:
    """Every subject, what travels on it, and who sends and receives it."""
    stored = tuple(t for t in EVENT_TYPES if kind_of(t) not in EPHEMERAL_KINDS)
    live = tuple(t for t in EVENT_TYPES if kind_of(t) in EPHEMERAL_KINDS)
    audit = []
    for name in sorted(subjects.AUDIT_NAMES):
        audit += [
            _Channel(
                f"audit{name.title()}", subjects.audit_writer(name, subjects.WRITERS[0]), AUDIT_MESSAGES[name],
                f"Audit facts about `{name}`, whether or not a session named them, under the subject of the "
                "service that stored them. " + _events_stream(),
                (f"recordAudit{name.title()}", "The gateway and agent-runner record requests, pve-executor what "
                 "it ran, each under its own writer token."),
                (f"readAudit{name.title()}", "Services read it; a read-only reader (auditors, integrators) reads by "
                 "direct get and follows it on `storedEvents` (eventbus.follow), filtering on both "
                 f"`{subjects.audit(name)}` and `{subjects.audit(name)}.*`."),
            ),
            _Channel(
                f"audit{name.title()}Unattributed", subjects.audit(name), AUDIT_MESSAGES[name],
                f"Audit facts about `{name}` stored before per-writer subjects: read only, nobody writes here "
                "any more. " + _events_stream(),
                (f"recordAudit{name.title()}Unattributed", "Earlier versions of every service."),
                (f"readAudit{name.title()}Unattributed", "Readers filter on both subjects (events.subjects.audit_filters)."),
            ),
        ]
    return [
        _Channel(
            "sessionEvents", subjects.session_writer(_SESSION, subjects.WRITERS[0]), stored,
            "A session's events, in order, each under the subject of the service that stored it: one hash "
            "chain across the writers of the session (docs/audit.md). " + _events_stream(),
            ("recordSessionEvent", "gateway, agent-runner and pve-executor append the facts they caused, each "
             "under its own writer token (its NATS user may publish nowhere else)."),
            ("readSessionEvents", "The gateway replays then tails them for the attach stream. A read-only "
             "reader may create no JetStream consumer: it reads by direct get and follows new events on "
             "`storedEvents` (eventbus.follow), filtering on both `breakglass.events.session.{session_id}` and "
             "its `.*` (events.subjects.session_filters)."),
        ),
        _Channel(
            "storedEvents", subjects.stored(subjects.session_writer(_SESSION, subjects.WRITERS[0])), stored,
            f"Every event of `{subjects.EVENTS_ALL}` again, once the events stream has stored it, on "
            f"`{subjects.STORED_ALL}` (the same tokens after `breakglass.stored.`), with headers `Nats-Sequence` "
            "(its id), `Nats-Subject` (where it is stored) and the writer's own headers. " + _CORE + " How a "
            "read-only subscriber follows the log without server state: subscribe here first, replay by batched "
            "direct gets (`$JS.API.DIRECT.GET.<stream>`), then deliver a live event only when it is the next "
            "sequence or a direct get from the last one delivered fills the gap before it (eventbus.follow does "
            "exactly this; docs/reading.md).",
            ("republishEvent", "nats-server itself (the stream's republish); no NATS user may publish here."),
            ("followEvents", "Read-only readers: `breakglass tail`, `replay --follow`, examples/notifier, auditors."),
        ),
        _Channel(
            "sessionEventsUnattributed", subjects.session_events(_SESSION), stored,
            "A session's events stored before per-writer subjects: read only, nobody writes here any more; "
            "the chain of a session continues from them onto the writers' subjects. " + _events_stream(),
            ("recordSessionEventUnattributed", "Earlier versions of every service."),
            ("readSessionEventsUnattributed", "Readers filter on both subjects (events.subjects.session_filters)."),
        ),
        *audit,
        _Channel(
            "live", subjects.live(_SESSION), live,
            f"Ephemeral live frames of a session (token deltas). {_CORE} Superseded by the stored events; "
            "a reader that misses them loses nothing.",
            ("streamLive", "agent-runner publishes deltas while a turn runs."),
            ("readLive", "The gateway forwards them to attached browsers."),
        ),
        _Channel(
            "prompt", subjects.PROMPT, (StartTurn,),
            "Start one CLI turn. " + _commands_stream(subjects.PROMPT),
            ("sendPrompt", "The gateway, after taking the turn lock and recording the `user` event."),
            ("runTurn", "agent-runner (any replica) runs the turn."),
        ),
        _Channel(
            "verb", subjects.VERB, (RunVerb,),
            "Run one power verb an operator pressed (an enum value, never free text). Only the gateway may "
            "publish here; pve-executor takes the origin from this subject, `by` is the authenticated "
            "operator. " + _commands_stream(subjects.VERB),
            ("requestVerb", "The gateway, for an operator's press."),
            ("runVerb", "pve-executor validates the verb again and runs it."),
        ),
        _Channel(
            "agentVerb", subjects.AGENT_VERB, (RunVerb,),
            "Run one power verb the agent asked for. Only agent-runner may publish here; pve-executor "
            "records it `by: agent` whatever the body says and, under `approve-mutating`, runs a mutating "
            "verb only against the operator's grant (`approval_id`, KV `grants.<approval_id>`, written only "
            "by the gateway; redeemed once). " + _commands_stream(subjects.AGENT_VERB),
            ("requestAgentVerb", "agent-runner, for the agent's narrow verb tool."),
            ("runAgentVerb", "pve-executor checks the grant, validates the verb again and runs it."),
        ),
        _Channel(
            "cancel", subjects.cancel(_SESSION), (CancelTurn,),
            f"Stop the session's running turn. {_CORE} Request/reply: the answer is a `cancel_reply` "
            "sent to the requester's inbox.",
            ("requestCancel", "The gateway, when the operator presses Stop."),
            ("cancelTurn", "The agent-runner that owns the turn answers."),
            reply=(CancelReply,),
        ),
        _Channel(
            "approval", subjects.approval(_SESSION), (AnswerApproval,),
            f"The operator's answer to an `approval` event. {_CORE} Request/reply: the answer is an "
            "`approval_reply` sent to the requester's inbox; `accepted` is false when no such approval is "
            "pending (answered already, timed out, or the turn is over).",
            ("answerApproval", "The gateway, when the operator presses Approve or Deny."),
            ("receiveApproval", "The agent-runner waiting on that approval (the one that owns the turn) answers."),
            reply=(ApprovalReply,),
        ),
        _Channel(
            "warm", subjects.warm(_SESSION), (WarmSession,),
            f"A hint that a prompt may follow: an operator opened or attached to the session. {_CORE} No reply; "
            f"runners take it in the queue group `{subjects.WARM_QUEUE}` (one of them warms the session's CLI). "
            "Ignoring it loses nothing but the head start.",
            ("hintWarm", "The gateway, when a session is opened or attached."),
            ("warmSession", "One agent-runner with room starts the session's CLI ahead of need."),
        ),
        _Channel(
            "verbReply", subjects.verb_reply(_REQUEST), (VerbResult,),
            f"The outcome of one verb request. {_CORE}",
            ("replyVerb", "pve-executor, once the verb has run or was rejected."),
            ("awaitVerb", "Whoever published the `run_verb` command."),
        ),
    ]


def _local(type_: type[msgspec.Struct]) -> str:
    return message_key(type_).split(".", 1)[-1]


def _channel_messages(types: Iterable[type[msgspec.Struct]]) -> dict[str, Any]:
    return {_local(t): _ref("components", "messages", message_key(t)) for t in types}


def _channels_and_operations() -> tuple[dict[str, Any], dict[str, Any]]:
    """Operations are written for breakglass as a whole: each channel gets a
    `send` (the service that publishes) and a `receive` (the one that consumes)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for row in _channel_table():
        address = _template(row.address)
        channel: dict[str, Any] = {"address": address, "description": row.description}
        names = re.findall(r"\{(\w+)\}", address)
        if names:
            channel["parameters"] = {name: dict(_PARAMETERS[name]) for name in names}
        channel["messages"] = _channel_messages(row.types)
        channels[row.id] = channel
        for action, (op_id, description) in (("send", row.send), ("receive", row.receive)):
            operations[op_id] = {
                "action": action,
                "channel": _ref("channels", row.id),
                "description": description,
                "messages": [_ref("channels", row.id, "messages", _local(t)) for t in row.types],
            }
        if row.reply:
            reply_id = row.id + "Reply"
            channels[reply_id] = {
                "address": None,
                "description": f"The requester's inbox (NATS request/reply). {_CORE}",
                "messages": _channel_messages(row.reply),
            }
            operations[row.receive[0]]["reply"] = {
                "channel": _ref("channels", reply_id),
                "messages": [_ref("channels", reply_id, "messages", _local(t)) for t in row.reply],
            }
    return channels, operations


def asyncapi() -> dict[str, Any]:
    channels, operations = _channels_and_operations()
    description = "\n\n".join(
        [
            "The public contract of breakglass on NATS: subjects, what travels on them, and how it is kept. "
            "Payloads are JSON; every schema is generated from the msgspec Structs the services decode with "
            f"(files under `{SCHEMAS_DIR}/`).",
            _kinds_paragraph("Wire shape"),
            evolution_rule(),
            "Operations describe breakglass as a whole: `send` names the service that publishes, `receive` "
            "the one that consumes. An outside subscriber to events takes the `receive` side.",
            "Subjects:\n\n" + "\n".join(
                line.rstrip() for line in (subjects.__doc__ or "").splitlines() if line.startswith("    ")
            ),
        ]
    )
    messages = {
        message_key(t): _message(t) for t in (*EVENT_TYPES, *COMMAND_TYPES, *REPLY_TYPES)
    }
    # Records are not messages (they live in the KV bucket), so they are listed
    # as schemas; `allOf` lets them carry a description beside the reference.
    records = {
        message_key(t): {"description": _description(t), "allOf": [_payload(message_key(t))["schema"]]}
        for t in RECORD_TYPES
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "breakglass", "version": f"{SCHEMA_VERSION}.0.0", "description": description},
        "defaultContentType": "application/json",
        "servers": {
            "compose": {
                "host": "nats:4222",
                "protocol": "nats",
                "description": "The NATS of compose.yaml; elsewhere `BREAKGLASS_NATS_URL` names the server.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": records},
    }


def _description(type_: type[msgspec.Struct]) -> str:
    key = {SessionRecord: topology.session_key, TurnLock: topology.lock_key}[type_]
    where = _template(key(_SESSION))
    return f"{_paragraph(type_.__doc__ or '')} Stored in KV bucket `{topology.Topology().kv_bucket}` under `{where}`."


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line text, and no anchors: the output is read by people."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _represent_str)


def render_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


# -- files ---------------------------------------------------------------------


def render() -> dict[str, str]:
    """Every generated file, by path relative to the output directory."""
    files = {f"{SCHEMAS_DIR}/{name}": render_json(doc) for name, doc in schemas().items()}
    files[ASYNCAPI_FILE] = render_yaml(asyncapi())
    return files


def write(outdir: Path) -> list[Path]:
    """Write every file and delete schema files that are no longer generated,
    so a renamed type leaves no orphan behind. Other files in `outdir` stay."""
    files = render()
    (outdir / SCHEMAS_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (outdir / SCHEMAS_DIR).glob("*.schema.json"):
        if f"{SCHEMAS_DIR}/{stale.name}" not in files:
            stale.unlink()
    written = []
    for relative, text in files.items():
        path = outdir / relative
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m eventbus.docs OUTDIR", file=sys.stderr)
        return 2
    written = write(Path(args[0]))
    print(f"wrote {len(written)} files to {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
