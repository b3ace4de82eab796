"""`GET /api/health/checks`: the doctor's links the gateway can check itself,
for the PWA's health view. One line verdict and one fix per link.

What the gateway can check end to end from where it stands: the bus (NATS,
streams, KV bucket), and each VM's whole verb path (gateway -> pve-executor
-> SSH -> the host script -> qm) by asking for `status` on it, the way a
press would (so it is on the audit log, by the operator who looked). The
links only the agent-runner's host can see (the CLI, the model API and its
credential, the sandbox) are `breakglass doctor`'s; the view names them
instead of guessing. Nothing secret is in the output: verdicts quote exit
codes and the executor's own one-line reasons, never settings values.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
from fastapi import APIRouter, Depends, Request, Response

from eventbus import trace
from events.commands import VerbResult
from events.types import new_id
from events.verbs import Verb
from events.vms import Vm

from .. import verbs
from ..auth import require_identity
from ..bus import Bus
from .deps import Identity, bus_of

router = APIRouter(prefix="/api/health", dependencies=[Depends(require_identity)], tags=["ops"])

#: A health view must answer within a few seconds (an operator is waiting on
#: a phone): a VM whose status takes longer is reported as not answering.
VERB_WAIT_SECONDS = 5.0
EX_REFUSED, EX_CONFIG, EX_TIMEOUT, EX_SSH = 64, 78, 124, 255


class Verdict(msgspec.Struct, frozen=True):
    check: str
    status: Literal["ok", "warn", "fail", "skip"]
    summary: str
    fix: str = ""


class Report(msgspec.Struct, frozen=True):
    ok: bool
    checks: list[Verdict]


@router.get("/checks", responses={200: {"description": "`{ok, checks: [{check, status, summary, fix}]}`"}})
async def checks(request: Request, who: Identity) -> Response:
    settings = request.app.state.settings
    bus = bus_of(request)
    verdicts = [await _bus(bus)]
    if verdicts[0].status == "ok":
        verdicts += await asyncio.gather(*(_vm(bus, vm, who, settings.vms) for vm in settings.vms.vms))
    else:
        verdicts += [Verdict(f"vm:{vm.name}", "skip", "not checked: the bus is down") for vm in settings.vms.vms]
    if settings.agent_unsandboxed:
        verdicts.append(Verdict("sandbox", "warn", "the agent runs WITHOUT its sandbox",
                                "install bubblewrap on the agent-runner host and unset "
                                "BREAKGLASS_ALLOW_UNSANDBOXED_AGENT"))
    verdicts.append(Verdict("agent", "skip", "the Claude CLI, the model API and the sandbox are checked on the "
                            "agent-runner's host", "run `breakglass doctor` there"))
    report = Report(ok=not any(v.status == "fail" for v in verdicts), checks=verdicts)
    return Response(msgspec.json.encode(report), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


async def _bus(bus: Bus) -> Verdict:
    reason = await bus.not_ready_reason()
    if reason:
        return Verdict("nats", "fail", f"the bus is not ready: {reason}",
                       "start NATS (`breakglass up`) and check BREAKGLASS_NATS_URL on the gateway")
    return Verdict("nats", "ok", "NATS connected; the streams and the KV bucket exist")


async def _vm(bus: Bus, vm: Vm, who: str, vms) -> Verdict:  # type: ignore[no-untyped-def]
    # One HTTP request asks for several verbs: each needs its own request id
    # (the reply subject and the command's de-duplication id come from it).
    with trace.bound(request_id=new_id()):
        result = await verbs.request_verb(bus, Verb.STATUS, by=who, wait_seconds=VERB_WAIT_SECONDS, vm=vm, vms=vms)
    return verdict(vm, result)


def verdict(vm: Vm, result: VerbResult) -> Verdict:
    """One line for a `status` answer: what it says about the link."""
    name = f"vm:{vm.name}"
    where = f"VM {vm.name} ({vm.vmid} on {vm.node})"
    last = (result.stderr.strip().splitlines() or [""])[-1][:200]
    if result.exit_code == 0:
        state = (result.stdout.strip().splitlines() or ["answered"])[0][:120]
        return Verdict(name, "ok", f"{where}: {state}")
    if result.exit_code == EX_TIMEOUT and not result.stdout and "no answer from pve-executor" in result.stderr:
        return Verdict(name, "fail", f"{where}: pve-executor did not answer within {VERB_WAIT_SECONDS:g} s",
                       "start pve-executor (`breakglass up` does) and read its log")
    if result.exit_code == EX_CONFIG:
        return Verdict(name, "fail", f"{where}: {last or 'not configured'}",
                       "run `breakglass init`, then `breakglass doctor` for the SSH links")
    if result.exit_code == EX_REFUSED:
        return Verdict(name, "fail", f"{where}: {last or 'refused'}",
                       "list the VM in the host's /etc/breakglass-pve.conf (VMIDS=): rerun the installer "
                       "`breakglass init` wrote")
    if result.exit_code == EX_SSH:
        return Verdict(name, "fail", f"{where}: {last or 'SSH failed'}", "run `breakglass doctor` for the SSH link")
    return Verdict(name, "fail", f"{where}: `status` failed (exit {result.exit_code}): {last}",
                   "read the node's syslog (breakglass-pve) and `breakglass doctor`")
