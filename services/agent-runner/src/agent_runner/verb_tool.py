"""The runner's end of the agent's verb tool: one Unix socket per turn.

The CLI's MCP server (`mcp_server`, holding nothing) relays the model's
`pve` calls here as `{"verb": ...}` lines. This end holds what matters, and
spends it narrowly:

- The socket belongs to ONE session, and acts only for the turn bound to
  it. Requests carry no session id, so a request can only ever act for
  the session whose turn (or warm CLI, `warm`) made the socket; the socket
  lives in that session's workspace (mode 0600; in a private 0700 temp
  dir instead when the workspace path is too long for a socket name) and
  is removed with the CLI. A per-turn CLI's tool is bound to its turn for
  its whole life; a warm CLI's is bound to each turn in turn (`bind`,
  `unbind`) and refuses every request between turns. A Bash command of
  the agent that finds it can ask for the same six verbs, under the same
  policy, and nothing else.
- The verb is decoded into the enum again (defence in depth; pve-executor
  and the host script check it too).
- The policy (`BREAKGLASS_VERB_POLICY`) is applied here, never in the MCP
  server: `autonomous` runs any verb; `approve-mutating` runs read-only
  verbs directly and holds a mutating one until the operator answers the
  recorded `approval` event (Approve/Deny in the PWA, routed to the turn's
  owner by `answer`), or until the approval timeout, which denies.
- Running a verb is the same request the gateway makes
  (`eventbus.verb_requests`), on the agent's own subject (pve-executor takes
  `by: agent` from it, and runs an approved mutating verb only against the
  grant the gateway stored when the operator approved it); every
  phase (requested, approved/denied) is recorded in the session with who
  decided, so the audit shows the agent asked and the operator allowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
from nats.aio.client import Client

from eventbus import trace
from events.commands import RunVerb, StartTurn, VerbResult
from events.vms import Vm
from events.kinds import ApprovalRequested, Envelope, VerbPhase, VerbProgressed
from eventbus.log import EventLog
from events.types import new_id
from eventbus.verb_requests import record_requested, run_verb
from events.verbs import ALL, Verb, is_mutating

from . import metrics
from .settings import APPROVE_MUTATING
from .verb_wire import MAX_LINE, SOCKET_MODE, VerbAnswered, decode_asked, encode_line

logger = logging.getLogger("agent-runner.verbs")

SERVER_NAME = "breakglass"
TOOL_NAME = f"mcp__{SERVER_NAME}__pve"
AGENT = "agent"
#: `sun_path` holds 108 bytes on Linux (104 on the BSDs), NUL included.
MAX_SOCKET_PATH = 100
#: At the end of a turn, how long answered-by-the-end approvals get to record
#: their denial before whatever still runs is cancelled.
CLOSE_GRACE_SECONDS = 2.0


class Records(Protocol):
    """What the tool needs of the turn's recorder (`turns.Recorder`)."""

    def envelope(self, by: str) -> dict[str, Any]: ...

    async def append(self, event: Envelope, *, msg_id: str | None = None) -> None: ...


@dataclass(frozen=True)
class Decision:
    approved: bool
    by: str
    #: Why it was denied without an operator's word ("" when they answered).
    why: str = ""
    #: The approval answered: pve-executor redeems the gateway's grant of it.
    approval_id: str | None = None


def _socket_path(root: Path, turn_id: str) -> tuple[Path, Path | None]:
    """The socket's path, and a private directory to remove afterwards when
    the workspace path is too long for a Unix socket name (deep DATA_DIRs)."""
    preferred = root / f"pve-{turn_id[:8]}.sock"
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH:
        return preferred, None
    private = Path(tempfile.mkdtemp(prefix="breakglass-pve-"))  # mode 0700
    return private / "pve.sock", private


