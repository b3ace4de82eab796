// The transcript fold over recorded sequences: duplicates, gaps, unknown
// kinds, turns without a `user`, reconnects and reloads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { applyAll, applyEvent, createFold, lines, markApproval, runningTurn, view } from '../src/lib/fold.js';

const recorded = JSON.parse(readFileSync(new URL('./sequences/tool_turn.json', import.meta.url)));
const stored = recorded.filter((e) => e.kind !== 'delta');

function fold(events) {
  const s = createFold();
  applyAll(s, events);
  return s;
}

function dupes(list) {
  const seen = new Set();
  return list.filter((l) => !l.startsWith('end:')).filter((l) => (seen.has(l) ? true : (seen.add(l), false)));
}

const EXPECTED = [
  'user: check the vm',
  'text: Let me look.',
  'tool Bash: uptime =>  03:00 up 3 days, load average: 41.0',
  'text: Load is very high.',
  'end: ok',
  'user: and memory?',
  'text: Memory is fine.',
  'end: ok',
];

test('a recorded sequence folds into turns, late deltas dropped', () => {
  assert.deepEqual(lines(fold(recorded)), EXPECTED);
});

test('the live stream (with deltas) and the stored replay give the same transcript', () => {
  assert.deepEqual(lines(fold(recorded)), lines(fold(stored)));
});

test('every event delivered twice (replay after reconnect) renders once', () => {
  const doubled = recorded.flatMap((e) => [e, structuredClone(e)]);
  const s = fold(doubled);
  assert.deepEqual(lines(s), EXPECTED);
  assert.deepEqual(dupes(lines(s)), []);
});

test('a reconnect that resumes from an earlier id replays the overlap without duplicates', () => {
  const s = fold(recorded.slice(0, 9));
  const again = recorded.filter((e) => e.kind === 'delta' || e.id >= 104);
  applyAll(s, again);
  assert.deepEqual(lines(s), EXPECTED);
});

test('a reload mid-turn (fresh fold, full replay) equals the uninterrupted transcript', () => {
  const live = fold(recorded.slice(0, 10)); // mid-turn: live text pending
  assert.ok(lines(live).some((l) => l.startsWith('live: Load is very high.')));
  const reloaded = fold(stored.filter((e) => e.id <= 105));
  applyAll(reloaded, recorded.slice(10));
  assert.deepEqual(lines(reloaded), EXPECTED);
});

test('ids out of order still land in stream order', () => {
  const shuffled = [...stored].reverse();
  assert.deepEqual(lines(fold(shuffled)), EXPECTED);
});

test('gaps in ids (other sessions share the stream) are normal, not errors', () => {
  const s = fold(stored);
  assert.equal(s.lastId, 124);
  assert.equal(view(s).count, stored.length);
});

test('a gap that loses events keeps what arrived, and a late fill slots in', () => {
  const missing = new Set([103, 104]);
  const s = fold(stored.filter((e) => !missing.has(e.id)));
  assert.ok(!lines(s).includes('text: Let me look.'));
  applyAll(s, stored.filter((e) => missing.has(e.id)));
  assert.deepEqual(lines(s), EXPECTED);
});

test('unknown kinds are counted and skipped, never shown, never fatal', () => {
  const withUnknown = [
    ...stored.slice(0, 3),
    { kind: 'hologram', id: 103.5 },
    { kind: 'telemetry', id: 106, turn_id: 'T1', payload: { x: 1 } },
    { kind: 'telemetry', id: 106, turn_id: 'T1' },
    ...stored.slice(3),
  ];
  const s = fold(withUnknown);
  assert.deepEqual(lines(s), EXPECTED);
  assert.equal(s.unknown, 1);
  assert.ok(s.unknownKinds.has('telemetry'));
});

test('a kind named like an Object method is an unknown kind, not a handler', () => {
  const s = createFold();
  const kinds = ['constructor', 'toString', '__proto__', 'hasOwnProperty'];
  kinds.forEach((kind, i) => assert.equal(applyEvent(s, { kind, id: i + 1, turn_id: 'T1' }), true));
  assert.equal(applyEvent(s, { kind: 'valueOf', turn_id: 'T1' }), false); // no id: skipped like any stored kind
  assert.equal(s.unknown, kinds.length);
  assert.equal(s.lastId, kinds.length);
  assert.deepEqual(lines(s), []);
});

