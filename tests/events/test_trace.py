"""Correlation ids: bound per task, carried as headers, never trusted blindly."""

from __future__ import annotations

import asyncio

from eventbus import trace
from events.commands import RunVerb, StartTurn
from events.types import new_id
from events.verbs import Verb


async def test_what_a_task_binds_is_its_own_and_its_children_s():
    seen: dict[str, dict] = {}

    async def child(name: str) -> None:
        await asyncio.sleep(0)
        seen[name] = dict(trace.current())

    async def turn(turn_id: str) -> None:
        trace.bind(turn_id=turn_id, session_id="s")
        await asyncio.create_task(child(turn_id))

    await asyncio.gather(turn("t1"), turn("t2"))
    assert seen == {"t1": {"turn_id": "t1", "session_id": "s"}, "t2": {"turn_id": "t2", "session_id": "s"}}
    assert trace.current() == {}


def test_bound_undoes_itself_and_ignores_none():
    with trace.bound(request_id="r", turn_id=None):
        assert trace.current() == {"request_id": "r"}
        with trace.bound(verb=Verb.RESET):
            assert trace.current() == {"request_id": "r", "verb": "reset"}
        assert "verb" not in trace.current()
    assert trace.current() == {}


def test_ids_round_trip_through_headers_beside_other_headers():
    with trace.bound(request_id="r1", session_id="s1", turn_id="t1", by="operator", verb="status"):
        headers = trace.headers(**{"Nats-Msg-Id": "m"})
    assert headers == {"Breakglass-Request-Id": "r1", "Breakglass-Session-Id": "s1",
                       "Breakglass-Turn-Id": "t1", "Nats-Msg-Id": "m"}
    assert trace.from_headers(headers) == {"request_id": "r1", "session_id": "s1", "turn_id": "t1"}


def test_odd_header_values_are_dropped_not_trusted():
    hostile = {"Breakglass-Turn-Id": "x" * 65, "Breakglass-Request-Id": "a\nb", "Breakglass-Session-Id": "a b"}
    assert trace.from_headers(hostile) == {}
    assert trace.from_headers(None) == {}


def test_a_command_names_its_own_ids():
    sid, tid, rid = new_id(), new_id(), new_id()
    turn = StartTurn(by="operator", session_id=sid, turn_id=tid, prompt="p", model="m")
    assert trace.of_command(turn) == {"by": "operator", "session_id": sid, "turn_id": tid}
    verb = RunVerb(by="agent", request_id=rid, verb=Verb.CYCLE)
    assert trace.of_command(verb) == {"by": "agent", "request_id": rid, "verb": Verb.CYCLE}
