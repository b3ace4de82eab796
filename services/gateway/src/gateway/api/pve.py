"""Power-verb routes (SPEC §3): list the verbs, run one.

200 when the verb's exit code is 0; 502 with the same body otherwise
(non-zero exit, refused, timed out): the operator always sees stdout and
stderr. An unknown verb is 400 before anything is published.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from events.codec import encode
from events.types import UUID_PATTERN
from events.verbs import ALL, MUTATING, Verb

from events.vms import Vm

from .. import sessions, verbs
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
               400: {"description": "unknown verb"}, 404: {"description": "unknown session"},
               409: {"description": "the session is bound to another VM"}},
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
    result = await verbs.request_verb(
        bus, parsed, by=who, wait_seconds=settings.verb_wait_seconds, vm=vm, vms=settings.vms,
        session_id=body.session_id, idempotency_key=body.idempotency_key,
    )
    # The contract's own encoding of VerbResult is the documented body.
    return Response(encode(result), status_code=200 if result.exit_code == 0 else 502, media_type="application/json")