test('garbage frames are ignored', () => {
  const s = createFold();
  for (const bad of [null, 7, 'x', {}, { kind: 3 }, { kind: 'text', text: 'no id' }, { kind: 'text', id: 'abc' }]) {
    assert.equal(applyEvent(s, bad), false);
  }
  assert.deepEqual(lines(s), []);
});

test('a turn without a `user` (e.g. started before the log was kept) still renders', () => {
  const s = fold(stored.filter((e) => e.kind !== 'user'));
  const out = lines(s);
  assert.equal(out[0], 'user: (not recorded)');
  assert.equal(out.filter((l) => l.startsWith('user:')).length, 2);
  assert.ok(out.includes('text: Memory is fine.'));
});

test('a user arriving after its turn started fills the turn in place', () => {
  const first = stored.filter((e) => e.id !== 101);
  const s = fold(first);
  applyEvent(s, stored.find((e) => e.id === 101));
  assert.deepEqual(lines(s), EXPECTED);
});

test('running: a user without turn_end; Stop ends it with cancelled', () => {
  const s = fold(stored.slice(0, 4));
  assert.equal(runningTurn(s), 'T1');
  applyAll(s, [
    { kind: 'delta', turn_id: 'T1', block: 'T1:b9', text: 'partial' },
    { kind: 'cancelled', id: 130, turn_id: 'T1', by: 'alice' },
    { kind: 'turn_end', id: 131, turn_id: 'T1', outcome: 'cancelled' },
    { kind: 'delta', turn_id: 'T1', block: 'T1:b9', text: 'stale' },
  ]);
  assert.equal(runningTurn(s), null);
  const out = lines(s);
  assert.ok(out.includes('cancelled'));
  assert.ok(!out.some((l) => l.startsWith('live:')), out.join('\n'));
});

test('per-turn cost comes from the cumulative CLI total', () => {
  const v = view(fold(stored));
  const turns = v.entries.filter((e) => e.type === 'turn');
  assert.equal(turns[0].turnCost.toFixed(3), '0.012');
  assert.equal(turns[1].turnCost.toFixed(3), '0.008');
  assert.equal(v.totalCost.toFixed(3), '0.020');
  assert.equal(turns[0].usage.input, 1200);
});

test('tool results that arrive before their tool call are attached', () => {
  const tool = stored.find((e) => e.kind === 'tool');
  const result = stored.find((e) => e.kind === 'tool_result');
  const s = fold([stored[0], result, tool]);
  assert.ok(lines(s).includes('tool Bash: uptime =>  03:00 up 3 days, load average: 41.0'));
});

test('verb phases fold into one card; an approval is answered by its verb decision', () => {
  const events = [
    { kind: 'user', id: 1, turn_id: 'T', text: 'fix it', by: 'bob' },
    { kind: 'approval', id: 2, turn_id: 'T', approval_id: 'A1', verb: 'cycle', reason: 'QEMU I/O stall', by: 'agent' },
    { kind: 'verb', id: 3, turn_id: 'T', verb: 'cycle', phase: 'requested', request_id: 'R1', by: 'agent' },
  ];
  const s = fold(events);
  assert.equal(view(s).pendingApprovals.length, 1);
  applyAll(s, [
    { kind: 'verb', id: 4, turn_id: 'T', verb: 'cycle', phase: 'approved', request_id: 'R1', by: 'bob' },
    { kind: 'verb', id: 5, turn_id: 'T', verb: 'cycle', phase: 'running', request_id: 'R1', by: 'pve-executor' },
    { kind: 'verb', id: 6, turn_id: 'T', verb: 'cycle', phase: 'done', request_id: 'R1', exit_code: 0, stdout: 'ok', by: 'pve-executor' },
    { kind: 'verb', id: 6, turn_id: 'T', verb: 'cycle', phase: 'done', request_id: 'R1', exit_code: 0, stdout: 'ok', by: 'pve-executor' },
  ]);
  const v = view(s);
  assert.equal(v.pendingApprovals.length, 0);
  assert.deepEqual(lines(s), ['user: fix it', 'approval cycle approved', 'verb cycle done exit 0']);
  const card = v.entries[0].items.find((i) => i.t === 'verb');
  assert.deepEqual(card.phases.map((p) => p.phase), ['requested', 'approved', 'running', 'done']);
});