@dataclass
class VerbTool:
    #: The turn the tool acts for; None between a warm CLI's turns (refused).
    command: StartTurn | None
    root: Path
    records: Records | None
    nc: Client
    events: EventLog
    policy: str = APPROVE_MUTATING
    #: BREAKGLASS_TWO_PERSON_VERBS: asked for approval whatever the policy
    #: (pve-executor runs them only against an operator's grant).
    two_person: frozenset[Verb] = frozenset()
    approval_timeout_seconds: float = 300.0
    verb_wait_seconds: float = 150.0
    #: Names the socket and config files (the turn's id, or a warm CLI's own).
    name: str = ""
    #: The session's VM: every verb the agent asks for acts on it, and only it.
    vm: Vm | None = None
    socket_path: Path = field(init=False)
    config_path: Path = field(init=False)
    _private_dir: Path | None = field(init=False, default=None)
    _server: asyncio.AbstractServer | None = field(init=False, default=None)
    _pending: dict[str, asyncio.Future[Decision]] = field(init=False, default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        name = self.name or (self.command.turn_id if self.command else new_id())
        self.socket_path, self._private_dir = _socket_path(self.root, name)
        self.config_path = self.root / f"mcp-{name[:8]}.json"

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> Path:
        """Listen on the socket and write the CLI's mcp config; returns its path."""
        self.socket_path.unlink(missing_ok=True)  # a crashed runner's leftover
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o177)  # born 0600: no window in which others may connect
        try:
            sock.bind(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(previous)
        try:
            os.chmod(self.socket_path, SOCKET_MODE)
            self._server = await asyncio.start_unix_server(self._connection, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            raise
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as config:
            json.dump(self.mcp_config(), config)
        return self.config_path

    def mcp_config(self) -> dict[str, Any]:
        """The CLI's `--mcp-config`: our MCP server and its socket, nothing else.
        No NATS URL, no credential: the MCP server needs none."""
        return {"mcpServers": {SERVER_NAME: {
            "command": sys.executable,
            "args": ["-m", "agent_runner.mcp_server", str(self.socket_path)],
            "env": {},
        }}}

    def bind(self, command: StartTurn, records: Records, policy: str) -> None:
        """Act for this turn from now on (a warm CLI's next turn)."""
        self.command, self.records, self.policy = command, records, policy

    async def unbind(self) -> None:
        """The turn ended: pending approvals end as denied, requests still
        running get a short grace, and nothing more acts for that turn."""
        await self._settle()
        self.command = self.records = None

    async def close(self) -> None:
        """Stop listening; pending approvals end as denied ("the turn ended")."""
        if self._server is not None:
            self._server.close()
        await self._settle()
        self.socket_path.unlink(missing_ok=True)
        self.config_path.unlink(missing_ok=True)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)

    async def _settle(self) -> None:
        for decided in self._pending.values():
            if not decided.done():
                decided.set_result(Decision(False, "agent-runner", "the turn ended before the operator answered"))
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # ------------------------------------------------------------ approvals

    def answer(self, approval_id: str, approved: bool, by: str) -> bool:
        """The operator's answer; False when no such approval is pending."""
        decided = self._pending.get(approval_id)
        if decided is None or decided.done():
            return False
        decided.set_result(Decision(approved, by))
        return True

    # ------------------------------------------------------------ requests

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                asked = decode_asked(await reader.readline())
            except (ValueError, msgspec.DecodeError) as exc:  # ValueError: over the line limit
                logger.warning("refused a malformed verb request: %s", exc)
                return
            if asked.verb not in ALL:  # the decoder already holds this; kept as its own check
                return
            answer = await self.request(asked.verb)
            writer.write(encode_line(answer))
            await writer.drain()
        except OSError as exc:  # the client went away (reset, broken pipe)
            logger.info("the verb tool's client went away: %s", exc)
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def request(self, verb: Verb) -> VerbAnswered:
        """One verb the agent asks for, policy applied; never raises."""
        if self.command is None or self.records is None:
            logger.warning("refused a verb request between turns (a process the last turn left behind?)")
            return VerbAnswered(verb=verb, exit_code=1, rejected=True,
                                summary=f"verb {verb.value}: refused, no turn is running; it did not run")
        command, records = self.command, self.records
        request_id = new_id()
        # Each connection is its own task: name its turn and verb for the
        # logs and for the headers of the command (eventbus.trace).
        trace.bind(session_id=command.session_id, turn_id=command.turn_id, verb=verb,
                   request_id=request_id, by=AGENT)
        logger.info("the agent asked for a verb (policy %s)", self.policy)
        try:
            if (self.policy == APPROVE_MUTATING and is_mutating(verb)) or verb in self.two_person:
                decision = await self._approval(verb, request_id)
                metrics.approval_decided(decision.approved, decision.by, decision.why)
                if decision.why:
                    # Denied without the operator (timeout, turn over): ours to record.
                    # The operator's own answer is recorded by the gateway, the only
                    # writer of an operator's decision (events.authorship).
                    await records.append(
                        VerbProgressed(verb=verb, phase=VerbPhase.DENIED, request_id=request_id,
                                       **records.envelope(decision.by)),
                        msg_id=f"{request_id}:{VerbPhase.DENIED.value}",
                    )
                if not decision.approved:
                    return self._denied(verb, decision)
                approved_by = decision.by
                approval_id = decision.approval_id
            else:
                await record_requested(self.events, self._requested(verb, request_id))
                approved_by = approval_id = None
            command = RunVerb(
                by=AGENT, origin="agent", request_id=request_id, verb=verb, session_id=command.session_id,
                approval_id=approval_id, vmid=self.vm.vmid if self.vm is not None else None,
            )
            result = await run_verb(self.nc, self.nc.jetstream(), command, wait_seconds=self.verb_wait_seconds)
        except Exception as exc:  # NATS away, a write that kept failing: the agent is told, the turn goes on
            logger.exception("verb %s could not be requested", verb.value)
            return VerbAnswered(
                verb=verb, exit_code=1, stderr=f"{type(exc).__name__}: {exc}",
                summary=f"verb {verb.value}: the request failed inside the runner; check the VM with `status`",
            )
        return self._answered(result, approved_by)

    async def _approval(self, verb: Verb, request_id: str) -> Decision:
        assert self.records is not None  # bound: `request` checked, `unbind` waits for us
        approval_id = new_id()
        decided: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending[approval_id] = decided  # before the event: an answer may come at once
        try:
            # `requested` before the `approval` the operator answers: an answer
            # (the gateway's `approved`) never lands ahead of it in the log.
            await record_requested(self.events, self._requested(verb, request_id))
            await self.records.append(
                ApprovalRequested(
                    approval_id=approval_id, verb=verb, reason=f"the agent asks to {verb.value} the VM",
                    request_id=request_id, **self.records.envelope(AGENT),
                ),
                msg_id=f"{request_id}:approval",
            )
            try:
                return dataclasses.replace(
                    await asyncio.wait_for(decided, self.approval_timeout_seconds), approval_id=approval_id)
            except TimeoutError:
                seconds = f"{self.approval_timeout_seconds:g}"
                return Decision(False, "timeout", f"no answer within {seconds} s: denied")
        finally:
            self._pending.pop(approval_id, None)

    def _requested(self, verb: Verb, request_id: str) -> VerbProgressed:
        assert self.records is not None
        return VerbProgressed(
            verb=verb, phase=VerbPhase.REQUESTED, request_id=request_id, **self.records.envelope(AGENT),
            vm=self.vm.name if self.vm is not None else None, vmid=self.vm.vmid if self.vm is not None else None,
        )

    @staticmethod
    def _denied(verb: Verb, decision: Decision) -> VerbAnswered:
        why = decision.why or f"denied by {decision.by}"
        return VerbAnswered(
            verb=verb, exit_code=1, denied=True, summary=f"verb {verb.value}: {why}; it did not run",
        )

    @staticmethod
    def _answered(result: VerbResult, approved_by: str | None) -> VerbAnswered:
        summary = f"verb {result.verb.value}: exit {result.exit_code}"
        if result.rejected:
            summary += " (refused, it did not run)"
        if approved_by:
            summary += f"; approved by {approved_by}"
        return VerbAnswered(
            verb=result.verb, exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr,
            rejected=result.rejected, summary=summary,
        )
