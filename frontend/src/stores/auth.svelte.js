// Who this page acts as: the operator (token or the edge proxy's cookie), a
// colleague holding an observer link (read-only, one session), or nobody yet
// (the login screen).

import { getToken, login, onUnauthorized, setObserver, setToken, whoAmI, ApiError } from '../lib/api.js';
import { observerLink } from '../lib/routes.js';
import { say } from './notice.svelte.js';

export const auth = $state({
  status: 'checking', // checking | ok | login
  observing: '', // the session an observer link opens ('' for the operator)
});

/** An observer link in the address (`#observe/<session>/<secret>`): its session id, or ''. */
export function observeFromLink(hash) {
  const link = observerLink(hash);
  if (!link) return '';
  setObserver(link.secret);
  auth.observing = link.sessionId;
  auth.status = 'ok';
  return link.sessionId;
}

/**
 * Is the operator signed in? Any answer but 401 counts (a gateway that is
 * down still shows the console: the stream says it is offline). With a
 * token, the login route also sets the cookie EventSource needs.
 */
export async function checkIdentity() {
  try {
    await whoAmI();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      auth.status = 'login';
      return false;
    }
  }
  if (getToken()) login().catch(() => {});
  auth.status = 'ok';
  return true;
}

/** A 401 anywhere: the operator signs in again; an observer's link has lapsed. */
export function refused() {
  if (auth.observing) say('This observer link has expired or was revoked.', 'bad');
  else auth.status = 'login';
}

/** Every call that answers 401 (lib/api.js) ends here; returns the unsubscribe. */
export const watchRefusals = () => onUnauthorized(refused);

export function signOut() {
  setToken('');
  auth.status = 'login';
}