test('an approval answered locally stays answered when replayed; turn_end expires a pending one', () => {
  const s = fold([{ kind: 'user', id: 1, turn_id: 'T', text: 'x' }]);
  markApproval(s, 'A9', false);
  applyEvent(s, { kind: 'approval', id: 2, turn_id: 'T', approval_id: 'A9', verb: 'reset' });
  assert.equal(view(s).pendingApprovals.length, 0);
  applyEvent(s, { kind: 'approval', id: 3, turn_id: 'T', approval_id: 'A10', verb: 'stop' });
  assert.equal(view(s).pendingApprovals.length, 1);
  applyEvent(s, { kind: 'turn_end', id: 4, turn_id: 'T', outcome: 'ok' });
  assert.equal(view(s).pendingApprovals.length, 0);
  assert.ok(lines(s).includes('approval stop expired'));
});

test('an escalation marks its approval with where it was sent, in either order', () => {
  const s = fold([{ kind: 'user', id: 1, turn_id: 'T', text: 'x' }]);
  applyEvent(s, { kind: 'escalated', id: 2, turn_id: 'T', approval_id: 'A2', channel: 'ntfy at ntfy.example', after_seconds: 120, by: 'operator' });
  applyEvent(s, { kind: 'approval', id: 3, turn_id: 'T', approval_id: 'A2', verb: 'reset' });
  applyEvent(s, { kind: 'approval', id: 4, turn_id: 'T', approval_id: 'A3', verb: 'stop' });
  assert.ok(applyEvent(s, { kind: 'escalated', id: 5, turn_id: 'T', approval_id: 'A3', channel: 'json at hooks.example', after_seconds: 90 }));
  const pending = Object.fromEntries(view(s).pendingApprovals.map((a) => [a.approval_id, a.escalated]));
  assert.deepEqual(pending.A2, { channel: 'ntfy at ntfy.example', after_seconds: 120, by: 'operator' });
  assert.deepEqual(pending.A3, { channel: 'json at hooks.example', after_seconds: 90, by: '' });
});

test('a verb outside any turn is a standalone entry', () => {
  const s = fold([{ kind: 'verb', id: 9, verb: 'status', phase: 'done', exit_code: 0, stdout: 'status: running', request_id: 'r1' }]);
  assert.deepEqual(lines(s), ['verb status done exit 0']);
  assert.equal(view(s).entries[0].type, 'event');
});

test('the view is a fresh snapshot: mutating it does not touch the fold', () => {
  const s = fold(stored);
  const v = view(s);
  v.entries[0].items.length = 0;
  v.entries[0].user.text = 'changed';
  assert.deepEqual(lines(s), EXPECTED);
});

test('string ids (as an SSE `id:` line would give) are accepted and deduplicated with numbers', () => {
  const s = fold([{ kind: 'user', id: '5', turn_id: 'T', text: 'a' }, { kind: 'user', id: 5, turn_id: 'T', text: 'a' }]);
  assert.equal(view(s).count, 1);
  assert.equal(s.lastId, 5);
});

