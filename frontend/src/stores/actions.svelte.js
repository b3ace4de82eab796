// What the operator's buttons do to the live session: send a prompt (kept
// for later when offline), stop the running turn, answer an approval, and
// export a transcript. Each says what went wrong in the notice line.

import { answerApproval, ApiError, cancelTurn, exportBlob, sendPrompt } from '../lib/api.js';
import { setQueuedPrompt } from '../lib/offline.js';
import { auth } from './auth.svelte.js';
import { liveness } from './liveness.svelte.js';
import { dismiss, say } from './notice.svelte.js';
import { askToNotify } from './notifications.svelte.js';
import { awaitTurn, markAnswered, newSession, session, turnRunning } from './session.svelte.js';

export const busy = $state({ sending: false, stopping: false, answering: false });

/** Send a prompt to the live session; true when it went (or was kept for later): the composer clears. */
export async function send(text, retried = false) {
  dismiss();
  if (!retried) askToNotify(); // inside the tap that sent the first prompt; never on load
  busy.sending = true;
  try {
    await sendPrompt(session.id, text);
    awaitTurn();
    return true;
  } catch (e) {
    const status = e instanceof ApiError ? e.status : 0;
    if (status === 409) say('A turn is already running. Wait for it to finish, or press Stop.', 'bad');
    else if (status === 404 && !retried) {
      const id = await newSession('That session no longer exists; a new one was started and your message sent there.');
      if (id) return send(text, true);
    } else if (status === 422) say(e.detail || 'The gateway refused that prompt.', 'bad');
    else if (status === 401) auth.status = 'login';
    else if (!status && (!navigator.onLine || session.conn !== 'live')) {
      setQueuedPrompt({ session_id: session.id, text });
      say('You are offline. The message is kept here; you will be asked to send it when the connection is back.', 'bad');
      return true; // the text is kept in the queue
    } else say(status ? `Could not send: ${e.detail}` : 'Could not send: no connection to the gateway. Try again.', 'bad');
    return false;
  } finally {
    busy.sending = false;
  }
}

// A prompt typed offline is kept; once the stream is live again the operator
// is asked before it goes (minutes may have passed: it may no longer apply).
export async function sendQueued(yes) {
  const q = session.queued;
  session.queued = null;
  setQueuedPrompt(null);
  if (yes && q) {
    if (q.session_id !== session.id) say('That message was typed in another session; it is sent here.');
    await send(q.text);
  }
}

export async function stop() {
  busy.stopping = true;
  const lost = liveness.current.state === 'lost';
  try {
    const { body } = await cancelTurn(session.id);
    if (!body?.cancelled && lost) {
      // the frozen runner cannot answer; the reaper ends the turn once its lease lapses
      if (turnRunning()) say('The agent runner did not answer. The turn will be marked interrupted when its lease lapses.', 'bad', true);
    } else if (!body?.cancelled) say('Nothing was running.');
    session.pending = false;
  } catch (e) {
    say(e instanceof ApiError ? `Stop failed: ${e.detail}` : 'Stop failed: no connection. Try again.', 'bad');
  } finally {
    busy.stopping = false;
  }
}

export async function answer(approval, approve) {
  busy.answering = true;
  try {
    const { body } = await answerApproval(session.id, approval.approval_id, approve);
    markAnswered(approval.approval_id, approve);
    if (body && body.accepted === false) say('That request was no longer waiting (already answered, timed out, or its turn ended).');
  } catch (e) {
    const status = e instanceof ApiError ? e.status : 0;
    if (status === 404 || status === 409 || status === 410) {
      markAnswered(approval.approval_id, approve);
      say(`That request is no longer waiting (${e.detail}).`);
    } else say(status ? `Could not answer: ${e.detail}` : 'Could not answer: no connection. Try again.', 'bad');
  } finally {
    busy.answering = false;
  }
}

/** Download a session's export (`md`, or the verifiable `jsonl`). */
export async function exportSession(id, format) {
  try {
    const url = URL.createObjectURL(await exportBlob(id, format));
    const a = Object.assign(document.createElement('a'), { href: url, download: `breakglass-${id}.${format}` });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (e) {
    say(`Export failed: ${e.message}`, 'bad');
  }
}
