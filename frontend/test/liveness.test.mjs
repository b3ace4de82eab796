// Turn liveness: `status` heartbeats in the fold, and the pure derivation of
// working / silent-warning / runner-lost; the notification texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyAll, applyEvent, createFold, lines, view } from '../src/lib/fold.js';
import {
  DEFAULT_LEASE_SECONDS, DEFAULT_SILENCE_SECONDS, duration, liveness, livenessLabel, lostAfterSeconds,
  silenceParam, silenceSetting,
} from '../src/lib/liveness.js';
import { notificationFor, outcomeWord } from '../src/lib/notify.js';

const T = 't-1';
const user = { id: 10, kind: 'user', turn_id: T, session_id: 's', text: 'why slow?', by: 'op' };
const status = (over = {}) => ({
  kind: 'status', turn_id: T, session_id: 's', by: 'agent-runner', ts: '2026-01-01T00:00:00Z',
  elapsed_seconds: 12, since_output_seconds: 4, lease_seconds: 4, runner: 'runner-a', ...over,
});
const end = (outcome = 'ok', id = 20) => ({ id, kind: 'turn_end', turn_id: T, session_id: 's', outcome });

// ---------------------------------------------------------------- the fold

test('a status frame (no id) is kept per turn with its arrival time, not in the transcript', () => {
  const s = createFold();
  applyEvent(s, user);
  const before = lines(s);
  assert.equal(applyEvent(s, status(), 5000), true);
  assert.deepEqual(lines(s), before); // not part of the idempotent transcript
  assert.equal(s.lastId, 10); // never moves the resume point
  const v = view(s);
  assert.equal(v.running, T);
  assert.deepEqual(v.heartbeat, {
    turn_id: T, elapsed_seconds: 12, since_output_seconds: 4, lease_seconds: 4, runner: 'runner-a', at: 5000,
  });
  assert.equal(v.count, 1);
  assert.equal(v.unknown, 0);
});

test('only the latest heartbeat of a turn is kept', () => {
  const s = createFold();
  applyAll(s, [user]);
  applyEvent(s, status({ since_output_seconds: 1 }), 1000);
  applyEvent(s, status({ since_output_seconds: 6, elapsed_seconds: 20 }), 6000);
  assert.equal(view(s).heartbeat.since_output_seconds, 6);
  assert.equal(view(s).heartbeat.at, 6000);
});

test('turn_end drops the heartbeat, and a late status after it is ignored', () => {
  const s = createFold();
  applyAll(s, [user]);
  applyEvent(s, status(), 1000);
  applyEvent(s, end());
  assert.equal(view(s).running, null);
  assert.equal(view(s).heartbeat, null);
  assert.equal(applyEvent(s, status(), 2000), false);
  assert.equal(s.status.size, 0);
});

test('a status without a turn, or with junk numbers, never throws', () => {
  const s = createFold();
  assert.equal(applyEvent(s, { kind: 'status' }), false);
  applyAll(s, [user]);
  assert.equal(applyEvent(s, status({ since_output_seconds: 'x', elapsed_seconds: null, lease_seconds: -3 }), 1), true);
  assert.deepEqual(view(s).heartbeat, { turn_id: T, elapsed_seconds: 0, since_output_seconds: 0, lease_seconds: 0, runner: 'runner-a', at: 1 });
});

test('a status that arrives before its turn is seen applies to it once it is', () => {
  const s = createFold();
  applyEvent(s, status(), 100);
  assert.equal(view(s).heartbeat, null); // no running turn yet
  applyEvent(s, user);
  assert.equal(view(s).heartbeat.at, 100);
});

// ---------------------------------------------------------------- liveness

const hb = (over = {}) => ({ elapsed_seconds: 10, since_output_seconds: 2, lease_seconds: 4, runner: 'r', at: 0, ...over });

test('no running turn: no liveness', () => {
  assert.equal(liveness({ running: false, heartbeat: hb(), now: 0 }), null);
});

test('working: "last output N s ago", counted up client-side between heartbeats', () => {
  const l = liveness({ running: true, heartbeat: hb({ since_output_seconds: 2, at: 1000 }), now: 3500 });
  assert.equal(l.state, 'working');
  assert.equal(l.sinceOutput, 4.5);
  assert.equal(l.elapsed, 12.5);
  assert.equal(livenessLabel(l), 'working · last output 4 s ago');
  const later = liveness({ running: true, heartbeat: hb({ since_output_seconds: 38, at: 0, lease_seconds: 30 }), now: 2000 });
  assert.equal(livenessLabel(later), 'working · last output 40 s ago');
});

test('before the first heartbeat: plain "working…", with the default lease', () => {
  const l = liveness({ running: true, heartbeat: null, now: 5000, watchingSince: 0 });
  assert.equal(l.state, 'working');
  assert.equal(l.sinceOutput, null);
  assert.equal(l.lease, DEFAULT_LEASE_SECONDS);
  assert.equal(livenessLabel(l), 'working…');
});

