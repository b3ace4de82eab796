// System notifications and Web Push, as the page sees them (the rules and the
// browser calls are lib/notify.js): whether they are on, whether this browser
// is subscribed to pushes, and which live events become a notification.

import {
  askOnFirstPrompt, disableNotifications, enableNotifications, notificationFor, notifyState, show,
  subscribePush, unsubscribePush,
} from '../lib/notify.js';
import { auth } from './auth.svelte.js';

export const notifications = $state({
  notify: 'default', // lib/notify.js notifyState()
  push: '', // lib/notify.js subscribePush(): 'on', or why not
});

let onTap = () => {};

/** What a tap on a notification does (the layout decides: e.g. leave a replay). */
export function whenTapped(fn) {
  onTap = fn;
}

/** A tap on the page's own notification, or the service worker's message about one. */
export function tapped(data) {
  onTap(data);
}

export function loadNotifyState() {
  notifications.notify = notifyState();
}

// Pushes reach the phone with the app closed: subscribed once notifications
// are allowed, renewed on every load.
export async function syncPush() {
  if (notifications.notify === 'on' && auth.status === 'ok') notifications.push = (await subscribePush()).state;
}

/** Inside the tap that sent the first prompt; never on load. */
export function askToNotify() {
  askOnFirstPrompt()?.then(() => {
    notifications.notify = notifyState();
    syncPush();
  });
}

export async function toggleNotify() {
  if (notifications.notify === 'on') {
    notifications.notify = disableNotifications();
    await unsubscribePush();
    notifications.push = '';
  } else {
    notifications.notify = await enableNotifications();
    await syncPush();
  }
}

/**
 * A live event of the session `sessionId` (folded into `fold`): a system
 * notification for a turn's end, a failure, an approval request, when the
 * page is hidden (lib/notify.js decides; it needs permission).
 */
export function notifyAbout(ev, fold, sessionId) {
  if (ev.kind !== 'turn_end' && ev.kind !== 'error' && ev.kind !== 'approval') return;
  const turn = ev.turn_id ? fold.turns.get(ev.turn_id) : null;
  if (ev.kind === 'approval') {
    const item = fold.approvals.get(String(ev.approval_id || ev.id));
    if (item && item.status !== 'pending') return; // already answered
  }
  let error = '';
  if (turn) {
    for (const i of turn.items) if (i.t === 'error') error = i.error;
    if (!error && turn.result?.is_error && !turn.result.aborted) error = turn.result.result;
  }
  show(notificationFor(ev, { prompt: turn?.user?.text || '', error, sessionId }), tapped);
}
