// breakglass service worker: caches the app shell, never the API or the stream.
// Written into the build by vite.config.js (precache list and version).
const VERSION = '08252591b104bb2d';
const CACHE = `breakglass-shell-${VERSION}`;
const PRECACHE = [
  "./",
  "./assets/index-DnQb-dSS.css",
  "./assets/index-j11ln5AH.js",
  "./assets/markdown-D7sLQq7q.js",
  "./icons/apple-touch-icon.png",
  "./icons/favicon.svg",
  "./icons/icon-192.png",
  "./icons/icon-512.png",
  "./icons/maskable-512.png",
  "./manifest.webmanifest"
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('breakglass-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function bypass(request, url) {
  if (request.method !== 'GET' || url.origin !== self.location.origin) return true;
  if (url.pathname.startsWith('/api/') || url.pathname === '/api') return true;
  if (url.pathname === '/health' || url.pathname === '/ready') return true;
  return (request.headers.get('accept') || '').includes('text/event-stream');
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (bypass(request, url)) return; // straight to the network, never cached
  if (request.mode === 'navigate') {
    // Network first so a new deploy shows at once; the cached shell offline.
    event.respondWith(fetch(request).catch(() => caches.match('./', { ignoreSearch: true })));
    return;
  }
  event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
});

// Web Push (gateway.push): a push carries a title, the session, the verb and
// an id, never the transcript. An approval's push also carries a single-use
// grant: Approve/Deny on the notification posts it, and the gateway decides
// that one request, once, as the operator the push was sent to. Without a
// grant (step-up configured) the only action opens the page to decide there.
// Tags match the page's own notifications (lib/notify.js), so one replaces
// the other instead of showing twice.
const PUSH_BODIES = {
  approval: (d) => `The agent asks to run ${d.verb || 'a verb'}.`,
  turn_end: () => 'Open the session to read it.',
  silent: () => 'A turn has shown no output for a while.',
  lost: () => 'The runner of a turn stopped answering.',
  verb: (d) => `exit ${d.exit_code ?? '?'}`,
};

function pushNotification(d) {
  const kind = String(d.kind || '');
  const tag = kind === 'approval' ? `approval:${d.id || ''}` : `turn:${d.id || ''}`;
  const options = {
    body: (PUSH_BODIES[kind] || (() => ''))(d), tag, data: d, renotify: true, icon: '/icons/icon-192.png',
    requireInteraction: kind === 'approval' || kind === 'lost',
  };
  if (kind === 'approval') {
    options.actions = d.grant
      ? [{ action: 'approve', title: `Approve ${d.verb || ''}`.trim() }, { action: 'deny', title: 'Deny' }]
      : [{ action: 'open', title: 'Open to decide' }];
  }
  return { title: String(d.title || 'breakglass'), options };
}

self.addEventListener('push', (event) => {
  let d = {};
  try {
    d = event.data ? event.data.json() : {};
  } catch {
    d = {};
  }
  const n = pushNotification(d);
  event.waitUntil(self.registration.showNotification(n.title, n.options));
});

// The decision a notification action posts: the grant is the credential
// (a service worker holds no bearer token). Answers in a notification of
// its own, same tag: "approved", "already decided by X", or why not.
async function decide(data, approve) {
  let status = 0;
  let detail = '';
  try {
    const r = await fetch('/api/push/decision', {
      method: 'POST', credentials: 'omit',
      headers: { 'Content-Type': 'application/json', 'X-Breakglass-Push-Grant': data.grant },
      body: JSON.stringify({ approve }),
    });
    status = r.status;
    const body = await r.json().catch(() => ({}));
    detail = typeof body.detail === 'string' ? body.detail : '';
  } catch {
    detail = 'the gateway could not be reached';
  }
  const verb = data.verb || 'verb';
  const title = status === 200 ? `breakglass: ${verb} ${approve ? 'approved' : 'denied'}` : `breakglass: ${verb} not decided`;
  await self.registration.showNotification(title, {
    body: status === 200 ? 'Recorded as your decision.' : detail || `HTTP ${status}`,
    tag: `approval:${data.id || ''}`, data: { session_id: data.session_id || '', kind: 'decided', status },
    icon: '/icons/icon-192.png',
  });
  return { status, detail };
}

// A tap on a notification (lib/notify.js, or a push) brings the app forward:
// focus an open window of it (telling it which session the notice was
// about), else open one on that session.
function openApp(data) {
  return self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((windows) => {
    const own = windows.filter((w) => new URL(w.url).origin === self.location.origin);
    const target = own.find((w) => w.focused) || own[0];
    if (target) {
      target.postMessage({ type: 'breakglass-notification', session_id: data.session_id || '' });
      return target.focus();
    }
    return self.clients.openWindow(data.session_id ? `./s/${data.session_id}` : './');
  });
}

async function onNotificationAction(notification, action) {
  notification.close();
  const data = notification.data || {};
  if ((action === 'approve' || action === 'deny') && data.grant) return decide(data, action === 'approve');
  await openApp(data);
  return null;
}
self.onNotificationAction = onNotificationAction; // the browser tests call it with a shown notification

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(onNotificationAction(event.notification, event.action));
});
