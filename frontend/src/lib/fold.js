// The transcript fold: events in, a transcript out.
//
// Idempotent by event id: a stored event (one with a numeric `id`, the
// JetStream stream sequence) is applied at most once, whatever the order it
// arrives in, so replays, reconnects (Last-Event-ID) and reloads never
// double-render. Live-only `delta` frames carry no id: they are appended to the
// live text of their `block` and dropped as soon as the stored `text` event of
// that block arrives (or its turn ends). Live-only `status` heartbeats carry no
// id either: the latest one per open turn is kept with its arrival time (for
// the liveness indicator, lib/liveness.js) and is never part of the
// transcript; those of a turn that has ended are ignored. Unknown kinds are
// counted and skipped.
//
// Plain JavaScript with no dependency, so it runs under node's test runner and
// in the browser alike. The state is private and mutable; `view()` returns a
// fresh snapshot for rendering.

/** A label or annotation map as sorted [name, value] string pairs (bad input: none). */
function pairs(map) {
  if (!map || typeof map !== 'object' || Array.isArray(map)) return [];
  return Object.keys(map).sort().map((k) => [k, String(map[k] ?? '')]);
}

export function createFold() {
  return {
    seen: new Set(), // ids applied
    lastId: 0, // highest id applied
    entries: [], // sorted by `firstId`: {type:'turn'|'event', firstId, ...}
    turns: new Map(), // turn_id -> turn entry
    tools: new Map(), // tool_use_id -> tool item
    orphanResults: new Map(), // tool_use_id -> result that came before its tool
    live: new Map(), // block -> {turn_id, text}
    doneBlocks: new Set(), // blocks whose stored text arrived: later deltas are dropped
    verbs: new Map(), // request_id -> verb item
    approvals: new Map(), // approval_id -> approval item
    links: new Map(), // verb request_id -> approval_id
    status: new Map(), // turn_id -> latest live `status` heartbeat {..., at}
    answered: new Map(), // approval_id -> 'approved'|'denied' answered locally or by a verb event
    escalations: new Map(), // approval_id -> {channel, after_seconds, by}: also sent to a second channel
    cost: new Map(), // cli session id -> last cumulative cost seen
    unknown: 0,
    unknownKinds: new Set(),
    version: 0, // bumped on every change (cheap "did anything change")
  };
}

function numericId(ev) {
  const id = ev && ev.id;
  if (typeof id === 'number' && Number.isSafeInteger(id) && id >= 0) return id;
  if (typeof id === 'string' && /^\d+$/.test(id)) return Number(id);
  return null;
}

function insertSorted(list, entry) {
  // Almost always an append: events arrive in stream order.
  let i = list.length;
  while (i > 0 && list[i - 1].firstId > entry.firstId) i--;
  list.splice(i, 0, entry);
}

function insertItem(items, item) {
  let i = items.length;
  while (i > 0 && items[i - 1].id > item.id) i--;
  items.splice(i, 0, item);
}

function turnFor(state, ev, id) {
  const key = ev.turn_id;
  if (!key) return null;
  let turn = state.turns.get(key);
  if (!turn) {
    turn = {
      type: 'turn', key: 't:' + key, turn_id: key, firstId: id,
      user: null, items: [], end: null, usage: null, result: null, cliSession: null, turnCost: null,
    };
    state.turns.set(key, turn);
    insertSorted(state.entries, turn);
  } else if (id < turn.firstId) {
    // An earlier event of this turn arrived late: keep the entry list ordered.
    turn.firstId = id;
    state.entries.splice(state.entries.indexOf(turn), 1);
    insertSorted(state.entries, turn);
  }
  return turn;
}

/** Where an item goes: its turn, or a standalone entry when it has no turn. */
function place(state, ev, id, item) {
  const turn = turnFor(state, ev, id);
  if (turn) insertItem(turn.items, item);
  else insertSorted(state.entries, { type: 'event', key: 'e:' + id, firstId: id, item });
  return turn;
}

function commandOf(name, input) {
  if (!input || typeof input !== 'object') return '';
  if (typeof input.command === 'string') return input.command;
  if (typeof input.verb === 'string') return input.verb;
  if (typeof input.file_path === 'string') return input.file_path;
  if (typeof input.pattern === 'string') return input.pattern + (input.path ? '  in ' + input.path : '');
  try {
    return JSON.stringify(input);
  } catch {
    return '';
  }
}

function dropLiveOfTurn(state, turnId) {
  for (const [block, live] of state.live) {
    if (live.turn_id === turnId) {
      state.live.delete(block);
      state.doneBlocks.add(block);
    }
  }
}

