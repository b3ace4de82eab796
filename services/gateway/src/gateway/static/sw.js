// breakglass service worker: caches the app shell, never the API or the stream.
// Written into the build by vite.config.js (precache list and version).
const VERSION = 'e136837d8ce92d92';
const CACHE = `breakglass-shell-${VERSION}`;
const PRECACHE = [
  "./",
  "./assets/index-BgyDuZ2b.css",
  "./assets/index-WtzF06zv.js",
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

// A tap on a notification (lib/notify.js) brings the app forward: focus an
// open window of it (telling it which session the notice was about), else
// open one.
self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  event.waitUntil(
    self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((windows) => {
      const own = windows.filter((w) => new URL(w.url).origin === self.location.origin);
      const target = own.find((w) => w.focused) || own[0];
      if (target) {
        target.postMessage({ type: 'breakglass-notification', session_id: data.session_id || '' });
        return target.focus();
      }
      return self.clients.openWindow('./');
    }),
  );
});
