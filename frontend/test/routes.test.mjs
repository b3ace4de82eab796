// The console's addresses (src/lib/routes.js): what each one opens, and that
// anything else opens nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkedSession, observerLink, pathSession, replayedSession, sessionPath } from '../src/lib/routes.js';

const ID = '0f8fad5b-d9cb-469f-a165-70867728950e';

test('a /s/<id> path names the live session; a trailing slash is fine, a malformed id is not', () => {
  assert.equal(pathSession(sessionPath(ID)), ID);
  assert.equal(pathSession(`/s/${ID}/`), ID);
  assert.equal(pathSession('/s/------------------------------------'), ''); // 36 characters, not a UUID
  assert.equal(pathSession(`/x/${ID}`), '');
  assert.equal(pathSession('/'), '');
});

test('a replay hash and a notification link each name their session, and only theirs', () => {
  assert.equal(replayedSession(`#/replay/${ID}`), ID);
  assert.equal(replayedSession(`#/session/${ID}`), '');
  assert.equal(linkedSession(`#/session/${ID}`), ID);
  assert.equal(linkedSession(`#/replay/${ID}`), '');
  assert.equal(linkedSession(`#/session/${ID}/more`), '');
});

test('an observer link carries its session and secret; a short secret is not one', () => {
  const secret = 'abcDEF0123456789_-xyzw';
  assert.deepEqual(observerLink(`#observe/${ID}/${secret}`), { sessionId: ID, secret });
  assert.equal(observerLink(`#observe/${ID}/short`), null);
  assert.equal(observerLink(`#observe/${ID}/${secret}!`), null);
  assert.equal(observerLink(''), null);
});