function applyDelta(state, ev) {
  const block = typeof ev.block === 'string' ? ev.block : '';
  const text = typeof ev.text === 'string' ? ev.text : '';
  if (!text) return false;
  if (block && state.doneBlocks.has(block)) return false;
  const turn = ev.turn_id ? state.turns.get(ev.turn_id) : null;
  if (turn && turn.end) return false; // the turn is over: its deltas are stale
  const key = block || '(anonymous):' + (ev.turn_id || '');
  const live = state.live.get(key);
  if (live) live.text += text;
  else state.live.set(key, { turn_id: ev.turn_id || null, text });
  return true;
}

// An approval and the verb it gates: the runner records `approval`
// {approval_id} and then `verb` {phase: requested, request_id}, and the answer
// as `verb` {phase: approved|denied, request_id}. They are linked by the
// approval's own `request_id` when it carries one, else by order: the first
// unlinked approval of the same turn and verb.
function linkApproval(state, verbItem) {
  const rid = verbItem.request_id;
  if (!rid || state.links.has(rid)) return;
  if (state.approvals.has(rid)) {
    state.links.set(rid, rid);
    return;
  }
  for (const a of state.approvals.values()) {
    if (a.linked || a.verb !== verbItem.verb || (a.turn_id || null) !== (verbItem.turn_id || null)) continue;
    if (a.request_id && a.request_id !== rid) continue;
    a.linked = rid;
    state.links.set(rid, a.approval_id);
    return;
  }
}

function updateApprovalFromVerb(state, verbItem) {
  linkApproval(state, verbItem);
  const phase = verbItem.phase;
  if (phase !== 'approved' && phase !== 'denied' && phase !== 'running' && phase !== 'done') return;
  const approval = state.approvals.get(state.links.get(verbItem.request_id));
  if (!approval || approval.status !== 'pending') return;
  approval.status = phase === 'denied' ? 'denied' : 'approved';
}

