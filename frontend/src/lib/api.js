import { assertPasskey, createPasskey } from './passkey.js';

// Every call the page makes to the gateway (SPEC §3), so credentials, the
// 401 hand-off to the login screen and error details live in one place.
// Identity: the edge proxy's session (cookies), a bearer token kept in
// localStorage, or an observer link's secret. (The service worker, src/sw.js,
// is a separate script with no token: its one call carries a push grant.)

export const TOKEN_KEY = 'breakglass.token';
export const SESSION_KEY = 'breakglass.session_id';
export const HISTORY_KEY = 'breakglass.history';

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

export function getToken() {
  return storage()?.getItem(TOKEN_KEY) || '';
}

export function setToken(token) {
  const s = storage();
  if (!s) return;
  if (token) s.setItem(TOKEN_KEY, token);
  else s.removeItem(TOKEN_KEY);
}

// An observer link (`#observe/<session>/<secret>`, gateway.observers): every
// call carries the secret instead of a token, and may only read that session.
let observerSecret = '';
export const setObserver = (secret) => { observerSecret = secret || ''; };

function credentials() {
  if (observerSecret) return { 'X-Breakglass-Observer': observerSecret };
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Listeners told when any call answers 401 (the app shows its login screen). */
const unauthorized = new Set();
export function onUnauthorized(fn) {
  unauthorized.add(fn);
  return () => unauthorized.delete(fn);
}

function detailOf(body, status) {
  if (body && typeof body === 'object') {
    const d = body.detail;
    if (typeof d === 'string') return d;
    if (Array.isArray(d) && d.length) return d.map((x) => x.msg || String(x)).join('; ');
  }
  return `HTTP ${status}`;
}

function parsed(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text.slice(0, 300) };
  }
}

/** One request with this page's credentials; a 401 tells the listeners. */
async function request(path, { method = 'GET', body, signal, headers = {} } = {}) {
  const res = await fetch(path, {
    method, signal, credentials: 'same-origin', cache: 'no-store',
    headers: { ...headers, ...credentials(), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) unauthorized.forEach((fn) => fn());
  return res;
}

/**
 * fetch JSON. Resolves with {status, body} for 2xx and for the statuses the
 * caller lists in `accept` (e.g. 502 for verbs); throws ApiError otherwise.
 */
export async function api(path, { method = 'GET', body, accept = [], signal } = {}) {
  const res = await request(path, { method, body, signal, headers: { Accept: 'application/json' } });
  const data = parsed(await res.text());
  if (res.ok || accept.includes(res.status)) return { status: res.status, body: data };
  throw new ApiError(res.status, detailOf(data, res.status), data);
}

/**
 * The session's event stream (SPEC §4), resuming after `after`. EventSource
 * cannot send headers: the cookie (POST /api/login) or the observer secret in
 * the query authorises it.
 */
export function openStream(sessionId, after = 0) {
  const query = [after > 0 ? `after=${after}` : '', observerSecret ? `observer=${encodeURIComponent(observerSecret)}` : '']
    .filter(Boolean).join('&');
  return new EventSource(`/api/session/${sessionId}/stream` + (query ? `?${query}` : ''), { withCredentials: true });
}

// The cheap identity probe: any authenticated GET answers 401 without a valid identity.
export const whoAmI = () => listVerbs();

// Let the gateway set an HttpOnly cookie so EventSource (which cannot send
// headers) is authorised too; an older gateway without the route answers 404.
export function login() {
  return api('/api/login', { method: 'POST' });
}

// A new session, bound to `vm` (a name of /api/vms; none: the default VM).
// Returns {session_id, vm}.
export const openSession = async (vm) => (await api('/api/session', { method: 'POST', body: vm ? { vm } : {} })).body;

// The VMs this console may act on: [{name, vmid, node, default, shell, busy}].
export function listVms() {
  return api('/api/vms');
}

// The VM a stored session is bound to ('' when unknown): the history index knows it.
export async function sessionVm(sessionId) {
  try {
    const { body } = await api(`/api/sessions?limit=1&q=${encodeURIComponent(sessionId)}`);
    return body?.sessions?.find((s) => s.session_id === sessionId)?.vm || '';
  } catch {
    return '';
  }
}

// The doctor's checks the gateway can run: {ok, checks: [{check, status, summary, fix}]}.
export function healthChecks() {
  return api('/api/health/checks');
}

export function sendPrompt(sessionId, prompt, model) {
  return api(`/api/session/${sessionId}/prompt`, { method: 'POST', body: model ? { prompt, model } : { prompt } });
}

export function cancelTurn(sessionId) {
  return api(`/api/session/${sessionId}/cancel`, { method: 'POST' });
}

/**
 * A request that may need step-up: when the gateway answers 428 with
 * `step_up` options, the operator's passkey signs that challenge and the same
 * request is sent once more with the assertion (gateway.stepup).
 */
async function withStepUp(path, body, accept = []) {
  const first = await api(path, { method: 'POST', body, accept: [...accept, 428] });
  if (first.status !== 428) return first;
  const options = first.body?.step_up?.public_key;
  if (!options) throw new ApiError(428, detailOf(first.body, 428), first.body);
  let assertion;
  try {
    assertion = await assertPasskey(options);
  } catch (e) {
    throw new ApiError(403, `passkey confirmation cancelled or failed (${e.name || e.message || e})`, null);
  }
  return api(path, { method: 'POST', body: { ...body, step_up: assertion }, accept });
}

export function answerApproval(sessionId, approvalId, approve) {
  return withStepUp(`/api/session/${sessionId}/approval/${encodeURIComponent(approvalId)}`, { approve });
}

export function passkeyState() {
  return api('/api/passkeys');
}

export async function registerPasskey() {
  const { body: options } = await withStepUp('/api/passkeys/options', {});
  const credential = await createPasskey(options);
  return (await api('/api/passkeys', { method: 'POST', body: { credential } })).body;
}

export function createObserverLink(sessionId, seconds) {
  return api(`/api/session/${sessionId}/observers`, { method: 'POST', body: { seconds } });
}

export function listVerbs() {
  return api('/api/pve/verbs');
}

export function runVerb(verb, sessionId, idempotencyKey, vm) {
  const body = {};
  if (sessionId) body.session_id = sessionId;
  if (idempotencyKey) body.idempotency_key = idempotencyKey;
  const path = vm ? `/api/vms/${encodeURIComponent(vm)}/pve/${verb}` : `/api/pve/${verb}`;
  return withStepUp(path, body, [502, 202]);
}

export function listSessions(q = '', before = null) {
  return api(`/api/sessions?limit=50${q ? `&q=${encodeURIComponent(q)}` : ''}${before ? `&before=${before}` : ''}`);
}

export function pageEvents(sessionId, after = 0, limit = 1000) {
  return api(`/api/session/${sessionId}/events?after=${after}&limit=${limit}`);
}

export function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

// --- the locally remembered sessions (the history list's fallback) ---------

export function localHistory() {
  try {
    const list = JSON.parse(storage()?.getItem(HISTORY_KEY) || '[]');
    return Array.isArray(list) ? list.filter((x) => x && typeof x.session_id === 'string') : [];
  } catch {
    return [];
  }
}

export function remember(sessionId, title) {
  const s = storage();
  if (!s || !sessionId) return;
  const list = localHistory().filter((x) => x.session_id !== sessionId);
  const old = localHistory().find((x) => x.session_id === sessionId);
  list.unshift({ session_id: sessionId, title: title || old?.title || '', at: new Date().toISOString() });
  s.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, 20)));
}