test('silent warning at the threshold (default 3 min), not before', () => {
  const base = { running: true, now: 0 };
  assert.equal(liveness({ ...base, heartbeat: hb({ since_output_seconds: 179.9, lease_seconds: 30 }) }).state, 'working');
  const l = liveness({ ...base, heartbeat: hb({ since_output_seconds: 180, lease_seconds: 30 }) });
  assert.equal(l.state, 'silent');
  assert.equal(l.silenceSeconds, DEFAULT_SILENCE_SECONDS);
  assert.equal(livenessLabel(l), 'no output for 3 min');
  // the client-side count reaches the threshold between heartbeats
  assert.equal(liveness({ running: true, heartbeat: hb({ since_output_seconds: 1, at: 0 }), now: 2000, silenceSeconds: 3.5 }).state, 'working');
  assert.equal(liveness({ running: true, heartbeat: hb({ since_output_seconds: 1, at: 0 }), now: 2000, silenceSeconds: 2.5 }).state, 'silent');
});

test('a pending approval is the operator\'s silence: no warning', () => {
  const l = liveness({ running: true, heartbeat: hb({ since_output_seconds: 500, lease_seconds: 30 }), now: 0, awaitingApproval: true });
  assert.equal(l.state, 'working');
  assert.equal(livenessLabel(l), 'waiting for your answer');
});

test('runner lost: no heartbeat for longer than the lease plus a margin', () => {
  assert.equal(lostAfterSeconds(4), 6);
  assert.equal(lostAfterSeconds(30), 33);
  assert.equal(lostAfterSeconds(undefined), DEFAULT_LEASE_SECONDS + 3);
  const at = 10_000;
  const fresh = liveness({ running: true, heartbeat: hb({ at }), now: at + 5900, watchingSince: 0 });
  assert.equal(fresh.state, 'working');
  const gone = liveness({ running: true, heartbeat: hb({ at }), now: at + 6100, watchingSince: 0 });
  assert.equal(gone.state, 'lost');
  assert.equal(Math.round(gone.quietFor * 10) / 10, 6.1);
  assert.equal(livenessLabel(gone), 'agent runner lost');
  // lost outranks the silence warning
  assert.equal(liveness({ running: true, heartbeat: hb({ at, since_output_seconds: 999 }), now: at + 7000 }).state, 'lost');
});

test('no "lost" while the stream itself is down, nor right after it comes back', () => {
  const at = 0;
  assert.equal(liveness({ running: true, heartbeat: hb({ at }), now: 60_000, connected: false }).state, 'working');
  // live again at 58 s: the quiet is counted from then, not from the old heartbeat
  assert.equal(liveness({ running: true, heartbeat: hb({ at }), now: 60_000, watchingSince: 58_000 }).state, 'working');
  assert.equal(liveness({ running: true, heartbeat: hb({ at }), now: 65_000, watchingSince: 58_000 }).state, 'lost');
});

test('never a heartbeat at all: lost after the default lease from when the page started watching', () => {
  assert.equal(liveness({ running: true, heartbeat: null, now: 30_000, watchingSince: 0 }).state, 'working');
  assert.equal(liveness({ running: true, heartbeat: null, now: 34_000, watchingSince: 0 }).state, 'lost');
  assert.equal(liveness({ running: true, heartbeat: null, now: 99_000 }).state, 'working'); // not watching yet
});

test('the silence threshold: ?silence= wins, then the stored setting, then 180 s', () => {
  assert.equal(silenceSetting('', null), 180);
  assert.equal(silenceSetting('?silence=2', '600'), 2);
  assert.equal(silenceSetting('?x=1', '600'), 600);
  assert.equal(silenceSetting('?silence=abc', 'nope'), 180);
  assert.equal(silenceSetting('?silence=-5', '0'), 180);
  assert.equal(silenceParam('?silence=7.5'), 7.5);
  assert.equal(silenceParam('?silence='), null);
});

test('durations read naturally', () => {
  assert.equal(duration(0), '0 s');
  assert.equal(duration(40.9), '40 s');
  assert.equal(duration(180), '3 min');
  assert.equal(duration(185), '3 min 5 s');
  assert.equal(duration(3720), '1 h 2 min');
});

// ---------------------------------------------------------------- notifications

test('a turn end names its outcome', () => {
  assert.deepEqual(['ok', 'error', 'cancelled', 'interrupted', 'timeout', undefined].map(outcomeWord),
    ['done', 'failed', 'stopped', 'interrupted', 'timed out', 'ended']);
  const n = notificationFor(end('ok'), { prompt: 'why slow?', sessionId: 's' });
  assert.equal(n.title, 'breakglass: done');
  assert.match(n.body, /why slow\?/);
  assert.equal(n.tag, `turn:${T}`);
  assert.deepEqual(n.data, { session_id: 's', turn_id: T });
  const failed = notificationFor(end('error'), { prompt: 'p', error: 'the Claude CLI exited with code 1' });
  assert.equal(failed.title, 'breakglass: failed');
  assert.match(failed.body, /exited with code 1/);
});

test('an error and an approval request notify; other kinds do not', () => {
  const e = notificationFor({ id: 3, kind: 'error', turn_id: T, error: 'boom' });
  assert.equal(e.title, 'breakglass: failed');
  assert.equal(e.tag, `turn:${T}`); // the turn_end that follows replaces it
  const a = notificationFor({ id: 4, kind: 'approval', turn_id: T, approval_id: 'ap-1', verb: 'reset', reason: 'wedged' });
  assert.equal(a.title, 'breakglass: approve reset?');
  assert.equal(a.body, 'wedged');
  assert.equal(a.tag, 'approval:ap-1');
  assert.equal(a.requireInteraction, true);
  for (const kind of ['text', 'delta', 'status', 'user', 'tool', 'verb']) assert.equal(notificationFor({ kind, turn_id: T }), null);
  assert.equal(notificationFor(null), null);
});
