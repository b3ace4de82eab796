// The live session: which one it is, its event stream (lib/stream.js: attach,
// replay from the last applied id, resume after a wake-up) folded into the
// transcript (lib/fold.js), and the copy the phone keeps for offline
// (lib/offline.js). One session is live at a time; switching tears the stream
// down and starts a fresh fold.

import { ApiError, openSession, remember, sessionVm, setSessionId } from '../lib/api.js';
import { applyEvent, createFold, liveBlocks, markApproval, restoreLive, runningTurn, view } from '../lib/fold.js';
import { clock } from '../lib/liveness.js';
import { cachedEvents, keepEvents, queuedPrompt, saveLive, savedLive } from '../lib/offline.js';
import { sessionPath } from '../lib/routes.js';
import { attach } from '../lib/stream.js';
import { auth, refused } from './auth.svelte.js';
import { notice, say } from './notice.svelte.js';
import { notifyAbout } from './notifications.svelte.js';
import { checkVm, vms } from './vms.svelte.js';

class LiveSession {
  id = $state('');
  conn = $state('connecting'); // lib/stream.js states
  transcript = $state.raw(view(createFold()));
  pending = $state(false); // a prompt accepted, its `user` event not seen yet
  queued = $state(null); // a prompt typed offline, waiting for the operator's yes once live
  liveSince = $state(-Infinity); // when the stream last became live (clock ms)
  awakeSince = $state(-Infinity); // when the page last became visible (a phone may have slept)
  seenRunning = $state({ turn: null, at: -Infinity }); // when this page first saw the running turn
  caughtUpAt = $state(-Infinity); // a wake-up reconnect caught up (the pill says so briefly)
}

export const session = new LiveSession();

let fold = createFold();
let stream = null;
let frame = 0;
let pendingTimer = null;
let titled = false;
let notifyLive = false; // after the first caught-up of this attach: events are news, not history
let stored = []; // the stored events applied, in order: the offline copy of this transcript

/** Is a turn running, as far as the events applied say (the last frame drawn may lag)? */
export const turnRunning = () => !!runningTurn(fold);

/** A local answer to an approval shows at once (its verb event confirms it later). */
export function markAnswered(approvalId, approve) {
  markApproval(fold, approvalId, approve);
  render();
}

/** Redraw at the next frame (a hidden page gets no frames: a short timer instead). */
function render() {
  if (frame) return;
  const flush = () => {
    frame = 0;
    const t = view(fold);
    session.transcript = t;
    if (session.pending && t.running) session.pending = false;
    if (t.running !== session.seenRunning.turn) session.seenRunning = { turn: t.running, at: clock() };
    if (notice.current?.untilTurnEnds && !t.running) notice.current = null;
  };
  frame = document.visibilityState === 'hidden' ? setTimeout(flush, 100) : requestAnimationFrame(flush);
}

/** A prompt was accepted: the working state shows until its `user` event (or 15 s). */
export function awaitTurn() {
  session.pending = true;
  clearTimeout(pendingTimer);
  pendingTimer = setTimeout(() => (session.pending = false), 15000);
}

function onEvent(ev) {
  const changed = applyEvent(fold, ev, clock());
  if (changed && ev.kind !== 'delta' && ev.kind !== 'status') {
    stored.push(ev);
    if (ev.kind === 'turn_end') keep();
  }
  if (changed) render();
  if (!titled && ev.kind === 'user' && ev.text) {
    titled = true;
    remember(session.id, String(ev.text).slice(0, 120));
  }
  if (changed && notifyLive) notifyAbout(ev, fold, session.id);
}

/** Keep this session's transcript on the phone (readable offline). */
function keep() {
  if (session.id) keepEvents(session.id, stored);
}

function showPath(id) {
  const path = sessionPath(id);
  if (location.pathname !== path) history.replaceState(history.state, '', path + location.search + location.hash);
}

function connect(id) {
  stream?.close();
  fold = createFold();
  titled = false;
  notifyLive = false;
  session.liveSince = -Infinity;
  // What the phone kept shows at once (and offline); the stream resumes after it.
  stored = [];
  for (const ev of cachedEvents(id)) if (applyEvent(fold, ev)) stored.push(ev);
  restoreLive(fold, savedLive(id));
  saveLive(id, []);
  session.transcript = view(fold);
  showPath(id);
  stream = attach(id, {
    lastId: () => fold.lastId,
    onEvent,
    onCaughtUp: ({ resumed } = {}) => {
      notifyLive = true;
      if (resumed) session.caughtUpAt = clock();
      keep();
      render();
      offerQueued();
    },
    onState: (s) => {
      session.conn = s;
      if (s === 'live') session.liveSince = clock();
      if (s === 'unauthorized') refused();
    },
    onGone: () => (auth.observing ? say('This session is not open to this link.', 'bad')
      : newSession('That session no longer exists; a new one was started.')),
  });
}

// A prompt typed offline is kept (stores/actions.svelte.js); the operator is
// asked about it once the stream is live again: it may no longer apply.
export function offerQueued() {
  session.queued = queuedPrompt();
}

/** Watch one session read-only (an observer link): nothing is remembered. */
export function watch(id) {
  session.id = id;
  connect(id);
}

/** Make `id` the live session, remembered as the one to come back to. */
export function switchTo(id) {
  session.id = id;
  setSessionId(id);
  remember(id, '');
  connect(id);
}

/** Back to the session remembered from last time; with several VMs, on its VM. */
export async function resume(id) {
  switchTo(id);
  if (vms.list.length > 1) vms.name = (await sessionVm(id)) || vms.name;
}

/** Open a new session on `vmChoice` and make it live; its id, or null. */
export async function newSession(message, vmChoice = vms.name) {
  try {
    const opened = await openSession(vmChoice || undefined);
    if (opened.vm && opened.vm !== vms.name) {
      vms.name = opened.vm;
      checkVm();
    }
    switchTo(opened.session_id);
    if (message) say(message);
    return opened.session_id;
  } catch (e) {
    say(e instanceof ApiError ? `Could not open a session: ${e.detail}` : 'Could not open a session; is the gateway up?', 'bad');
    return null;
  }
}

export function disconnect() {
  stream?.close();
}

/** The page became visible again, or was left (reload, another app): keep what it has. */
export function pageVisibility() {
  if (document.visibilityState === 'visible') session.awakeSince = clock();
  else away();
}

export function away() {
  if (!session.id) return;
  keep();
  saveLive(session.id, liveBlocks(fold));
}
