"""Every message type round-trips; anything off-contract raises ContractError."""

from __future__ import annotations

import json
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import codec
from events.commands import COMMAND_TYPES, RunVerb
from events.kinds import EVENT_TYPES, KINDS, TextSaid
from events.types import new_id
from tests.strategies import instances

SID = "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"
#: Every message type with the decoder a reader uses for it: the event and
#: command unions, and each reply/record type the codec knows (so a type
#: added to the codec is round-tripped here without editing this file); a
#: record that is a union (VerbRecord) by each of its members.
DECODERS = (
    [(t, codec.decode_event) for t in EVENT_TYPES]
    + [(t, codec.decode_command) for t in COMMAND_TYPES]
    + [(member, lambda raw, t=t: codec.decode(raw, t))
       for t in codec._decoders for member in typing.get_args(t) or (t,)]  # noqa: SLF001
)


@pytest.mark.parametrize(("type_", "decode"), DECODERS, ids=[t.__name__ for t, _ in DECODERS])
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_message_type_round_trips(type_, decode, data):
    value = decode(codec.encode(data.draw(instances(type_))))
    assert type(value) is type_
    assert decode(codec.encode(value)) == value


def test_kinds_are_unique_and_include_the_spec_vocabulary():
    assert len(set(KINDS)) == len(KINDS)
    spec = {"user", "session", "text", "tool", "result", "error", "cancelled", "turn_end",
            "tool_result", "verb", "approval", "usage", "interrupted"}
    assert spec <= set(KINDS)


def test_wire_shape_is_flat_with_kind_and_envelope():
    wire = json.loads(codec.encode(TextSaid(session_id=SID, by="agent", text="hi")))
    assert wire["kind"] == "text" and wire["text"] == "hi"
    assert {"v", "session_id", "turn_id", "ts", "by"} <= wire.keys()


MALFORMED_EVENTS = [
    b"",
    b"not json",
    b"[]",
    b"null",
    b"{}",
    b'{"kind": "nope", "by": "x"}',
    b'{"kind": "text", "by": "x"}',  # missing text
    b'{"kind": "text", "text": 1, "by": "x"}',
    b'{"kind": "text", "text": "a", "by": ""}',  # empty actor
    b'{"kind": "text", "text": "a", "by": "x", "session_id": "../etc"}',
    b'{"kind": "text", "text": "a", "by": "x", "session_id": "6CFAA6BB-D10D-4842-8572-2D78D3EEEE8C"}',
    b'{"kind": "verb", "by": "x", "verb": "reboot", "phase": "done"}',
    b'{"kind": "verb", "by": "x", "verb": "status; rm -rf /", "phase": "done"}',
    b'{"kind": "text", "text": "a", "by": "x", "ts": "yesterday"}',
    b"\xff\xfe\x00",
]


@pytest.mark.parametrize("payload", MALFORMED_EVENTS)
def test_malformed_events_raise_the_typed_error(payload):
    with pytest.raises(codec.ContractError):
        codec.decode_event(payload)


MALFORMED_COMMANDS = [
    b"{}",
    b'{"type": "run_verb", "by": "x", "request_id": "%s", "verb": "stop now"}' % SID.encode(),
    b'{"type": "run_verb", "by": "x", "request_id": "%s", "verb": "\xef\xbd\x93tatus"}' % SID.encode(),
    b'{"type": "run_verb", "by": "x", "request_id": "not-a-uuid", "verb": "status"}',
    b'{"type": "prompt", "by": "x", "session_id": "%s", "turn_id": "%s", "prompt": "", "model": "m"}'
    % (SID.encode(), SID.encode()),
    b'{"type": "prompt", "by": "x", "session_id": "%s", "turn_id": "%s", "prompt": "hi", "model": "a b"}'
    % (SID.encode(), SID.encode()),
    b'{"type": "run_verb", "by": "x", "request_id": "%s", "verb": "status", "idempotency_key": "a;b"}'
    % SID.encode(),
]


@pytest.mark.parametrize("payload", MALFORMED_COMMANDS)
def test_malformed_commands_raise_the_typed_error(payload):
    with pytest.raises(codec.ContractError):
        codec.decode_command(payload)


def test_oversized_prompt_is_refused_at_decode():
    big = "x" * (32 * 1024 + 1)
    raw = json.dumps({"type": "prompt", "by": "x", "session_id": SID, "turn_id": SID, "prompt": big, "model": "m"})
    with pytest.raises(codec.ContractError, match="length"):
        codec.decode_command(raw)


def test_decode_rejects_types_outside_the_contract():
    with pytest.raises(TypeError):
        codec.decode(b"{}", dict)


def test_a_verb_command_carries_only_an_enum_value():
    cmd = RunVerb(by="ops", request_id=new_id(), verb="cycle")  # type: ignore[arg-type]
    assert codec.decode_command(codec.encode(cmd)).verb.value == "cycle"


def test_lenient_decoding_skips_unknown_kinds_but_not_broken_known_ones():
    assert codec.decode_event_lenient(b'{"kind": "from_the_future", "by": "x", "anything": 1}') is None
    with pytest.raises(codec.ContractError):
        codec.decode_event_lenient(b'{"kind": "text", "by": "x"}')
    with pytest.raises(codec.ContractError):
        codec.decode_event_lenient(b"[1]")
    event = TextSaid(session_id=SID, by="agent", text="hi")
    assert codec.decode_event_lenient(codec.encode(event)) == event


def test_timestamps_must_carry_a_timezone():
    with pytest.raises(codec.ContractError):
        codec.decode_event(b'{"kind": "text", "by": "x", "text": "a", "ts": "2026-11-24T20:00:00"}')