function num(v) {
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

// A heartbeat: keep the latest per turn, stamped with when it arrived here
// (the client's clock, not the sender's `ts`: the two need not agree).
function applyStatus(state, ev, now) {
  const turnId = ev.turn_id;
  if (!turnId || typeof turnId !== 'string') return false;
  const turn = state.turns.get(turnId);
  if (turn && turn.end) return false; // never after turn_end (a late frame is stale)
  state.status.set(turnId, {
    turn_id: turnId,
    elapsed_seconds: num(ev.elapsed_seconds),
    since_output_seconds: num(ev.since_output_seconds),
    lease_seconds: num(ev.lease_seconds),
    runner: typeof ev.runner === 'string' ? ev.runner : '',
    at: Number.isFinite(now) ? now : Date.now(),
  });
  return true;
}

// cost_usd is the CLI session's running total: this turn's own cost is the
// step from the previous total of the same CLI session. Tokens add up over
// the turn's usage events.
function addUsage(state, turn, ev) {
  const tokens = ev.tokens && typeof ev.tokens === 'object' ? ev.tokens : {};
  const usage = {
    cost_usd: Number(ev.cost_usd) || 0,
    input: Number(tokens.input) || 0, output: Number(tokens.output) || 0,
    cache_read: Number(tokens.cache_read) || 0, cache_creation: Number(tokens.cache_creation) || 0,
  };
  const chain = turn.cliSession || '(unknown)';
  const before = state.cost.has(chain) ? state.cost.get(chain) : 0;
  if (turn.usage) {
    usage.input += turn.usage.input; usage.output += turn.usage.output;
    usage.cache_read += turn.usage.cache_read; usage.cache_creation += turn.usage.cache_creation;
  }
  const start = turn.usage ? turn.usage.costBefore : before;
  usage.costBefore = start;
  turn.turnCost = usage.cost_usd >= start ? usage.cost_usd - start : usage.cost_usd;
  turn.usage = usage;
  state.cost.set(chain, usage.cost_usd);
}

// The verb an approval gates may have arrived first (out of order): link it
// now and replay its phases onto the approval.
function settleLateApproval(state, approvalId) {
  for (const v of [...state.verbs.values()].sort((a, b) => a.id - b.id)) {
    if (state.links.has(v.request_id)) continue;
    linkApproval(state, v);
    if (state.links.get(v.request_id) === approvalId) {
      for (const p of v.phases) updateApprovalFromVerb(state, { ...v, phase: p.phase });
    }
  }
}


// One small handler per stored kind: `(state, ev, base)` where `base` holds
// the fields every item carries ({id, kind, ts, by}); it returns whether the
// transcript changed. A null prototype keeps an event named after an Object
// method (`constructor`, `toString`) an unknown kind.
const STORED = {
  __proto__: null,

  user(state, ev, base) {
    const turn = turnFor(state, ev, base.id);
    const user = { ...base, text: String(ev.text ?? ''), model: ev.model || null };
    if (turn) turn.user = user;
    else place(state, ev, base.id, { ...user, t: 'user' });
    return true;
  },

  session(state, ev, base) {
    const turn = turnFor(state, ev, base.id);
    if (turn) turn.cliSession = ev.cli_session_id || ev.session_id || null;
    return true;
  },

  text(state, ev, base) {
    const block = typeof ev.block === 'string' ? ev.block : '';
    if (block) {
      state.live.delete(block);
      state.doneBlocks.add(block);
    }
    place(state, ev, base.id, { ...base, t: 'text', text: String(ev.text ?? ''), block });
    return true;
  },

  tool(state, ev, base) {
    const toolUseId = ev.tool_use_id || '';
    const item = {
      ...base, t: 'tool', name: String(ev.name || 'tool'), input: ev.input || {},
      command: commandOf(ev.name, ev.input), tool_use_id: toolUseId, result: null,
    };
    if (toolUseId) {
      state.tools.set(toolUseId, item);
      if (state.orphanResults.has(toolUseId)) {
        item.result = state.orphanResults.get(toolUseId);
        state.orphanResults.delete(toolUseId);
      }
    }
    place(state, ev, base.id, item);
    return true;
  },

  tool_result(state, ev, base) {
    const result = { id: base.id, output: String(ev.output ?? ''), is_error: !!ev.is_error, truncated: !!ev.truncated };
    const tool = ev.tool_use_id ? state.tools.get(ev.tool_use_id) : null;
    if (tool) tool.result = result;
    else if (ev.tool_use_id) state.orphanResults.set(ev.tool_use_id, result);
    else place(state, ev, base.id, { ...base, t: 'tool', name: 'result', input: {}, command: '', tool_use_id: '', result });
    return true;
  },

  result(state, ev, base) {
    const turn = turnFor(state, ev, base.id);
    const item = {
      ...base, t: 'result', is_error: !!ev.is_error, result: String(ev.result ?? ''),
      duration_ms: Number(ev.duration_ms) || 0, subtype: ev.subtype || '',
    };
    // A turn the operator stopped ends with an "aborted" error result: that
    // is the cancellation, not a failure, and must not read as one.
    item.aborted = /^aborted/i.test(String(ev.terminal_reason || '')) || /^aborted/i.test(item.result);
    const failed = item.is_error && !item.aborted;
    if (turn) {
      turn.result = item;
      if (failed && item.result) insertItem(turn.items, item);
    } else if (failed) place(state, ev, base.id, item);
    return true;
  },

  error(state, ev, base) {
    place(state, ev, base.id, { ...base, t: 'error', error: String(ev.error ?? 'error') });
    return true;
  },

  cancelled(state, ev, base) {
    place(state, ev, base.id, { ...base, t: 'cancelled' });
    return true;
  },

  interrupted(state, ev, base) {
    place(state, ev, base.id, { ...base, t: 'interrupted', reason: String(ev.reason ?? '') });
    return true;
  },

  turn_end(state, ev, base) {
    const turn = turnFor(state, ev, base.id);
    if (!turn) return true;
    turn.end = { id: base.id, outcome: ev.outcome || null, ts: ev.ts || null };
    dropLiveOfTurn(state, turn.turn_id);
    state.status.delete(turn.turn_id);
    for (const item of turn.items) {
      if (item.t === 'approval' && item.status === 'pending') item.status = 'expired';
    }
    return true;
  },

  usage(state, ev, base) {
    const turn = turnFor(state, ev, base.id);
    if (turn) addUsage(state, turn, ev);
    return true;
  },

  verb(state, ev, base) {
    const fields = {
      verb: String(ev.verb || ''), phase: String(ev.phase || ''),
      exit_code: ev.exit_code ?? null, stdout: ev.stdout ?? null, stderr: ev.stderr ?? null,
      rejected: !!ev.rejected, request_id: ev.request_id || null, turn_id: ev.turn_id || null,
    };
    const phase = { phase: fields.phase, id: base.id, by: base.by, ts: base.ts };
    let item = fields.request_id ? state.verbs.get(fields.request_id) : null;
    if (item) {
      item.phases.push(phase);
      for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) item[k] = v;
      item.lastId = base.id;
    } else {
      item = { ...base, t: 'verb', ...fields, phases: [phase], lastId: base.id };
      if (fields.request_id) state.verbs.set(fields.request_id, item);
      place(state, ev, base.id, item);
    }
    updateApprovalFromVerb(state, item);
    return true;
  },

  approval(state, ev, base) {
    const approvalId = String(ev.approval_id || base.id);
    const turn = ev.turn_id ? state.turns.get(ev.turn_id) : null;
    const item = {
      ...base, t: 'approval', approval_id: approvalId, verb: String(ev.verb || ''), turn_id: ev.turn_id || null,
      request_id: ev.request_id || null, reason: String(ev.reason ?? ''), linked: null,
      status: state.answered.get(approvalId) || (turn && turn.end ? 'expired' : 'pending'),
      escalated: state.escalations.get(approvalId) || null,
    };
    state.approvals.set(approvalId, item);
    place(state, ev, base.id, item);
    settleLateApproval(state, approvalId);
    return true;
  },

  // Nobody answered an approval in time: it also went to a second channel.
  escalated(state, ev) {
    const approvalId = String(ev.approval_id || '');
    const info = { channel: String(ev.channel || ''), after_seconds: Number(ev.after_seconds) || 0, by: String(ev.by || '') };
    state.escalations.set(approvalId, info);
    const item = state.approvals.get(approvalId);
    if (item) item.escalated = info;
    return !!item;
  },

  // An Alertmanager alert (the first event of a triage session), or its resolution.
  alert(state, ev, base) {
    place(state, ev, base.id, {
      ...base, t: 'alert', alertname: String(ev.alertname || 'alert'), status: String(ev.status || ''),
      vm: String(ev.vm || ''), labels: pairs(ev.labels), annotations: pairs(ev.annotations),
      starts_at: ev.starts_at || null, generator_url: String(ev.generator_url || ''),
    });
    return true;
  },

  // The end of an alert's automatic triage.
  diagnosis(state, ev, base) {
    place(state, ev, base.id, {
      ...base, t: 'diagnosis', alertname: String(ev.alertname || 'alert'), summary: String(ev.summary || ''),
      outcome: ev.outcome || null,
    });
    return true;
  },
};

