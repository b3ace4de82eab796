"""The gateway serves the PWA: caching headers, SPA fallback that never
shadows the API, the manifest, and a service worker that caches the shell
(and works offline) but never the API or the stream."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from gateway import pwa
from tests.pwa.conftest import shot


@pytest.fixture
def static_client() -> TestClient:
    app = FastAPI()

    @app.get("/api/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    pwa.install(app)
    return TestClient(app)


def test_caching_headers(static_client):
    index = static_client.get("/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert index.headers["cache-control"] == "no-cache"
    assert "frame-ancestors 'none'" in index.headers["content-security-policy"]
    sw = static_client.get("/sw.js")
    assert sw.status_code == 200 and sw.headers["cache-control"] == "no-cache"
    assert "javascript" in sw.headers["content-type"]
    asset = next(line.split('"')[1] for line in index.text.split() if "/assets/" in line and line.startswith("src="))
    hashed = static_client.get(asset)
    assert hashed.status_code == 200 and "immutable" in hashed.headers["cache-control"]
    manifest = static_client.get("/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    assert manifest.headers["cache-control"] == "no-cache"


def test_spa_fallback_never_shadows_the_api(static_client):
    assert static_client.get("/api/ping").json() == {"pong": "yes"}
    assert static_client.get("/health").json() == {"status": "ok"}
    for path in ("/api/nope", "/api", "/ready", "/health/x", "/api/session/x/stream"):
        answer = static_client.get(path)
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/json", path
    assert static_client.post("/api/nope").status_code == 404
    page = static_client.get("/replay/anything")
    assert page.status_code == 200 and "<div id=\"app\">" in page.text
    assert static_client.get("/assets/gone-1234.js").status_code == 404  # never HTML for a missing asset
    assert static_client.post("/").status_code == 405


def test_no_path_escapes_the_static_directory(static_client, tmp_path):
    root = tmp_path / "static"
    root.mkdir()
    (root / "index.html").write_text("<div id=app></div>")
    (tmp_path / "secret.txt").write_text("secret")
    app = FastAPI()
    pwa.install(app, root)
    client = TestClient(app)
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"):
        assert "secret" not in client.get(path).text, path


def test_manifest_is_installable():
    manifest = json.loads((pwa.STATIC_DIR / "manifest.webmanifest").read_text())
    assert manifest["display"] == "standalone" and manifest["start_url"] == "/"
    sizes = {i["sizes"] for i in manifest["icons"] if i["type"] == "image/png"}
    assert {"192x192", "512x512"} <= sizes
    assert any(i.get("purpose") == "maskable" for i in manifest["icons"])
    for icon in manifest["icons"]:
        assert (pwa.STATIC_DIR / icon["src"].lstrip("/")).is_file()


def test_the_service_worker_caches_the_shell_not_the_api_and_works_offline(stack, context_factory):
    ctx = context_factory(service_workers="allow")
    page = ctx.new_page()
    page.goto("/")
    expect(page.locator("[data-state=live]")).to_be_visible()
    page.wait_for_function("async () => !!(await navigator.serviceWorker.ready).active")
    head = page.evaluate(
        """() => ({
            theme: document.querySelector('meta[name=theme-color]').content,
            apple: !!document.querySelector('meta[name=apple-mobile-web-app-capable]'),
            touch: !!document.querySelector('link[rel=apple-touch-icon]'),
            viewport: document.querySelector('meta[name=viewport]').content,
            height: getComputedStyle(document.querySelector('.app')).height,
        })"""
    )
    assert head["theme"] == "#0b0f14" and head["apple"] and head["touch"]
    assert "viewport-fit=cover" in head["viewport"]
    assert head["height"] == "844px"  # 100dvh
    cached = page.evaluate(
        """async () => { const out = [];
            for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
            return out; }"""
    )
    assert "/" in cached and any(p.startswith("/assets/") for p in cached) and "/manifest.webmanifest" in cached
    assert not any(p.startswith("/api") for p in cached), cached
    # offline: the shell still opens from the cache, and says it is offline
    ctx.set_offline(True)
    page.reload()
    expect(page.get_by_label("Message to the agent")).to_be_visible(timeout=15_000)
    expect(page.locator("[data-state=offline]")).to_be_visible(timeout=15_000)
    shot(page, "16-offline-shell")
    ctx.set_offline(False)
    cached_after = page.evaluate(
        """async () => { const out = [];
            for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
            return out; }"""
    )
    assert not any(p.startswith("/api") for p in cached_after), cached_after
    assert httpx.get(f"{stack.base}/sw.js").headers["cache-control"] == "no-cache"
