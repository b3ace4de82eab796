"""An agent's verb acts on its session's VM only.

agent-runner names the VM of the session in the commands it publishes, but
its NATS credential is readable wherever the agent runs, so the name is
checked here against the session's record (the gateway's KV entry, which
neither the agent nor agent-runner may write): an agent verb for another
VM, or for a session that does not exist, is refused before anything is
sent. An operator's verb is not bound: the operator may act on any listed
VM, in a session or not (the gateway checks its session binding), except
with an approval: a grant is for a request in a session, so a verb carrying
one (an operator's two-person press, an agent's approved verb) acts on that
session's VM only, whoever publishes it (`elsewhere`, asked before the
grant is redeemed, so a copy re-sent for another VM neither runs nor
spends it).
"""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from events.codec import ContractError, decode
from events.commands import RunVerb, SessionRecord
from eventbus.topology import session_key
from events.vms import Vm, VmList

from .grants import AGENT


class SessionVms:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def elsewhere(self, cmd: RunVerb, vm: Vm, vms: VmList) -> str | None:
        """Why a verb carrying an approval may not act on `vm`: its session
        exists and is about another VM. None otherwise (no approval, no such
        session: the grant check answers those)."""
        if cmd.approval_id is None or cmd.session_id is None:
            return None
        try:
            record = decode((await self._kv.get(session_key(cmd.session_id))).value or b"", SessionRecord)
        except (KeyNotFoundError, ContractError):
            return None
        bound = record.vm or vms.default.name
        if bound != vm.name:
            return (f"this session is about VM {bound}, not {vm.name} ({vm.vmid}); an approved verb acts on its "
                    "session's VM only")
        return None

    async def refusal(self, cmd: RunVerb, vm: Vm, vms: VmList) -> str | None:
        """Why the agent may not act on `vm` in its session, or None."""
        if cmd.origin != AGENT:
            return None
        if cmd.session_id is None:
            return "an agent's verb must name its session"
        try:
            record = decode((await self._kv.get(session_key(cmd.session_id))).value or b"", SessionRecord)
        except (KeyNotFoundError, ContractError):
            return f"session {cmd.session_id} does not exist"
        bound = record.vm or vms.default.name
        if bound != vm.name:
            return f"this session is about VM {bound}, not {vm.name} ({vm.vmid}); the agent acts on its session's VM only"
        return None
