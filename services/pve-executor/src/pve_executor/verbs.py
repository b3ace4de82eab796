"""One power verb, from command to reply: "what happens on a press".

    check the verb again (an enum value, one of six; nothing else is sent)
    -> claim the idempotency key (a repeated key gets the first answer)
    -> an agent's mutating verb: redeem the operator's grant (or refuse)
    -> check the configuration (fail closed, with a sentence)
    -> take the VM's lock for a mutating verb (busy: refuse at once)
    -> record `running`, run the bare verb over SSH, record `done`
    -> reply on the request's reply subject

Every path ends in exactly one `done` event (on the session when there is
one, and always on the audit subject) and one reply, so an auditor sees
every answer the requester saw. `running` is recorded only when the verb is
really about to be sent (the host reached, its key verified, our key
accepted), and if it cannot be recorded the verb is not sent: nothing
reaches the hypervisor unaudited.

`rejected` means "nothing was run on the host": refusals, busy, not
configured, and SSH failures before the command was sent (unknown host key,
refused key, no connection). A time-out after the command was sent is not a
rejection: the host may have acted.

An executor can die mid-verb (kill -9, a lost host). A mutating verb's VM
lock carries a short lease its holder renews, and what is known about the
verb: once the lease lapses, any executor (a restarted one, a replica:
`sweep`, every few seconds and before each mutating verb) frees the lock and
ends the verb `lost` the way it would have ended: one `done` (with `lost`
set, `rejected` when the command had surely not been sent), the key's
record, a reply. Nothing is ever run again for it. A read-only verb takes
no VM lock, so it holds the same lease on a read slot instead (records): an
executor that dies mid-`status` leaves no press waiting in silence either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from events import subjects
from eventbus import verb_records
from events.codec import encode
from events.commands import Command, RunVerb, VerbDone, VerbRecord, VerbResult, VerbRunning
from events.kinds import VerbPhase, VerbProgressed
from eventbus.log import EventLog
from eventbus.retry import Backoff, retrying
from events.types import is_uuid, utcnow
from events.verbs import ALL, Verb, is_mutating
from events.vms import Vm

from . import metrics
from .binding import SessionVms
from .grants import Grants, needs_grant
from .output import fit
from .records import HeldLock, IdempotencyRecords, VmLock, VmLocks
from .settings import Settings
from .ssh import BeforeSend, Completed

logger = logging.getLogger("pve-executor.verbs")

EX_FAILED = 1
EX_REFUSED = 64
EX_TEMPFAIL = 75
EX_CONFIG = 78

#: How long a failed event append is retried (NATS reconnecting) before giving up.
APPEND_RETRY_SECONDS = 10.0
#: Room left in a NATS message for everything but a verb's output.
ENVELOPE_BYTES = 4096


class Runner(Protocol):
    async def run(self, command: str, timeout: float, before_send: BeforeSend | None = None) -> Completed: ...


Publish = Callable[[str, bytes], Awaitable[None]]


class NotRecorded(Exception):
    """The audit log could not take the `running` event: do not run."""


@dataclass
class VerbHandler:
    settings: Settings
    runner: Runner | None
    events: EventLog
    records: IdempotencyRecords
    locks: VmLocks
    publish: Publish
    grants: Grants | None = None
    #: Checks an agent's verb against its session's VM (binding); None: unchecked (tests of other paths).
    bindings: SessionVms | None = None
    max_payload: int = 1024 * 1024
    append_retry_seconds: float = APPEND_RETRY_SECONDS
    #: This process, as VM locks name their holder.
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}")
    #: Requests of this process that hold the VM lock or a read slot right now.
    holding: set[str] = field(default_factory=set)

    async def handle(self, command: Command) -> None:
        match command:
            case RunVerb():
                await self.run_verb(command)
            case _:
                logger.warning("ignored a %s: pve-executor only runs verbs", type(command).__name__)

    async def run_verb(self, cmd: RunVerb) -> None:
        started = time.monotonic()
        # The decoder only yields enum values; a RunVerb built in-process
        # with free text fails here, before anything is claimed, recorded or run.
        verb = Verb(cmd.verb)
        key = cmd.idempotency_key
        claimed = False
        try:
            if key is not None:
                first = await self.records.claim(key, VerbRunning(request_id=cmd.request_id, verb=verb))
                if first is not None:
                    await self._answer(cmd, await self._first_answer(cmd, verb, first))
                    metrics.answered(verb, "duplicate", started)
                    return
                claimed = True
            result = await self._execute(cmd, verb)
        except Exception as exc:  # whatever broke, the requester and the audit log get an answer
            logger.exception("verb %s (request %s) failed inside pve-executor", verb.value, cmd.request_id)
            result = VerbResult(
                verb=verb, exit_code=EX_FAILED, rejected=key is not None and not claimed,
                stderr=f"pve-executor failed while handling the verb ({type(exc).__name__}); check with `status`",
            )
        result = fit(result, self.max_payload, ENVELOPE_BYTES)
        if claimed and not await self._finish(cmd, verb, result):
            logger.error("request %s was ended `lost` while it ran (this executor's lease lapsed); its real "
                      "outcome, exit %d: %s", cmd.request_id, result.exit_code, (result.stdout + result.stderr)[:500])
            return
        await self._answer(cmd, result)
        metrics.answered(verb, metrics.outcome_of(result), started)

    async def _finish(self, cmd: RunVerb, verb: Verb, result: VerbResult) -> bool:
        """Store the result under the idempotency key; False when the key
        was ended `lost` meanwhile (the answer given then stands)."""
        try:
            return await self.records.finish(cmd.idempotency_key or "", VerbDone(
                request_id=cmd.request_id, verb=verb, result=result))
        except Exception:
            logger.exception("could not store the result of request %s under its idempotency key", cmd.request_id)
            return True

    async def sweep(self) -> bool:
        """End the verbs of an executor that died running them (their
        leases lapsed) as `lost`: a mutating verb's, freeing the VM, and
        read-only ones'. True when a verb was ended."""
        alive = self._alive
        abandoned = [held for held in [await self.locks.abandoned(vmid, alive=alive) for vmid in self.settings.vms.vmids]
                     if held is not None]
        abandoned += await self.locks.abandoned_reads(alive=alive)
        ended = False
        for held in abandoned:
            ended = await self._end_lost(held) or ended
        return ended

    async def _end_lost(self, held: HeldLock) -> bool:
        """Free a lapsed lease (CAS: this decides who ends its verb) and end
        its verb `lost`. The `done` message id is the one the dead executor
        would have used, so the log holds one `done` whatever races."""
        if not await self.locks.release(held):
            return False
        lock = held.lock
        if lock.owner == self.owner:  # a verb of ours that ended while its release failed: its `done` is ours
            logger.info("freed %s, left behind by request %s of this executor", held.key, lock.request_id)
            return False
        if lock.verb not in ALL:  # unreadable: nothing known to record
            logger.warning("freed an unreadable %s", held.key)
            return False
        verb = Verb(lock.verb)
        cmd = RunVerb(by=lock.by, request_id=lock.request_id, verb=verb, session_id=lock.session_id,
                      idempotency_key=lock.idempotency_key, vmid=lock.vmid)
        result = lost(verb, lock.sent)
        logger.warning("verb %s (request %s, by %s) was lost with its executor %s; %s", verb.value, lock.request_id,
                    lock.by, lock.owner or "(unknown)", "it may have run" if lock.sent else "it was not sent")
        if lock.idempotency_key is not None and not await self._finish(cmd, verb, result):
            return False  # its executor finished it after all
        await self._done(cmd, result)
        if is_uuid(cmd.request_id):  # else a lock from before request ids were UUIDs: no one waits
            await self._reply(cmd, result)
        metrics.answered(verb, "lost", time.monotonic())
        return True

    async def _answer(self, cmd: RunVerb, result: VerbResult) -> None:
        """`done` on the log, then the reply: whoever reads the log after
        the reply arrived finds the outcome there."""
        await self._done(cmd, result)
        await self._reply(cmd, result)

    async def _execute(self, cmd: RunVerb, verb: Verb) -> VerbResult:
        """The checks in the module's order, any of which answers with
        nothing run, then the verb under its lease."""
        vm = self.settings.vms.by_vmid(cmd.vmid)
        if vm is None:
            logger.warning("refused %s on VM %s (request %s, by %s): not in BREAKGLASS_VMS", verb.value, cmd.vmid,
                        cmd.request_id, cmd.by)
            return _refused(verb, f"VM {cmd.vmid} is not one this console may act on (BREAKGLASS_VMS lists "
                                  f"{', '.join(str(v) for v in self.settings.vms.vmids)}); nothing was run")
        refused = await self._refusal(cmd, verb, vm)
        if refused is not None:
            return refused
        problem = self.settings.problem()
        if problem is not None or self.runner is None:
            return VerbResult(verb=verb, exit_code=EX_CONFIG, rejected=True,
                              stderr=problem or "pve-executor is not configured")
        if not is_mutating(verb):
            return await self._run_read(cmd, verb, vm, self.runner)
        return await self._run_mutating(cmd, verb, vm, self.runner)

    async def _refusal(self, cmd: RunVerb, verb: Verb, vm: Vm) -> VerbResult | None:
        """Whether this requester may act on this VM: a verb carrying an
        approval on its session's VM only (asked before the grant is
        redeemed, so a copy re-sent for another VM does not spend it), the
        grant when the policy asks for one, an agent on its session's VM
        only. None: it may."""
        elsewhere = await self.bindings.elsewhere(cmd, vm, self.settings.vms) if self.bindings is not None else None
        if elsewhere is not None:
            logger.warning("refused %s's %s on VM %d (request %s): %s", cmd.by, verb.value, vm.vmid, cmd.request_id,
                        elsewhere)
            return _refused(verb, elsewhere)
        ungranted = await self._grant_refusal(cmd, verb)
        if ungranted is not None:
            logger.warning("refused %s's %s (request %s): %s", cmd.by, verb.value, cmd.request_id, ungranted)
            return _refused(verb, ungranted)
        unbound = await self.bindings.refusal(cmd, vm, self.settings.vms) if self.bindings is not None else None
        if unbound is not None:
            logger.warning("refused the agent's %s on VM %d (request %s): %s", verb.value, vm.vmid, cmd.request_id,
                        unbound)
            return _refused(verb, unbound)
        return None

    async def _grant_refusal(self, cmd: RunVerb, verb: Verb) -> str | None:
        """Redeem the grant a verb needs (an agent's mutating verb under
        approve-mutating, any two-person verb); why it may not run, or None."""
        if not needs_grant(cmd, verb, self.settings.verb_policy, self.settings.two_person):
            return None
        if self.grants is None:
            return "no grant store"
        return await self.grants.redeem(cmd, verb, two_person=verb in self.settings.two_person)

    async def _run_read(self, cmd: RunVerb, verb: Verb, vm: Vm, runner: Runner) -> VerbResult:
        """A read-only verb takes no VM lock (it runs beside anything), only
        a read slot whose lease lets a sweep end it `lost`; with every slot
        held it still runs, without that safety net."""
        read = await self.locks.take_read(self._lock_for(cmd, verb))
        if read is None:
            logger.warning("every read lease slot is held: verb %s (request %s) runs without a lease",
                        verb.value, cmd.request_id)
            return await self._run(cmd, verb, vm, runner)
        async with self._leased(read) as lease:
            return await self._run(cmd, verb, vm, runner, lease)

    async def _run_mutating(self, cmd: RunVerb, verb: Verb, vm: Vm, runner: Runner) -> VerbResult:
        """A mutating verb runs only while fresh (not late, after an outage
        the operator has moved on from) and alone on its VM (busy is
        refused at once, never queued)."""
        waited = (utcnow() - cmd.ts).total_seconds()
        if waited > self.settings.mutating_max_age_seconds:
            logger.warning("verb %s (request %s) expired after %.0f s on the queue; not run", verb.value, cmd.request_id,
                        waited)
            return VerbResult(verb=verb, exit_code=EX_TEMPFAIL, rejected=True, stderr=(
                f"expired: requested {waited:.0f} s ago, while pve-executor was unavailable; "
                "not run late. Check `status` and press again if it is still needed"
            ))
        try:
            await self.sweep()  # a dead executor's lapsed lock must not read as busy
        except Exception as exc:
            logger.warning("could not check the VM lock for a lost verb: %s", exc)
        held = await self.locks.take(vm.vmid, self._lock_for(cmd, verb))
        if not isinstance(held, HeldLock):
            logger.info("verb %s (request %s) refused: VM %d is busy with %s", verb.value, cmd.request_id, vm.vmid,
                     held.verb)
            return VerbResult(verb=verb, exit_code=EX_TEMPFAIL, rejected=True, stderr=(
                f"busy: another mutating verb is running on VM {vm.vmid} "
                f"({held.verb}, requested by {held.by}, request {held.request_id}); try again when it is done"
            ))
        async with self._leased(held) as lease:
            return await self._run(cmd, verb, vm, runner, lease)

    def _lock_for(self, cmd: RunVerb, verb: Verb) -> VmLock:
        """What a lease records: enough to end the verb `lost` without us."""
        return VmLock(request_id=cmd.request_id, verb=verb.value, by=cmd.by, taken_at=0, owner=self.owner,
                      session_id=cmd.session_id, idempotency_key=cmd.idempotency_key, vmid=cmd.vmid)

    def _alive(self, lock: VmLock) -> bool:
        return lock.owner == self.owner and lock.request_id in self.holding

    @contextlib.asynccontextmanager
    async def _leased(self, held: HeldLock) -> AsyncIterator["Lease"]:
        """Hold the lock (the VM's, or a read slot) for the body, renewing
        its lease; then free it
        (through NATS reconnects; if that fails, the lock lapses and the
        sweep frees it: never an error in place of the verb's result)."""
        lease = Lease(self.locks, held)
        self.holding.add(held.lock.request_id)
        keeper = asyncio.create_task(lease.keep(self.settings.verb_lease_seconds / 3))
        try:
            yield lease
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self.holding.discard(held.lock.request_id)
            if lease.held is not None:
                await self._release(lease.held)

    async def _release(self, held: HeldLock) -> None:
        try:
            await retrying(lambda: self.locks.release(held), Backoff(self.settings.verb_lease_seconds, 0.5))
        except Exception as exc:
            logger.warning("could not free %s (%s); it lapses and is freed then", held.key, exc)

    async def _run(self, cmd: RunVerb, verb: Verb, vm: Vm, runner: Runner, lease: "Lease | None" = None) -> VerbResult:
        async def announce() -> None:
            # Called once the host is reached and verified, before the verb
            # is sent: `running` means it really is about to run.
            await self._record(cmd, VerbProgressed(
                session_id=cmd.session_id, by=cmd.by, verb=verb, phase=VerbPhase.RUNNING, request_id=cmd.request_id,
                vm=vm.name, vmid=vm.vmid,
            ), "running")
            # The lock says so too (an executor ending it `lost` tells "may
            # have run" from "not sent"); a lock lost already: do not send.
            try:
                marked = lease is None or await lease.mark_sent()
            except Exception as exc:
                raise NotRecorded(f"its lease cannot say so: {exc}") from exc
            if not marked:
                raise NotRecorded("its lease was lost (this executor was taken for dead)")

        started = asyncio.get_running_loop().time()
        try:
            completed = await runner.run(self.settings.command(verb.value, vm), self.settings.verb_timeout_seconds,
                                         announce)
        except NotRecorded as exc:
            return VerbResult(verb=verb, exit_code=EX_TEMPFAIL, rejected=True, stderr=(
                f"not run: the audit log cannot record it ({exc}); nothing reaches the host unaudited"
            ))
        logger.info("verb %s on VM %d (request %s, by %s) exited %d in %.2f s", verb.value, vm.vmid, cmd.request_id,
                 cmd.by, completed.exit_code, asyncio.get_running_loop().time() - started)
        return VerbResult(verb=verb, exit_code=completed.exit_code, stdout=completed.stdout,
                          stderr=completed.stderr, rejected=not completed.started)

    async def _first_answer(self, cmd: RunVerb, verb: Verb, first: VerbRecord) -> VerbResult:
        """The answer for a key that was used before: its first result."""
        if first.verb != verb:
            return VerbResult(verb=verb, exit_code=EX_REFUSED, rejected=True, stderr=(
                f"refused: this idempotency key was first used for `{first.verb.value}` (request "
                f"{first.request_id}); a key names one press, use a new key for a new verb"
            ))
        result = verb_records.result_of(first)
        if result is None:
            wait = self.settings.duplicate_wait
            logger.info("request %s repeats the key of request %s; waiting up to %g s for its result",
                     cmd.request_id, first.request_id, wait)
            result = await self.records.wait_done(cmd.idempotency_key or "", wait)
            if result is None:
                return VerbResult(verb=verb, exit_code=EX_TEMPFAIL, rejected=True, stderr=(
                    f"already running: request {first.request_id} with the same idempotency key has not "
                    f"finished after {wait:g} s (its result will be on the audit log); not run again"
                ))
        logger.info("request %s repeats the key of request %s: answered with its result, not run again",
                 cmd.request_id, first.request_id)
        return result

    async def _done(self, cmd: RunVerb, result: VerbResult) -> None:
        vm = self.settings.vms.by_vmid(cmd.vmid)
        try:
            await self._record(cmd, VerbProgressed(
                session_id=cmd.session_id, by=cmd.by, verb=result.verb, phase=VerbPhase.DONE,
                request_id=cmd.request_id, exit_code=result.exit_code, stdout=result.stdout,
                stderr=result.stderr, rejected=result.rejected, lost=result.lost,
                vm=vm.name if vm is not None else None, vmid=vm.vmid if vm is not None else cmd.vmid,
            ), "done")
        except NotRecorded:
            logger.error("the outcome of request %s (%s, exit %d) is missing from the log", cmd.request_id,
                      result.verb, result.exit_code)

    async def _record(self, cmd: RunVerb, event: VerbProgressed, phase: str) -> None:
        """Append to the session (if any), then the audit subject. Message
        ids come from the request and phase, so a retry never doubles."""
        if cmd.session_id is not None:
            await self._append(lambda: self.events.append(event, msg_id=f"{cmd.request_id}:{phase}"))
        await self._append(lambda: self.events.append_audit("verb", event, msg_id=f"{cmd.request_id}:{phase}:audit"))

    async def _append(self, attempt: Callable[[], Awaitable[int]]) -> None:
        try:
            await retrying(attempt, Backoff(self.append_retry_seconds, 0.2, most=2.0),
                           on_retry=lambda exc: logger.warning("appending a verb event failed (%s); retrying", exc))
        except Exception as exc:
            raise NotRecorded(str(exc) or type(exc).__name__) from exc

    async def _reply(self, cmd: RunVerb, result: VerbResult) -> None:
        try:
            await self.publish(subjects.verb_reply(cmd.request_id), encode(result))
        except Exception:
            logger.exception("could not send the reply of request %s (its outcome is on the audit log)", cmd.request_id)


