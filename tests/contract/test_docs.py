"""The published contract (docs/) matches the code, and says what it must.

Outside services build on docs/asyncapi.yaml and docs/schemas/ without
reading our code, so a stale or incomplete document is a broken contract
even when every service works.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import yaml

from eventbus import docs
from events import encode, subjects
from events.codec import ContractError, decode, decode_command, decode_event
from events.commands import COMMAND_TYPES, CancelTurn, Ending, RunVerb, StartTurn, TurnLock, VerbResult
from events.kinds import KINDS, ToolCalled, TurnEnded, UsageReported, UserPrompted, VerbPhase, VerbProgressed
from events.verbs import Verb

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
STALE = "docs/ is stale: run `make docs` (it regenerates docs/ from the locked msgspec) and commit the result"

SESSION = str(uuid.uuid4())
TURN = str(uuid.uuid4())


def _generated_files(root: Path) -> dict[str, str]:
    files = {docs.ASYNCAPI_FILE: (root / docs.ASYNCAPI_FILE)}
    files |= {f"{docs.SCHEMAS_DIR}/{p.name}": p for p in sorted((root / docs.SCHEMAS_DIR).glob("*.schema.json"))}
    return {name: path.read_text(encoding="utf-8") for name, path in files.items() if path.exists()}


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load((DOCS / docs.ASYNCAPI_FILE).read_text(encoding="utf-8"))


def _schema(name: str) -> dict[str, Any]:
    return json.loads((DOCS / docs.SCHEMAS_DIR / docs.schema_file(name)).read_text(encoding="utf-8"))


def test_committed_docs_match_a_fresh_generation(tmp_path: Path) -> None:
    # Through the real entry point, as `make docs` runs it.
    subprocess.run([sys.executable, "-m", "eventbus.docs", str(tmp_path)], check=True, capture_output=True)
    fresh, committed = _generated_files(tmp_path), _generated_files(DOCS)
    assert sorted(committed) == sorted(fresh), STALE
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert not changed, f"{STALE} (differs: {', '.join(changed)})"


def test_generation_is_deterministic() -> None:
    assert docs.render() == docs.render()
    assert all(text.endswith("\n") and not text.endswith("\n\n") for text in docs.render().values())


def test_every_event_kind_and_command_is_a_message(asyncapi: dict[str, Any]) -> None:
    names = {message["name"] for message in asyncapi["components"]["messages"].values()}
    assert set(KINDS) <= names
    assert {t.__struct_config__.tag for t in COMMAND_TYPES} <= names


def test_every_event_kind_travels_on_some_channel(asyncapi: dict[str, Any]) -> None:
    on_channels = {
        ref["$ref"].rsplit("/", 1)[-1]
        for channel in asyncapi["channels"].values()
        for ref in channel["messages"].values()
    }
    assert {f"event.{kind}" for kind in KINDS} <= on_channels


def _subject_templates() -> set[str]:
    """Every concrete subject `events.subjects` can build, with ids as parameters.

    Found by introspection, so a subject added there without a channel here fails."""
    placeholders = {"session_id": "{session_id}", "request_id": "{request_id}"}
    found = {value for name, value in vars(subjects).items() if name.isupper() and isinstance(value, str)
             and value.startswith(subjects.ROOT + ".") and not value.endswith(("*", ">"))}
    for name, function in inspect.getmembers(subjects, inspect.isfunction):
        if function.__module__ != subjects.__name__ or name.startswith("_") or name in (
                "session_of", "verb_origin", "writer_of", "session_filters", "audit_filters", "writer_subjects",
                "stored", "unstored"):  # the republish mapping of the events subjects: its own channel
            continue
        parameters = tuple(inspect.signature(function).parameters)
        if parameters[-1] == "writer":  # per-writer subjects: the writer token is the {writer} parameter
            sentinel = str(uuid.uuid4())
            firsts = [sentinel] if parameters[0] == "session_id" else sorted(subjects.AUDIT_NAMES)
            for first in firsts:
                for writer in subjects.WRITERS:
                    address = function(first, writer).replace(sentinel, "{session_id}")
                    found.add(address.rsplit(".", 1)[0] + ".{writer}")
            continue
        (parameter,) = parameters
        if parameter == "name":
            found |= {function(audit_name) for audit_name in subjects.AUDIT_NAMES}
            continue
        if parameter == "origin":
            found |= {function(origin) for origin in set(subjects.VERB_ORIGINS.values())}
            continue
        sentinel = str(uuid.uuid4())
        found.add(function(sentinel).replace(sentinel, placeholders[parameter]))
    return found


def test_every_subject_is_a_channel(asyncapi: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in asyncapi["channels"].values()}
    assert len(_subject_templates()) >= 8
    missing = _subject_templates() - addresses
    assert not missing, f"subjects without an AsyncAPI channel: {sorted(missing)}"


def test_channel_parameters_match_addresses(asyncapi: dict[str, Any]) -> None:
    for name, channel in asyncapi["channels"].items():
        address = channel["address"] or ""
        declared = set(channel.get("parameters", {}))
        used = {part[1:-1] for part in address.split(".") if part.startswith("{")}
        assert declared == used, name


def test_every_reference_resolves(asyncapi: dict[str, Any]) -> None:
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    refs = list(walk(asyncapi))
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            target: Any = asyncapi
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
        else:
            assert (DOCS / ref).is_file(), ref


def test_operations_send_and_receive_on_every_channel(asyncapi: dict[str, Any]) -> None:
    actions: dict[str, set[str]] = {}
    for operation in asyncapi["operations"].values():
        actions.setdefault(operation["channel"]["$ref"], set()).add(operation["action"])
    addressed = [f"#/channels/{n}" for n, c in asyncapi["channels"].items() if c["address"] is not None]
    for ref in addressed:
        assert actions.get(ref) == {"send", "receive"}, ref


def test_streams_and_evolution_rule_are_stated(asyncapi: dict[str, Any]) -> None:
    from eventbus.topology import Topology

    text = yaml.safe_dump(asyncapi)
    assert Topology().events_stream in text and Topology().commands_stream in text
    assert "400 days" in text
    assert docs.evolution_rule() in asyncapi["info"]["description"]
    assert "additive" in docs.evolution_rule()


def test_every_schema_file_is_a_valid_draft7_schema() -> None:
    files = sorted((DOCS / docs.SCHEMAS_DIR).glob("*.schema.json"))
    assert len(files) == len(docs.schemas())
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == docs.DIALECT
        jsonschema.Draft7Validator.check_schema(schema)


GOOD_EVENTS = [
    UserPrompted(session_id=SESSION, turn_id=TURN, by="alice", text="why is the VM stuck?", model="sonnet"),
    ToolCalled(session_id=SESSION, turn_id=TURN, by="agent", name="Bash", input={"command": "uptime"}),
    UsageReported(session_id=SESSION, turn_id=TURN, by="agent-runner", cost_usd=0.25),
    VerbProgressed(by="alice", verb=Verb.CYCLE, phase=VerbPhase.DONE, exit_code=0, stdout="ok"),
    TurnEnded(session_id=SESSION, turn_id=TURN, by="agent-runner"),
]
GOOD_COMMANDS = [
    StartTurn(by="alice", session_id=SESSION, turn_id=TURN, prompt="look at dmesg", model="sonnet"),
    RunVerb(by="alice", request_id=str(uuid.uuid4()), verb=Verb.STATUS),
    CancelTurn(by="alice", session_id=SESSION),
]


@pytest.mark.parametrize("event", GOOD_EVENTS, ids=lambda e: type(e).__name__)
def test_encoded_events_validate_against_their_schemas(event: msgspec.Struct) -> None:
    instance = json.loads(encode(event))
    jsonschema.validate(instance, _schema(docs.message_key(type(event))))
    jsonschema.validate(instance, _schema("event"))


@pytest.mark.parametrize("command", GOOD_COMMANDS, ids=lambda c: type(c).__name__)
def test_encoded_commands_validate_against_their_schemas(command: msgspec.Struct) -> None:
    instance = json.loads(encode(command))
    jsonschema.validate(instance, _schema(docs.message_key(type(command))))
    jsonschema.validate(instance, _schema("command"))


@pytest.mark.parametrize(
    "record",
    [
        VerbResult(verb=Verb.RESET, exit_code=1, stderr="timeout"),
        TurnLock(turn_id=TURN, by="agent-runner", started_at=1.0, lease_until=2.0),
        TurnLock(turn_id=TURN, by="agent-runner", started_at=1.0, lease_until=2.0, phase=Ending(runner="h:r/1")),
    ],
    ids=lambda r: type(r).__name__,
)
def test_encoded_replies_and_records_validate(record: msgspec.Struct) -> None:
    jsonschema.validate(json.loads(encode(record)), _schema(docs.message_key(type(record))))


def _with(message: msgspec.Struct, **changes: Any) -> dict[str, Any]:
    return {**json.loads(encode(message)), **changes}


@pytest.mark.parametrize(
    ("schema", "instance", "decoder"),
    [
        ("command", _with(GOOD_COMMANDS[1], verb="rm -rf /"), decode_command),
        ("command", _with(GOOD_COMMANDS[0], session_id="../../etc"), decode_command),
        ("command", _with(GOOD_COMMANDS[0], prompt=""), decode_command),
        ("event", _with(GOOD_EVENTS[0], kind="no_such_kind"), decode_event),
        ("event", {k: v for k, v in _with(GOOD_EVENTS[0]).items() if k != "by"}, decode_event),
        ("verb_result", _with(VerbResult(verb=Verb.STOP, exit_code=0), verb="halt"), lambda d: decode(d, VerbResult)),
    ],
    ids=["free-text-verb", "path-as-session-id", "empty-prompt", "unknown-kind", "no-actor", "reply-verb"],
)
def test_schema_and_decoder_reject_the_same_bad_payloads(schema: str, instance: dict[str, Any], decoder: Any) -> None:
    # The schema is only worth publishing if it is as strict as the boundary.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(instance, _schema(schema))
    with pytest.raises(ContractError):
        decoder(json.dumps(instance))
