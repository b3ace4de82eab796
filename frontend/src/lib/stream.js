// Attach to a session's event stream (SPEC §4) with EventSource.
//
// The browser reconnects by itself and sends Last-Event-ID, so the gateway
// resumes strictly after the last stored event: no gap, no duplicate. When the
// browser gives up (the stream answered an error status, e.g. a proxy's 502
// while the gateway restarts), we open a new EventSource with `?after=<last id>`
// after a short backoff. The fold is idempotent by id anyway.
//
// States: connecting -> catching-up -> live; reconnecting; offline; gone; unauthorized.

import { api, ApiError } from './api.js';

export function attach(sessionId, { lastId, onEvent, onCaughtUp, onState, onGone }) {
  let es = null;
  let closed = false;
  let timer = null;
  let backoff = 1000;
  let state = '';

  const set = (s) => {
    if (s !== state) {
      state = s;
      onState(s);
    }
  };

  function url() {
    const after = lastId();
    return `/api/session/${sessionId}/stream` + (after > 0 ? `?after=${after}` : '');
  }

  function open() {
    if (closed) return;
    clearTimeout(timer);
    timer = null;
    if (es) es.close();
    es = new EventSource(url(), { withCredentials: true });
    es.onopen = () => {
      backoff = 1000;
      set('catching-up');
    };
    es.onmessage = (msg) => {
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
    es.addEventListener('caught-up', () => {
      set('live');
      onCaughtUp();
    });
    es.onerror = () => {
      if (closed) return;
      if (!navigator.onLine) set('offline');
      else set('reconnecting');
      if (es.readyState === EventSource.CLOSED) retry();
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
        await api(`/api/session/${sessionId}/events?after=${lastId()}&limit=1`);
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

  const wake = () => {
    if (closed) return;
    if (!es || es.readyState === EventSource.CLOSED) {
      backoff = 1000;
      clearTimeout(timer);
      timer = null;
      open();
    }
  };
  const offline = () => set('offline');
  const visible = () => {
    if (document.visibilityState === 'visible') wake();
  };
  window.addEventListener('online', wake);
  window.addEventListener('offline', offline);
  document.addEventListener('visibilitychange', visible);

  set('connecting');
  open();

  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (es) es.close();
      window.removeEventListener('online', wake);
      window.removeEventListener('offline', offline);
      document.removeEventListener('visibilitychange', visible);
    },
    reconnect: wake,
  };
}