test('two approvals in one turn link to their own verbs; a denial (or timeout) settles the second', () => {
  const s = fold([
    { kind: 'user', id: 1, turn_id: 'T', text: 'x' },
    { kind: 'approval', id: 2, turn_id: 'T', approval_id: 'A1', verb: 'reset' },
    { kind: 'verb', id: 3, turn_id: 'T', verb: 'reset', phase: 'requested', request_id: 'R1' },
    { kind: 'verb', id: 4, turn_id: 'T', verb: 'reset', phase: 'approved', request_id: 'R1', by: 'bob' },
    { kind: 'approval', id: 5, turn_id: 'T', approval_id: 'A2', verb: 'reset' },
    { kind: 'verb', id: 6, turn_id: 'T', verb: 'reset', phase: 'requested', request_id: 'R2' },
  ]);
  assert.deepEqual(view(s).pendingApprovals.map((a) => a.approval_id), ['A2']);
  applyEvent(s, { kind: 'verb', id: 7, turn_id: 'T', verb: 'reset', phase: 'denied', request_id: 'R2', by: 'timeout' });
  assert.deepEqual(view(s).pendingApprovals, []);
  assert.ok(lines(s).includes('approval reset denied'));
});

test('an approval replayed after its verb (out of order) is settled at once', () => {
  const s = fold([
    { kind: 'user', id: 1, turn_id: 'T', text: 'x' },
    { kind: 'verb', id: 3, turn_id: 'T', verb: 'stop', phase: 'requested', request_id: 'R1' },
    { kind: 'verb', id: 4, turn_id: 'T', verb: 'stop', phase: 'denied', request_id: 'R1' },
    { kind: 'approval', id: 2, turn_id: 'T', approval_id: 'A1', verb: 'stop' },
  ]);
  assert.deepEqual(view(s).pendingApprovals, []);
  assert.deepEqual(lines(s), ['user: x', 'approval stop denied', 'verb stop denied']);
});

test('tool chips show the command: Bash command, file path, or the verb of the power tool', () => {
  const s = fold([
    { kind: 'user', id: 1, turn_id: 'T', text: 'x' },
    { kind: 'tool', id: 2, turn_id: 'T', name: 'Bash', input: { command: 'df -h' }, tool_use_id: 'a' },
    { kind: 'tool', id: 3, turn_id: 'T', name: 'Read', input: { file_path: '/var/log/syslog' }, tool_use_id: 'b' },
    { kind: 'tool', id: 4, turn_id: 'T', name: 'mcp__breakglass__pve', input: { verb: 'status' }, tool_use_id: 'c' },
  ]);
  assert.deepEqual(lines(s).slice(1), ['tool Bash: df -h', 'tool Read: /var/log/syslog', 'tool mcp__breakglass__pve: status']);
});

test('an alert triage session: the alert first, then the turn, then the diagnosis', () => {
  const sid = 'a1b2c3d4-0000-4000-8000-000000000001';
  const tid = 'a1b2c3d4-0000-4000-8000-000000000002';
  const events = [
    { id: 1, kind: 'alert', session_id: sid, by: 'alertmanager', alertname: 'DevVmDown', status: 'firing', vm: 'devvm',
      labels: { severity: 'critical', alertname: 'DevVmDown' }, annotations: { summary: 'The VM does not answer' } },
    { id: 2, kind: 'user', session_id: sid, turn_id: tid, by: 'triage', text: 'triage it' },
    { id: 3, kind: 'text', session_id: sid, turn_id: tid, by: 'agent', text: 'Disk full.' },
    { id: 4, kind: 'turn_end', session_id: sid, turn_id: tid, by: 'agent-runner', outcome: 'ok' },
    { id: 5, kind: 'diagnosis', session_id: sid, by: 'triage', alertname: 'DevVmDown', summary: 'Disk full.', outcome: 'ok' },
    { id: 6, kind: 'alert', session_id: sid, by: 'alertmanager', alertname: 'DevVmDown', status: 'resolved', labels: 7 },
  ];
  const s = fold([...events, ...events]);
  assert.deepEqual(lines(s), [
    'alert DevVmDown firing', 'user: triage it', 'text: Disk full.', 'end: ok',
    'diagnosis DevVmDown: Disk full.', 'alert DevVmDown resolved',
  ]);
  const first = view(s).entries[0].item;
  assert.deepEqual(first.labels, [['alertname', 'DevVmDown'], ['severity', 'critical']]);
  assert.deepEqual(view(s).entries.at(-1).item.labels, []);
  assert.equal(view(s).unknown, 0);
});
