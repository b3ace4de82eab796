"""One Alertmanager notification, handled: which sessions its alerts go
to, which alerts are recorded, which triages start.

Per alert group (Alertmanager's group key, per VM):
1. its session: the group's own while any of its alerts still fires; else
   the VM's alert session while the VM's window is open (a storm joins one
   session); else a new session, created by `alertmanager`;
2. each alert whose status differs from the last one recorded there is
   recorded as an `alert` event (repeats are not: Alertmanager resends the
   whole group every `repeat_interval`);
3. a triage starts when an alert newly fires, no triage of the group runs,
   and the VM's window is closed (then the window opens, in this session).

Nothing here runs the triage: `start_triage` is handed the session and the
alert, and runs it in the background (alerts.triage), so Alertmanager gets
its answer at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from events.kinds import AlertReceived, AlertStatus
from eventbus.topology import alert_group_key, alert_vm_key
from events.types import new_id, utcnow

from .. import sessions
from ..bus import Bus
from ..settings import Settings
from . import state
from .payload import Webhook, WebhookAlert
from .state import GroupState, VmWindow

log = logging.getLogger("gateway.alerts")

ALERTMANAGER = "alertmanager"
#: Alertmanager's "no end time yet" (Go's zero time).
_ZERO_YEAR = 1


@dataclass
class Receipt:
    """What the receiver answers: which sessions, which triages started."""

    alerts: int = 0
    recorded: int = 0
    ignored: int = 0
    sessions: list[str] = field(default_factory=list)
    triages: list[str] = field(default_factory=list)


StartTriage = Callable[[str, str, AlertReceived, str], None]


async def receive(bus: Bus, settings: Settings, hook: Webhook, start_triage: StartTriage) -> Receipt:
    receipt = Receipt(alerts=len(hook.alerts))
    by_vm: dict[str, list[WebhookAlert]] = {}
    for alert in hook.alerts:
        vm = settings.alert_vms.vm_for({**hook.common_labels, **alert.labels})
        if vm is None:
            receipt.ignored += 1
            continue
        by_vm.setdefault(vm, []).append(alert)
    for vm, alerts in by_vm.items():
        await _group(bus, settings, hook.group_key, vm, alerts, receipt, start_triage)
    return receipt


async def _group(
    bus: Bus, settings: Settings, group_key: str, vm: str, alerts: list[WebhookAlert],
    receipt: Receipt, start_triage: StartTriage,
) -> None:
    kv = await bus.kv()
    key = alert_group_key(f"{vm}\n{group_key}")
    window = settings.alert_window_seconds

    opened: list[str] = []  # a session opened by an attempt that lost its CAS is reused, not opened twice
    fires = any(alert.status == "firing" for alert in alerts)
    if not fires and (await state.load(kv, key, GroupState))[0] is None:
        receipt.ignored += len(alerts)  # resolved alerts of a group never seen: nothing to resolve
        return

    async def session_for(group: GroupState | None) -> str:
        # A closed group keeps its session for late (retried) resolutions;
        # only a new firing opens the next incident.
        if group is not None and (not group.closed or not fires):
            return group.session_id
        if not opened:
            opened.append(await _vm_session(bus, vm, window, bound=vm if settings.vms.named(vm) else None))
        return opened[0]

    # 1 + 2: the session, and the alerts whose status changed, recorded.
    async def record(group: GroupState | None) -> tuple[GroupState, tuple[str, list[AlertReceived]]]:
        session_id = await session_for(group)
        seen = dict(group.alerts) if group is not None and group.session_id == session_id else {}
        changed = [alert for alert in alerts if seen.get(alert.fingerprint) != alert.status]
        events = [_event(session_id, vm, alert) for alert in changed]
        for event, alert in zip(events, changed):
            starts = alert.starts_at.isoformat() if alert.starts_at else ""
            # Deterministic id: a record retried after a lost CAS is dropped as a duplicate.
            await bus.log.append(event, msg_id=f"alert:{session_id}:{alert.fingerprint}:{alert.status}:{starts}")
            seen[alert.fingerprint] = alert.status
        triage_until = group.triage_until if group is not None and group.session_id == session_id else 0.0
        return GroupState(session_id=session_id, vm=vm, alerts=seen, triage_until=triage_until), (session_id, events)

    session_id, recorded = await state.change(kv, key, GroupState, record)
    receipt.recorded += len(recorded)
    if session_id not in receipt.sessions:
        receipt.sessions.append(session_id)
    firing = [e for e in recorded if e.status is AlertStatus.FIRING]
    if not firing:
        return

    # 3: one triage per group at a time, one per VM per window.
    async def claim_group(group: GroupState | None) -> tuple[GroupState | None, bool]:
        now = state.now()
        if group is None or group.session_id != session_id or group.triaging(now):
            return None, False
        lapse = settings.triage_timeout_seconds + settings.verb_wait_seconds * 2 + 60
        return msgspec.structs.replace(group, triage_until=now + lapse), True

    if not await state.change(kv, key, GroupState, claim_group):
        log.info("a triage of this alert group already runs; %d new alert(s) recorded only", len(firing))
        return

    async def claim_vm(current: VmWindow | None) -> tuple[VmWindow | None, bool]:
        now = state.now()
        if current is not None and current.triaged_within(now, window):
            return None, False
        if current is None or current.session_id != session_id:
            return VmWindow(session_id=session_id, opened_at=now, triaged_at=now), True
        return msgspec.structs.replace(current, triaged_at=now), True

    if not await state.change(kv, alert_vm_key(vm), VmWindow, claim_vm):
        log.info("VM %s had a triage within %g s; alert recorded only", vm, window)
        await release_group(bus, key, session_id)
        return
    receipt.triages.append(session_id)
    start_triage(session_id, vm, firing[0], key)


async def _vm_session(bus: Bus, vm: str, window: float, *, bound: str | None = None) -> str:
    """The VM's open alert session, or a new one. Decided by CAS on the VM's
    record before the session exists, so that concurrent first alerts of a
    storm all land in the one session that won. `bound`: the alert's VM
    when BREAKGLASS_VMS lists it (the triage agent then works on it), else
    the session is the default VM's."""
    kv = await bus.kv()
    candidate = new_id()

    async def pick(current: VmWindow | None) -> tuple[VmWindow | None, str]:
        now = state.now()
        if current is not None and current.open(now, window):
            return None, current.session_id
        triaged_at = current.triaged_at if current is not None else 0.0
        return VmWindow(session_id=candidate, opened_at=now, triaged_at=triaged_at), candidate

    session_id = await state.change(kv, alert_vm_key(vm), VmWindow, pick)
    if session_id == candidate:
        await sessions.open_session(bus, ALERTMANAGER, session_id=candidate, vm=bound)
    return session_id


async def release_group(bus: Bus, key: str, session_id: str) -> None:
    """The group's triage is over (or never started): the next may start."""
    kv = await bus.kv()

    async def release(group: GroupState | None) -> tuple[GroupState | None, None]:
        if group is None or group.session_id != session_id or not group.triage_until:
            return None, None
        return msgspec.structs.replace(group, triage_until=0.0), None

    await state.change(kv, key, GroupState, release)


def _when(value):  # type: ignore[no-untyped-def]
    return None if value is None or value.year <= _ZERO_YEAR else value


def _event(session_id: str, vm: str, alert: WebhookAlert) -> AlertReceived:
    return AlertReceived(
        session_id=session_id, by=ALERTMANAGER, ts=utcnow(), alertname=alert.alertname,
        status=AlertStatus(alert.status), vm=vm, fingerprint=alert.fingerprint,
        labels=dict(alert.labels), annotations=dict(alert.annotations),
        starts_at=_when(alert.starts_at), ends_at=_when(alert.ends_at), generator_url=alert.generator_url,
    )