def _refused(verb: Verb, why: str) -> VerbResult:
    """Nothing was run; `why` is the sentence the requester reads."""
    return VerbResult(verb=verb, exit_code=EX_REFUSED, rejected=True, stderr=f"refused: {why}")


def lost(verb: Verb, sent: bool) -> VerbResult:
    """The answer for a verb whose executor died running it."""
    if sent and not is_mutating(verb):
        why = "lost: pve-executor stopped while running this read-only verb; nothing was changed. Press again"
    elif sent:
        why = ("lost: pve-executor stopped while running this verb; the host may have run it. "
               "Check with `status` before pressing again")
    else:
        why = "lost: pve-executor stopped before sending this verb to the host; nothing ran. Press again"
    return VerbResult(verb=verb, exit_code=EX_FAILED, rejected=not sent, lost=True, stderr=why)


@dataclass
class Lease:
    """A held VM lock or read slot kept alive while its verb runs (`VerbHandler._leased`)."""

    locks: VmLocks
    held: HeldLock | None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def keep(self, every: float) -> None:
        while self.held is not None:
            await asyncio.sleep(every)
            try:
                await self._renew()
            except Exception as exc:  # NATS briefly away: the lease has slack, try again next round
                logger.warning("could not renew a verb's lease: %s", exc)

    async def mark_sent(self) -> bool:
        return await self._renew(sent=True)

    async def _renew(self, *, sent: bool = False) -> bool:
        async with self._lock:
            if self.held is None:
                return False
            key = self.held.key
            self.held = await self.locks.renew(self.held, sent=sent)
            if self.held is None:
                logger.error("%s was taken from this executor while its verb ran (its lease lapsed)", key)
            return self.held is not None

