// Turn liveness: is the running turn alive, quiet, or orphaned?
//
// While a turn runs, the agent runner sends a live-only `status` heartbeat
// (SPEC §4, events.kinds.TurnStatus) every lease renewal: how long the turn has
// run, how long since the CLI last printed anything, and the lease length. The
// fold keeps the latest one per turn with its arrival time; this module turns
// that into what the operator sees:
//
//   working   "working · last output 12 s ago" (counted up between heartbeats)
//   silent    no output for `silenceSeconds` or more (default 3 min): a warning
//             with Stop right there
//   lost      no heartbeat for longer than the lease (+ a margin) while the turn
//             is still open: "agent runner lost", before the reaper records
//             `interrupted`
//
// Pure functions over plain numbers, so node's test runner covers them. Times
// (`now`, `at`, `watchingSince`) are milliseconds on one monotonic clock
// (`clock()`); durations in the result are seconds.

export const DEFAULT_SILENCE_SECONDS = 180;
/** The runner's default lease; used before the first heartbeat says otherwise. */
export const DEFAULT_LEASE_SECONDS = 30;
export const SILENCE_PARAM = 'silence'; // ?silence=SECONDS
export const SILENCE_KEY = 'breakglass.silence_seconds'; // localStorage

/** A monotonic millisecond clock (performance.now where there is one). */
export function clock() {
  return typeof performance !== 'undefined' && typeof performance.now === 'function' ? performance.now() : Date.now();
}

/**
 * How long without a heartbeat before the runner counts as lost: the lease
 * plus a small margin for the network (2 s, or 10% of a long lease).
 */
export function lostAfterSeconds(leaseSeconds) {
  const lease = positive(leaseSeconds) ?? DEFAULT_LEASE_SECONDS;
  return lease + Math.max(2, lease * 0.1);
}

function positive(n) {
  const v = typeof n === 'string' && n.trim() !== '' ? Number(n) : n;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null;
}

/**
 * The silence threshold in seconds: `?silence=SECONDS` in the page URL wins,
 * then localStorage `breakglass.silence_seconds`, then 180. Invalid values are
 * ignored.
 */
export function silenceSetting(search = '', stored = null) {
  return silenceParam(search) ?? positive(stored) ?? DEFAULT_SILENCE_SECONDS;
}

/** The `?silence=SECONDS` of a query string, or null when absent or invalid. */
export function silenceParam(search = '') {
  try {
    return positive(new URLSearchParams(search || '').get(SILENCE_PARAM));
  } catch {
    return null;
  }
}

/**
 * The liveness of the running turn, or null when no turn runs.
 *
 * @param {object} o
 * @param {boolean} o.running        a turn is open (seen, no turn_end yet)
 * @param {object|null} o.heartbeat  the latest `status` of that turn: {elapsed_seconds,
 *                                   since_output_seconds, lease_seconds, runner, at}
 * @param {number} o.now             the clock now (ms)
 * @param {number} [o.watchingSince] when this page started hearing the stream live
 *                                   with this turn open (ms): silence before that is
 *                                   the page's, not the runner's
 * @param {boolean} [o.connected]    the stream is live (no "lost" while it is not)
 * @param {number} [o.silenceSeconds]
 * @param {boolean} [o.awaitingApproval] the turn waits for the operator: quiet is expected
 * @param {boolean} [o.hasOutput]   the turn has shown something (text, a tool): before
 *                                   that, "last output N s ago" would name output that
 *                                   never came
 */
export function liveness({
  running, heartbeat = null, now, watchingSince = -Infinity, connected = true,
  silenceSeconds = DEFAULT_SILENCE_SECONDS, awaitingApproval = false, hasOutput = true,
}) {
  if (!running) return null;
  const hb = heartbeat && Number.isFinite(heartbeat.at) ? heartbeat : null;
  const lease = positive(hb?.lease_seconds) ?? DEFAULT_LEASE_SECONDS;
  const threshold = positive(silenceSeconds) ?? DEFAULT_SILENCE_SECONDS;
  const age = hb ? Math.max(0, (now - hb.at) / 1000) : 0;
  const sinceOutput = hb ? Math.max(0, (Number(hb.since_output_seconds) || 0) + age) : null;
  const elapsed = hb ? Math.max(0, (Number(hb.elapsed_seconds) || 0) + age) : null;
  const heardAt = Math.max(hb ? hb.at : -Infinity, Number.isFinite(watchingSince) ? watchingSince : -Infinity);
  const quietFor = Number.isFinite(heardAt) ? Math.max(0, (now - heardAt) / 1000) : 0;
  const limit = lostAfterSeconds(lease);
  let state = 'working';
  if (connected && Number.isFinite(heardAt) && quietFor > limit) state = 'lost';
  else if (sinceOutput !== null && sinceOutput >= threshold && !awaitingApproval) state = 'silent';
  return {
    state, sinceOutput, elapsed, quietFor, lease, lostAfter: limit, silenceSeconds: threshold,
    heard: !!hb, awaitingApproval: !!awaitingApproval, runner: hb?.runner || '', noOutput: !hasOutput,
  };
}

/** "12 s", "3 min", "3 min 5 s", "1 h 2 min": whole seconds, counted down to the floor. */
export function duration(totalSeconds) {
  const s = Math.max(0, Math.floor(Number(totalSeconds) || 0));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  if (m < 60) return rest ? `${m} min ${rest} s` : `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

/** The one-line words for a liveness (the component adds the detail and Stop). */
export function livenessLabel(l) {
  if (!l) return '';
  switch (l.state) {
    case 'lost':
      return 'agent runner lost';
    case 'silent':
      return l.noOutput ? `no output yet after ${duration(l.sinceOutput)}` : `no output for ${duration(l.sinceOutput)}`;
    default:
      if (l.awaitingApproval) return 'waiting for your answer';
      if (l.sinceOutput === null) return 'working…';
      if (l.noOutput) return `working · no output yet`;
      return `working · last output ${duration(l.sinceOutput)} ago`;
  }
}
