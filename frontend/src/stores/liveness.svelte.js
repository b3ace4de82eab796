// The running turn's liveness as the bar above the composer shows it
// (lib/liveness.js decides from plain numbers): the clock it counts by, the
// silence threshold the operator chose, and the "caught up" flash after a
// wake-up reconnect.

import { clock, DEFAULT_SILENCE_SECONDS, liveness as livenessOf, SILENCE_KEY, silenceParam, silenceSetting } from '../lib/liveness.js';
import { session } from './session.svelte.js';

class Liveness {
  now = $state(clock()); // ticks every second while a turn runs (the liveness counts up)
  silenceSeconds = $state(DEFAULT_SILENCE_SECONDS);
  silenceFromUrl = $state(false); // `?silence=` wins over the stored setting
  runningId = $derived(session.transcript.running); // changes only when another turn starts or ends

  current = $derived.by(() => {
    const t = session.transcript;
    const seen = session.seenRunning;
    return livenessOf({
      running: !!t.running,
      heartbeat: t.heartbeat,
      now: Math.max(this.now, t.heartbeat?.at ?? -Infinity),
      // silence while the stream was down, the page asleep, or before this turn was seen is not the runner's
      watchingSince: Math.max(session.liveSince, session.awakeSince, seen.turn === t.running ? seen.at : -Infinity),
      connected: session.conn === 'live',
      silenceSeconds: this.silenceSeconds,
      awaitingApproval: t.pendingApprovals.some((a) => a.turn_id === t.running),
      hasOutput: !!t.entries.find((e) => e.type === 'turn' && e.turn_id === t.running)?.hasOutput,
    });
  });

  // "Caught up" for a few seconds after a wake-up reconnect delivered what was missed.
  caughtUp = $derived(session.conn === 'live' && this.now - session.caughtUpAt < 4000);
}

export const liveness = new Liveness();

function stored() {
  try {
    return localStorage.getItem(SILENCE_KEY);
  } catch {
    return null; // no storage
  }
}

export function loadSilence() {
  liveness.silenceSeconds = silenceSetting(location.search, stored());
  liveness.silenceFromUrl = silenceParam(location.search) !== null;
}

export function setSilence(seconds) {
  try {
    localStorage.setItem(SILENCE_KEY, String(seconds));
  } catch {
    /* private mode: this page only */
  }
  liveness.silenceSeconds = silenceSetting(location.search, String(seconds));
}

/** Keep the clock moving while it matters; call while a component initialises (it owns the timers). */
export function runClock() {
  $effect(() => {
    if (!liveness.runningId) return; // counts up between heartbeats while a turn runs
    liveness.now = clock();
    const timer = setInterval(() => (liveness.now = clock()), 1000);
    return () => clearInterval(timer);
  });
  $effect(() => {
    if (session.caughtUpAt === -Infinity) return; // the flash ends on its own
    liveness.now = clock();
    const t = setTimeout(() => (liveness.now = clock()), 4100);
    return () => clearTimeout(t);
  });
}
