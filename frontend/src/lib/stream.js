// Attach to a session's event stream (SPEC §4) with EventSource.
//
// The browser reconnects by itself and sends Last-Event-ID, so the gateway
// resumes strictly after the last stored event: no gap, no duplicate. When the
// browser gives up (the stream answered an error status, e.g. a proxy's 502
// while the gateway restarts), we open a new EventSource with `?after=<last id>`
// after a short backoff. The fold is idempotent by id anyway.
//
// The label tells what the stream DOES, not what the browser last claimed:
// every frame (a record, a delta, the gateway's `keepalive`) proves the
// stream live, whatever `offline` event came before. A phone that slept may
// hold an EventSource that looks open but delivers nothing (browsers freeze
// or drop it without an error event), so when the page comes back
// (visibilitychange to visible, pageshow, resume, online, focus) a stream
// that has not proved itself within the keepalive interval + a margin is
// replaced at once, resuming after the last applied id; `caught-up` then says
// the page is current again.
//
// States: connecting -> catching-up -> live; reconnecting; offline; gone; unauthorized.

import { ApiError, openStream, pageEvents } from './api.js';

/** Until the gateway's first keepalive says its interval (BREAKGLASS_KEEPALIVE_SECONDS). */
export const DEFAULT_KEEPALIVE_SECONDS = 15;

/** How long a stream may be quiet and still count as live: the interval plus a margin. */
export function staleAfterMs(keepaliveSeconds) {
  const k = Number(keepaliveSeconds) > 0 ? Number(keepaliveSeconds) : DEFAULT_KEEPALIVE_SECONDS;
  return (k + Math.max(2, k * 0.2)) * 1000;
}

export function attach(sessionId, { lastId, onEvent, onCaughtUp, onState, onGone }) {
  let es = null;
  let closed = false;
  let timer = null;
  let backoff = 1000;
  let state = '';
  let keepalive = DEFAULT_KEEPALIVE_SECONDS;
  let heardAt = 0; // Date.now() of the last frame (wall clock: it moves while frozen)
  let caughtUp = false; // this connection has sent `caught-up`
  let resumed = false; // this connection replaced a stale one on wake

  const set = (s) => {
    if (s !== state) {
      state = s;
      onState(s);
    }
  };

  function heard() {
    heardAt = Date.now();
    if (caughtUp && state !== 'live') set('live');
  }

  function open(wake = false) {
    if (closed) return;
    clearTimeout(timer);
    timer = null;
    if (es) es.close();
    caughtUp = false;
    resumed = wake;
    heardAt = Date.now();
    const source = openStream(sessionId, lastId());
    es = source;
    source.onopen = () => {
      backoff = 1000;
      caughtUp = false;
      heardAt = Date.now();
      set('catching-up');
    };
    source.onmessage = (msg) => {
      heard();
      let ev;
      try {
        ev = JSON.parse(msg.data);
      } catch {
        return; // not JSON: skip, never crash the page
      }
      if (ev && ev.id === undefined && msg.lastEventId && msg.lastEventId !== '') {
        // defensive: the frame's `id:` line is authoritative when the body lacks it
        if (ev.kind !== 'delta') ev.id = Number(msg.lastEventId);
      }
      onEvent(ev);
    };
    source.addEventListener('keepalive', (msg) => {
      const k = Number(msg.data);
      if (k > 0) keepalive = k;
      heard();
    });
    source.addEventListener('caught-up', () => {
      caughtUp = true;
      heard();
      set('live');
      onCaughtUp({ resumed });
      resumed = false;
    });
    source.onerror = () => {
      if (closed || source !== es) return;
      caughtUp = false;
      if (!navigator.onLine) set('offline');
      else set('reconnecting');
      if (source.readyState === source.CLOSED) retry();
      // CONNECTING: the browser retries by itself with Last-Event-ID.
    };
  }

  async function retry() {
    if (closed || timer) return;
    const wait = backoff;
    backoff = Math.min(backoff * 2, 15000);
    timer = setTimeout(async () => {
      timer = null;
      if (closed) return;
      if (!navigator.onLine) {
        set('offline');
        return; // the `online` event reopens
      }
      try {
        // Why did it fail? 404: the session is gone; 401: sign in again.
        await pageEvents(sessionId, lastId(), 1);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          set('gone');
          onGone?.();
          return;
        }
        if (err instanceof ApiError && err.status === 401) {
          set('unauthorized');
          return;
        }
        // 5xx / network: keep trying
        if (!(err instanceof ApiError) || err.status >= 500) {
          retry();
          return;
        }
      }
      open();
    }, wait);
  }

  /** Is the stream provably live: open, caught up, and heard from lately? */
  function provablyLive() {
    return !!es && es.readyState === es.OPEN && caughtUp && Date.now() - heardAt <= staleAfterMs(keepalive);
  }

  const wake = () => {
    if (closed || document.visibilityState === 'hidden') return;
    if (state === 'gone' || state === 'unauthorized') return;
    if (provablyLive()) {
      if (state !== 'live') set('live'); // a stale `offline` event: the stream proved otherwise
      return;
    }
    if (es && es.readyState !== es.CLOSED && !caughtUp && Date.now() - heardAt <= staleAfterMs(keepalive)) return; // a fresh attach is on its way
    backoff = 1000;
    open(true);
  };
  const offline = () => set('offline');
  window.addEventListener('online', wake);
  window.addEventListener('offline', offline);
  window.addEventListener('focus', wake);
  window.addEventListener('pageshow', wake);
  document.addEventListener('visibilitychange', wake);
  document.addEventListener('resume', wake);

  set('connecting');
  open();

  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (es) es.close();
      window.removeEventListener('online', wake);
      window.removeEventListener('offline', offline);
      window.removeEventListener('focus', wake);
      window.removeEventListener('pageshow', wake);
      document.removeEventListener('visibilitychange', wake);
      document.removeEventListener('resume', wake);
    },
    reconnect: wake,
  };
}
