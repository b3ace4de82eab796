"""agent_runner.bootstrap.listener: the one decode-check-dispatch step of the
runner's control subjects (cancel, approval answers, warm hints)."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from agent_runner.bootstrap import listener
from events import subjects
from events.codec import encode
from events.commands import CancelTurn, WarmSession
from events.types import new_id


def message(subject: str, data: bytes) -> Msg:
    return Msg(_client=None, subject=subject, data=data)  # type: ignore[arg-type]


async def test_only_a_well_formed_command_of_its_kind_for_its_subjects_session_is_handled(caplog):
    handled: list[tuple[CancelTurn, Msg]] = []

    async def handle(command: CancelTurn, msg: Msg) -> None:
        handled.append((command, msg))

    on_msg = listener(CancelTurn, "cancel request", handle)
    sid, other = new_id(), new_id()
    cancel = CancelTurn(by="ops", session_id=sid)

    with caplog.at_level(logging.WARNING, logger="agent-runner"):
        await on_msg(message(subjects.cancel(sid), b"{not json"))
    assert handled == [] and "ignored a malformed cancel request" in caplog.text

    await on_msg(message(subjects.cancel(sid), encode(WarmSession(by="ops", session_id=sid))))  # another kind
    await on_msg(message(subjects.cancel(other), encode(cancel)))  # the body names another session
    assert handled == []

    ok = message(subjects.cancel(sid), encode(cancel))
    await on_msg(ok)
    assert [(c.session_id, c.by, m) for c, m in handled] == [(sid, "ops", ok)]
