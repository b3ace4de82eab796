// The addresses the console answers to, parsed (pure, unit-tested):
//
//   /s/<session id>                   the live session (kept in the address for reloads)
//   #/replay/<session id>             a read-only replay of a stored session
//   #/session/<session id>            a notification's link: that session becomes the live one
//   #observe/<session id>/<secret>    a colleague's observer link (read-only, that session only)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PATH = /^\/s\/([0-9a-f-]{36})\/?$/;
const REPLAY = /^#\/replay\/([0-9a-f-]{36})$/;
const LINKED = /^#\/session\/([0-9a-f-]{36})$/;
const OBSERVE = /^#observe\/([0-9a-f-]{36})\/([A-Za-z0-9_-]{20,100})$/;

export const sessionPath = (id) => `/s/${id}`;

/** The session of a `/s/<id>` path, or ''. */
export function pathSession(pathname) {
  const id = PATH.exec(pathname)?.[1];
  return id && UUID.test(id) ? id : '';
}

/** The session a `#/replay/<id>` hash shows, or ''. */
export const replayedSession = (hash) => REPLAY.exec(hash)?.[1] || '';

/** The session a notification's `#/session/<id>` link continues, or ''. */
export const linkedSession = (hash) => LINKED.exec(hash)?.[1] || '';

/** An observer link's `{sessionId, secret}`, or null. */
export function observerLink(hash) {
  const m = OBSERVE.exec(hash);
  return m ? { sessionId: m[1], secret: m[2] } : null;
}
