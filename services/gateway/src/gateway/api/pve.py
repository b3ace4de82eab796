"""Power-verb routes (SPEC §3): list the verbs, run one.

200 when the verb's exit code is 0; 502 with the same body otherwise
(non-zero exit, refused, timed out): the operator always sees stdout and
stderr. An unknown verb is 400 before anything is published.

With step-up on, a mutating verb first needs the operator's passkey (428
with the WebAuthn options, then the same request with `step_up`;
gateway.stepup). Under the two-person rule a press of a listed verb is 202:
it waits in its session for another operator's Approve (gateway.presses).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from eventbus import trace
from events.codec import encode
from events.types import UUID_PATTERN, new_id
from events.verbs import ALL, MUTATING, Verb

from events.vms import Vm

from .. import presses, sessions, stepup, verbs
from ..auth import require_identity
from .deps import Identity, bus_of

router = APIRouter(prefix="/api/pve", dependencies=[Depends(require_identity)], tags=["pve"])


class VerbList(BaseModel):
    verbs: list[str]
    mutating: list[str]


class VerbBody(BaseModel):
    session_id: str | None = Field(default=None, pattern=UUID_PATTERN, description="record the verb in this session")
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$",
        description="a retried request with the same key never runs the verb twice",
    )
    step_up: dict[str, Any] | None = Field(
        default=None, description="the passkey assertion (a PublicKeyCredential as JSON) the 428 asked for")


class PressPending(BaseModel):
    pending: bool = True
    approval_id: str
    request_id: str
    detail: str


class VerbOutcome(BaseModel):
    verb: str
    exit_code: int
    stdout: str
    stderr: str
    rejected: bool
    lost: bool = Field(default=False, description="pve-executor died running it: the outcome is unknown; "
                                                  "`rejected` true means it surely did not run")


@router.get("/verbs", response_model=VerbList)
async def list_verbs() -> VerbList:
    return VerbList(verbs=[v.value for v in ALL], mutating=[v.value for v in ALL if v in MUTATING])


@router.post(
    "/{verb}",
    response_model=VerbOutcome,
    responses={502: {"model": VerbOutcome, "description": "non-zero exit, refused, or timed out"},
               202: {"model": PressPending, "description": "two-person rule: waits for another operator"},
               400: {"description": "unknown verb"}, 404: {"description": "unknown session"},
               409: {"description": "the session is bound to another VM"},
               428: {"description": "step-up: confirm with a passkey (`step_up` holds the WebAuthn options)"},
               403: {"description": "step-up refused (stale, replayed or mismatched assertion; no passkey)"}},
)
async def run_verb(
    request: Request, verb: str, who: Identity, body: Annotated[VerbBody | None, Body()] = None,
) -> Response:
    """The verb on the default VM (the first of BREAKGLASS_VMS): the route
    of clients from before many VMs; `/api/vms/{vm}/pve/{verb}` names one."""
    return await press(request, request.app.state.settings.vms.default, verb, who, body)


async def press(request: Request, vm: Vm, verb: str, who: str, body: VerbBody | None) -> Response:
    """Run `verb` on `vm` (already resolved from the allow-list) for `who`."""
    try:
        parsed = Verb(verb)
    except ValueError:
        raise HTTPException(400, f"unknown verb; allowed: {', '.join(v.value for v in ALL)}") from None
    body = body or VerbBody()
    bus = bus_of(request)
    settings = request.app.state.settings
    if body.session_id is not None:
        try:
            record = await sessions.get_session(bus, body.session_id)
        except sessions.SessionNotFound:
            raise HTTPException(404, "unknown session") from None
        bound = record.vm or settings.vms.default.name
        if bound != vm.name:
            raise HTTPException(409, f"this session is about VM {bound!r}, not {vm.name!r}; "
                                     "open a session for that VM to record its verbs")
    elif parsed in settings.two_person:
        raise HTTPException(400, f"`{parsed.value}` needs a second operator (two-person rule): press it in a "
                                 "session, where another operator can approve it")
    if stepup.required(settings, parsed):
        binding = stepup.Binding(user=who, action="press", verb=parsed.value, session_id=body.session_id,
                                 subject=body.idempotency_key or "", vm=vm.name)
        request_id = trace.current().get("request_id") or new_id()
        trace.bind(request_id=await stepup.StepUp(bus, settings).demand(binding, body.step_up, request_id=request_id))
    if parsed in settings.two_person:
        assert body.session_id is not None
        request_id = trace.current().get("request_id") or new_id()
        approval_id = await presses.ask(bus, parsed, by=who, session_id=body.session_id, request_id=request_id,
                                       vm=vm)
        pending = PressPending(approval_id=approval_id, request_id=request_id,
                               detail=f"`{parsed.value}` waits for another operator's approval (two-person rule)")
        return JSONResponse(pending.model_dump(), status_code=202)
    result = await verbs.request_verb(
        bus, parsed, by=who, wait_seconds=settings.verb_wait_seconds, vm=vm, vms=settings.vms,
        session_id=body.session_id, idempotency_key=body.idempotency_key,
    )
    # The contract's own encoding of VerbResult is the documented body.
    return Response(encode(result), status_code=200 if result.exit_code == 0 else 502, media_type="application/json")
