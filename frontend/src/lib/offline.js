// What the phone keeps for when the network is gone: the last transcript of
// each recent session (its stored events, localStorage), the live text of an
// open block across a reload (sessionStorage), and a prompt typed offline
// (sent only after the operator confirms, once the stream is live again).
//
// Storage can be missing (private mode) or full: every call here degrades to
// "nothing kept", never an error.

const PREFIX = 'breakglass.transcript.';
const LIVE_PREFIX = 'breakglass.live.';
export const QUEUED_KEY = 'breakglass.queued_prompt';
/** Sessions whose transcript is kept, newest first. */
export const KEEP_SESSIONS = 5;
/** A transcript bigger than this (characters of JSON) is not kept at all: a partial one would mislead. */
export const MAX_CHARS = 2_000_000;

function store(kind = 'local') {
  try {
    return kind === 'local' ? window.localStorage : window.sessionStorage;
  } catch {
    return null;
  }
}

/** The stored events kept for a session (oldest first), or []. */
export function cachedEvents(sessionId) {
  try {
    const list = JSON.parse(store()?.getItem(PREFIX + sessionId) || '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

/** Keep a session's stored events; drops the oldest sessions beyond KEEP_SESSIONS. */
export function keepEvents(sessionId, events) {
  const s = store();
  if (!s || !sessionId) return;
  const key = PREFIX + sessionId;
  const json = JSON.stringify(events);
  try {
    if (json.length > MAX_CHARS) {
      s.removeItem(key);
      return;
    }
    s.setItem(key, json);
    const order = JSON.parse(s.getItem(PREFIX + 'order') || '[]').filter((id) => id !== sessionId);
    order.unshift(sessionId);
    for (const old of order.splice(KEEP_SESSIONS)) s.removeItem(PREFIX + old);
    s.setItem(PREFIX + 'order', JSON.stringify(order));
  } catch {
    try {
      s.removeItem(key); // full: keep nothing rather than half
    } catch {
      /* nothing to do */
    }
  }
}

export function savedLive(sessionId) {
  try {
    return JSON.parse(store('session')?.getItem(LIVE_PREFIX + sessionId) || '[]');
  } catch {
    return [];
  }
}

export function saveLive(sessionId, blocks) {
  try {
    const s = store('session');
    if (!s || !sessionId) return;
    if (blocks.length) s.setItem(LIVE_PREFIX + sessionId, JSON.stringify(blocks));
    else s.removeItem(LIVE_PREFIX + sessionId);
  } catch {
    /* not kept */
  }
}

/** The prompt typed offline: {session_id, text} or null. */
export function queuedPrompt() {
  try {
    const q = JSON.parse(store()?.getItem(QUEUED_KEY) || 'null');
    return q && typeof q.text === 'string' && typeof q.session_id === 'string' ? q : null;
  } catch {
    return null;
  }
}

export function setQueuedPrompt(q) {
  try {
    if (q) store()?.setItem(QUEUED_KEY, JSON.stringify(q));
    else store()?.removeItem(QUEUED_KEY);
  } catch {
    /* not kept */
  }
}