export function getSessionId() {
  return storage()?.getItem(SESSION_KEY) || '';
}

export function setSessionId(id) {
  const s = storage();
  if (!s) return;
  if (id) s.setItem(SESSION_KEY, id);
  else s.removeItem(SESSION_KEY);
}

/**
 * The VM's state, off the record: `status` run WITHOUT a session, so a look
 * at the VM never adds a card to the transcript. The executor's own answer is
 * the signal for "is Proxmox configured": exit 78 (EX_CONFIG) means it is not.
 * Resolves `{state: 'up'|'down'|'unknown'|'unconfigured', detail, at}`.
 */
export async function probeVm(vm) {
  const at = new Date().toISOString();
  try {
    const { status, body } = await runVerb('status', '', undefined, vm);
    const out = `${body?.stdout || ''}`;
    if (status === 200) {
      const state = /\brunning\b/i.test(out) ? 'up' : /\b(stopped|paused|prelaunch)\b/i.test(out) ? 'down' : 'unknown';
      return { state, detail: out.split('\n').find((l) => l.trim()) || '', at };
    }
    if (body?.exit_code === 78) return { state: 'unconfigured', detail: body.stderr || 'pve-executor is not configured', at };
    return { state: 'unknown', detail: (body?.stderr || body?.stdout || `status failed (exit ${body?.exit_code})`).trim(), at };
  } catch (e) {
    return { state: 'unknown', detail: e instanceof ApiError ? e.detail : 'no connection to the gateway', at };
  }
}

/** A session's export as a Blob (`md` or `jsonl`). */
export async function exportBlob(sessionId, format) {
  const res = await request(`/api/session/${sessionId}/export?format=${format}`);
  if (!res.ok) throw new ApiError(res.status, detailOf(parsed(await res.text()), res.status), null);
  return res.blob();
}

// Web Push (gateway.push): the gateway's VAPID key, and this browser's subscription.
export const pushKey = () => api('/api/push/key');
export const savePushSubscription = (subscription) => api('/api/push/subscription', { method: 'POST', body: subscription });
export const dropPushSubscription = (endpoint) => api('/api/push/subscription', { method: 'DELETE', body: { endpoint }, accept: [404] });