// SPEC §4: skip unknown kinds. The id is still consumed (so the resume point
// moves) and the kind counted; nothing is shown.
function unknownKind(state, ev) {
  state.unknown++;
  state.unknownKinds.add(ev.kind);
  return true;
}

// The live-only kinds: no id, never stored, handled before deduplication.
const LIVE = { __proto__: null, delta: applyDelta, status: applyStatus };

/**
 * Apply one event (a parsed SSE `message` frame). Returns true when the
 * transcript (or the running turn's heartbeat) changed. Never throws on bad
 * input. `now` (ms, any monotonic clock) stamps a `status` heartbeat's arrival.
 */
export function applyEvent(state, ev, now = Date.now()) {
  if (!ev || typeof ev !== 'object' || typeof ev.kind !== 'string') return false;
  const live = LIVE[ev.kind];
  if (live) {
    const changed = live(state, ev, now);
    if (changed) state.version++;
    return changed;
  }
  const id = numericId(ev);
  if (id === null || state.seen.has(id)) return false; // without an id a stored kind cannot be deduplicated
  state.seen.add(id);
  if (id > state.lastId) state.lastId = id;
  state.version++;
  const handle = STORED[ev.kind] || unknownKind;
  return handle(state, ev, { id, kind: ev.kind, ts: ev.ts || null, by: ev.by || null });
}

/** Apply many events; returns how many changed the transcript. */
export function applyAll(state, events) {
  let n = 0;
  for (const ev of events) if (applyEvent(state, ev)) n++;
  return n;
}

/** Record a local answer to an approval (the server's verb event confirms it later). */
export function markApproval(state, approvalId, approve) {
  const status = approve ? 'approved' : 'denied';
  state.answered.set(approvalId, status);
  const item = state.approvals.get(approvalId);
  if (item && item.status === 'pending') item.status = status;
  state.version++;
}

/** Is a turn running (a turn seen without its turn_end)? */
export function runningTurn(state) {
  for (let i = state.entries.length - 1; i >= 0; i--) {
    const e = state.entries[i];
    if (e.type === 'turn' && !e.end) return e.turn_id;
  }
  return null;
}

// A tool item's result is an object; a `result` item's is its text: copy
// objects only (spreading a string makes an object of its characters).
function copied(v) {
  return v && typeof v === 'object' ? { ...v } : v;
}

