"""The VMs of BREAKGLASS_VMS, and verbs addressed to one of them.

`GET /api/vms` lists them with what the bus knows of each right now (a
mutating verb holding its lock); `POST /api/vms/{vm}/pve/{verb}` runs a verb
on one, named by its name or its VMID. A VM not in the list is refused here,
before anything is published (pve-executor and the host script refuse it
again, each from its own list).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, Response
from nats.js.errors import KeyNotFoundError

from eventbus.topology import vm_lock_key
from events.vms import Vm, VmList

from ..auth import require_identity
from .deps import Identity, bus_of
from .pve import VerbBody, VerbOutcome, press

router = APIRouter(prefix="/api/vms", dependencies=[Depends(require_identity)], tags=["pve"])

VmParam = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                              description="the VM's name in BREAKGLASS_VMS, or its VMID")]


class Busy(msgspec.Struct, kw_only=True):
    verb: str
    by: str
    request_id: str


class VmState(msgspec.Struct, kw_only=True):
    name: str
    vmid: int
    node: str
    default: bool
    #: The agent can reach it over SSH (`ssh devvm` in its sessions).
    shell: bool
    #: A mutating verb running on it now (its lock), or None.
    busy: Busy | None = None


def resolve(vms: VmList, vm: str) -> Vm:
    """The VM a path names; 404 for a name or id not in the list."""
    found = vms.named(vm)
    if found is None and vm.isdigit():
        found = vms.by_vmid(int(vm))
    if found is None:
        raise HTTPException(404, f"VM {vm!r} is not in BREAKGLASS_VMS; this console acts on: "
                                 + ", ".join(f"{v.name} ({v.vmid})" for v in vms.vms))
    return found


@router.get("", responses={200: {"description": "`{vms: [{name, vmid, node, default, shell, busy}]}`"}})
async def list_vms(request: Request) -> Response:
    vms: VmList = request.app.state.settings.vms
    kv = await bus_of(request).kv()
    out = []
    for vm in vms.vms:
        out.append(VmState(name=vm.name, vmid=vm.vmid, node=vm.node, default=vm is vms.default,
                           shell=vm.devvm is not None, busy=await _busy(kv, vm.vmid)))
    return Response(msgspec.json.encode({"vms": out}), media_type="application/json")


async def _busy(kv, vmid: int) -> Busy | None:  # type: ignore[no-untyped-def]
    try:
        entry = await kv.get(vm_lock_key(vmid))
    except KeyNotFoundError:
        return None
    try:
        lock = msgspec.json.decode(entry.value or b"", type=Busy, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Busy(verb="unknown", by="unknown", request_id="unknown")
    return lock


@router.post(
    "/{vm}/pve/{verb}",
    response_model=VerbOutcome,
    responses={502: {"model": VerbOutcome, "description": "non-zero exit, refused, or timed out"},
               400: {"description": "unknown verb"}, 404: {"description": "unknown VM or session"},
               409: {"description": "the session is bound to another VM"}},
)
async def run_verb(
    request: Request, vm: VmParam, verb: str, who: Identity, body: Annotated[VerbBody | None, Body()] = None,
) -> Response:
    return await press(request, resolve(request.app.state.settings.vms, vm), verb, who, body)
