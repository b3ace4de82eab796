// System notifications (the Notification API) for the moments an operator who
// switched away must hear about: a turn ended (with its outcome), a failure,
// an approval request. Shown only while the page is hidden, only for events
// that arrive live (never for the replay on attach), and permission is asked
// at a sensible moment (the operator's first prompt, or the toggle in the
// Sessions sheet), never on load.
//
// `notificationFor(event, context)` is pure (unit-tested); the rest touches
// the browser.

import { dropPushSubscription, pushKey, savePushSubscription } from './api.js';

export const NOTIFY_KEY = 'breakglass.notify'; // 'off' when the operator turned them off
export const ASKED_KEY = 'breakglass.notify_asked'; // asked once on a first prompt

const OUTCOMES = {
  ok: 'done',
  error: 'failed',
  cancelled: 'stopped',
  interrupted: 'interrupted',
  timeout: 'timed out',
};

export function outcomeWord(outcome) {
  return OUTCOMES[outcome] || 'ended';
}

function clip(text, n = 140) {
  const s = String(text ?? '').replace(/\s+/g, ' ').trim();
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

/**
 * What to show for one live event, or null. `context` knows the turn's prompt
 * (`prompt`), its last error (`error`) and the session id.
 * The tag is per turn, so a turn's `error` and then its `turn_end` make one
 * notification (the second replaces the first), and per approval.
 */
export function notificationFor(ev, { prompt = '', error = '', sessionId = '' } = {}) {
  if (!ev || typeof ev !== 'object') return null;
  const data = { session_id: sessionId || ev.session_id || '', turn_id: ev.turn_id || '' };
  const about = prompt ? `“${clip(prompt, 80)}”` : '';
  switch (ev.kind) {
    case 'turn_end': {
      const word = outcomeWord(ev.outcome);
      const body = [about, ev.outcome === 'error' && error ? clip(error) : ''].filter(Boolean).join('\n');
      return { title: `breakglass: ${word}`, body: body || `The turn is ${word}.`, tag: `turn:${ev.turn_id || ''}`, data };
    }
    case 'error':
      return {
        title: 'breakglass: failed', body: [clip(ev.error || 'error'), about].filter(Boolean).join('\n'),
        tag: `turn:${ev.turn_id || ''}`, data,
      };
    case 'approval': {
      const verb = String(ev.verb || 'a verb');
      return {
        title: `breakglass: approve ${verb}?`,
        body: ev.reason ? clip(ev.reason) : `The agent asks to run ${verb}. Open to approve or deny.`,
        tag: `approval:${ev.approval_id || ev.id || ''}`, data, requireInteraction: true,
      };
    }
    default:
      return null;
  }
}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

export function supported() {
  return typeof window !== 'undefined' && 'Notification' in window;
}

/** 'unsupported' | 'denied' | 'off' (turned off here) | 'default' (not asked) | 'on' */
export function notifyState() {
  if (!supported()) return 'unsupported';
  const p = Notification.permission;
  if (p === 'denied') return 'denied';
  if (p !== 'granted') return 'default';
  return storage()?.getItem(NOTIFY_KEY) === 'off' ? 'off' : 'on';
}

/** Ask for permission (call it from a tap: browsers want a user gesture). */
export async function enableNotifications() {
  storage()?.removeItem(NOTIFY_KEY);
  storage()?.setItem(ASKED_KEY, '1');
  if (!supported()) return 'unsupported';
  if (Notification.permission === 'default') {
    try {
      await Notification.requestPermission();
    } catch {
      /* an old callback-only API or a refusal: the state says what happened */
    }
  }
  return notifyState();
}

export function disableNotifications() {
  storage()?.setItem(NOTIFY_KEY, 'off');
  return notifyState();
}

/**
 * On the operator's first prompt: ask once, inside the tap that sent it.
 * Never on load, never again after an answer (the Sessions sheet has a toggle).
 * Resolves when the browser has answered (null when nothing was asked).
 */
export function askOnFirstPrompt() {
  if (!supported() || Notification.permission !== 'default') return null;
  const s = storage();
  if (!s || s.getItem(ASKED_KEY)) return null;
  s.setItem(ASKED_KEY, '1');
  try {
    return Promise.resolve(Notification.requestPermission()).catch(() => null);
  } catch {
    return null;
  }
}

/**
 * Show `n` if the page is hidden and notifications are on. Resolves true when
 * shown. `onclick` runs when the page's own Notification is tapped (the service
 * worker's tap posts a `breakglass-notification` message to the page instead).
 */
export async function show(n, onclick = null) {
  if (!n || typeof document === 'undefined' || !document.hidden) return false;
  if (notifyState() !== 'on') return false;
  const options = {
    body: n.body, tag: n.tag, data: n.data, renotify: true,
    requireInteraction: !!n.requireInteraction, icon: '/icons/icon-192.png',
  };
  try {
    const reg = 'serviceWorker' in navigator ? await navigator.serviceWorker.getRegistration() : null;
    if (reg && typeof reg.showNotification === 'function') {
      await reg.showNotification(n.title, options);
      return true;
    }
  } catch {
    /* fall through to the page's own Notification */
  }
  try {
    const shown = new Notification(n.title, options);
    shown.onclick = () => {
      window.focus();
      shown.close();
      onclick?.(n.data || {});
    };
    return true;
  } catch {
    return false; // e.g. Android Chrome allows only the service worker's
  }
}

// ---- Web Push (gateway.push) --------------------------------------------
// With notifications allowed, the installed app also subscribes to pushes,
// so the gateway reaches the phone with the page closed. The subscription
// is posted on every load (which renews it on the server) and removed when
// the operator turns notifications off.

function keyBytes(b64url) {
  const s = b64url.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (b64url.length % 4)) % 4);
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

export function pushSupported() {
  return typeof navigator !== 'undefined' && 'serviceWorker' in navigator && typeof window !== 'undefined'
    && 'PushManager' in window;
}

/**
 * Subscribe this browser (or renew its subscription). Resolves 'on', or why not: 'unsupported', 'not-allowed' (no
 * notification permission), 'unavailable' (the browser has no push service,
 * or the gateway refused: the message is in `detail`).
 */
export async function subscribePush() {
  if (!pushSupported()) return { state: 'unsupported' };
  if (notifyState() !== 'on') return { state: 'not-allowed' };
  try {
    const reg = await navigator.serviceWorker.ready;
    const { body } = await pushKey();
    let sub = await reg.pushManager.getSubscription();
    if (!sub) {
      sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(body.public_key) });
    }
    await savePushSubscription(sub.toJSON());
    return { state: 'on' };
  } catch (e) {
    return { state: 'unavailable', detail: String(e?.detail || e?.message || e) };
  }
}

export async function unsubscribePush() {
  if (!pushSupported()) return;
  try {
    const reg = await navigator.serviceWorker.getRegistration();
    const sub = reg && (await reg.pushManager.getSubscription());
    if (!sub) return;
    await dropPushSubscription(sub.endpoint);
    await sub.unsubscribe();
  } catch {
    /* the server drops it on its own when the push service says it is gone */
  }
}