function elapsed(from, to) {
  const a = Date.parse(from || '');
  const b = Date.parse(to || '');
  return Number.isFinite(a) && Number.isFinite(b) && b >= a ? b - a : null;
}

/**
 * The live text of open blocks, to keep across a reload (sessionStorage):
 * `[{block, turn_id, text}]`.
 */
export function liveBlocks(state) {
  return [...state.live].map(([block, l]) => ({ block, turn_id: l.turn_id, text: l.text }));
}

/**
 * Put back live text saved before a reload, before the stream replays: the
 * replay's stored `text` or `turn_end` drops it as usual. The deltas sent
 * while the page was away are missing, so the join is marked with " … ".
 */
export function restoreLive(state, blocks) {
  if (!Array.isArray(blocks)) return;
  for (const b of blocks) {
    if (!b || typeof b.block !== 'string' || typeof b.text !== 'string' || !b.text) continue;
    if (state.doneBlocks.has(b.block) || state.live.has(b.block)) continue;
    state.live.set(b.block, { turn_id: typeof b.turn_id === 'string' ? b.turn_id : null, text: b.text + ' … ' });
  }
  state.version++;
}

/** A fresh snapshot for rendering: new objects, so a UI can diff by reference. */
export function view(state) {
  const liveByTurn = new Map();
  const looseLive = [];
  for (const [block, live] of state.live) {
    const entry = { block, text: live.text };
    if (live.turn_id && state.turns.has(live.turn_id)) {
      if (!liveByTurn.has(live.turn_id)) liveByTurn.set(live.turn_id, []);
      liveByTurn.get(live.turn_id).push(entry);
    } else looseLive.push(entry);
  }
  const entries = state.entries.map((e) => {
    if (e.type === 'turn') {
      return {
        ...e,
        user: e.user ? { ...e.user } : null,
        items: e.items.map((i) => ({ ...i, result: copied(i.result), phases: i.phases ? [...i.phases] : undefined })),
        end: e.end ? { ...e.end } : null,
        usage: e.usage ? { ...e.usage } : null,
        result: e.result ? { ...e.result } : null,
        live: liveByTurn.get(e.turn_id) || [],
        hasOutput: liveByTurn.has(e.turn_id) || e.items.some((i) => i.t === 'text' || i.t === 'tool' || i.t === 'verb'),
        // wall-clock time of the turn (the CLI's own duration_ms leaves out
        // start-up and the runner: it is not what the operator waited)
        elapsedMs: elapsed(e.user?.ts, e.end?.ts),
      };
    }
    return { ...e, item: { ...e.item, result: copied(e.item.result) } };
  });
  const pendingApprovals = [...state.approvals.values()].filter((a) => a.status === 'pending').map((a) => ({ ...a }));
  let totalCost = 0;
  for (const c of state.cost.values()) totalCost += c;
  const running = runningTurn(state);
  const beat = running ? state.status.get(running) : null;
  return {
    entries,
    looseLive,
    running,
    heartbeat: beat ? { ...beat } : null,
    lastId: state.lastId,
    pendingApprovals,
    totalCost,
    unknown: state.unknown,
    count: state.seen.size,
  };
}

/**
 * The transcript as plain lines, in order: what a reader sees. Tests compare
 * it before and after a reload, and count duplicates in it.
 */
export function lines(state) {
  const out = [];
  const item = (i) => {
    switch (i.t) {
      case 'user': return `user: ${i.text}`;
      case 'text': return `text: ${i.text}`;
      case 'tool': return `tool ${i.name}: ${i.command}` + (i.result ? ` => ${i.result.output}` : '');
      case 'result': return `result error: ${i.result}`;
      case 'error': return `error: ${i.error}`;
      case 'cancelled': return 'cancelled';
      case 'interrupted': return `interrupted: ${i.reason}`;
      case 'verb': return `verb ${i.verb} ${i.phase}` + (i.exit_code !== null ? ` exit ${i.exit_code}` : '');
      case 'approval': return `approval ${i.verb} ${i.status}`;
      case 'alert': return `alert ${i.alertname} ${i.status}`;
      case 'diagnosis': return `diagnosis ${i.alertname}: ${i.summary}`;
      default: return i.t;
    }
  };
  for (const e of state.entries) {
    if (e.type === 'turn') {
      out.push(e.user ? `user: ${e.user.text}` : 'user: (not recorded)');
      for (const i of e.items) out.push(item(i));
      for (const [, live] of state.live) if (live.turn_id === e.turn_id) out.push(`live: ${live.text}`);
      if (e.end) out.push(`end: ${e.end.outcome || ''}`);
    } else out.push(item(e.item));
  }
  return out;
}
