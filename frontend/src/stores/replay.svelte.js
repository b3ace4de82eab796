// A read-only replay of a stored session (#/replay/<id>): its events paged
// from the gateway into a fold of its own, or, with no connection, the copy
// the phone kept. Leaving it drops it; the live session is untouched.

import { ApiError, pageEvents } from '../lib/api.js';
import { applyEvent, createFold, view } from '../lib/fold.js';
import { cachedEvents } from '../lib/offline.js';

const PAGE = 1000;

export const replay = $state({ current: null }); // {id, transcript, state: 'catching-up'|'replay', error}

export async function openReplay(id) {
  replay.current = { id, transcript: view(createFold()), state: 'catching-up', error: '' };
  const f = createFold();
  let after = 0;
  try {
    for (;;) {
      const { body } = await pageEvents(id, after, PAGE);
      const events = body?.events || [];
      for (const ev of events) applyEvent(f, ev);
      if (replay.current?.id !== id) return; // left, or another replay opened
      replay.current = { ...replay.current, transcript: view(f) };
      if (events.length < PAGE || !body.next_after || body.next_after <= after) break;
      after = body.next_after;
    }
    replay.current = { ...replay.current, state: 'replay' };
  } catch (e) {
    if (replay.current?.id !== id) return;
    const kept = e instanceof ApiError ? [] : cachedEvents(id);
    if (kept.length) {
      for (const ev of kept) applyEvent(f, ev);
      replay.current = { ...replay.current, transcript: view(f), state: 'replay', error: 'No connection: this is the copy kept on this phone.' };
      return;
    }
    const error = e instanceof ApiError && e.status === 404 ? 'No such session.' : `Could not load it: ${e.message}`;
    replay.current = { ...replay.current, state: 'replay', error };
  }
}

export function closeReplay() {
  replay.current = null;
}
