"""Serve the PWA (the committed build in `static/`) at `/`.

- `index.html`, `sw.js` and the manifest: `no-cache` (always revalidated), so
  a new deploy is picked up at once and the service worker can update itself.
- `/assets/*` (content-hashed by Vite): `immutable`, cached for a year.
- Other files (icons): cached for a day.
- SPA fallback: an unknown GET path that is not a file answers `index.html`,
  but never for `/api`, `/health` or `/ready`: those answer a JSON 404 so a
  client never mistakes HTML for the API.

Call `install(app)` after every router: the mount at `/` only sees requests
no route matched.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Paths the SPA fallback must never shadow.
RESERVED_PREFIXES = ("/api/", "/health/", "/ready/")
RESERVED_PATHS = frozenset({"/api", "/health", "/ready"})

NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=86400"

TYPES = {
    ".webmanifest": "application/manifest+json",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'; object-src 'none'"
    ),
}


def cache_control(relative: str) -> str:
    if relative.startswith("assets/"):
        return IMMUTABLE
    if relative in ("index.html", "sw.js", "manifest.webmanifest") or relative.endswith(".html"):
        return NO_CACHE
    return SHORT


def is_reserved(path: str) -> bool:
    return path in RESERVED_PATHS or path.startswith(RESERVED_PREFIXES)


class PWA:
    """A small ASGI app: files from `root`, `index.html` for client routes."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root.resolve()

    def _file(self, path: str) -> Path | None:
        relative = path.lstrip("/")
        if not relative:
            return None
        candidate = (self.root / relative).resolve()
        # No escaping the directory (`..`, symlinks out of it).
        if candidate != self.root and self.root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None

    def _respond(self, file: Path) -> Response:
        relative = file.relative_to(self.root).as_posix()
        media_type = TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        headers = {"Cache-Control": cache_control(relative), **SECURITY_HEADERS}
        if relative == "sw.js":
            headers["Service-Worker-Allowed"] = "/"
        return FileResponse(file, media_type=media_type, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if is_reserved(path):
            response: Response = JSONResponse({"detail": "Not Found"}, status_code=404)
        elif scope["method"] not in ("GET", "HEAD"):
            response = JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": "GET, HEAD"})
        else:
            file = self._file(path)
            index = self.root / "index.html"
            if file is not None:
                response = self._respond(file)
            elif "." in path.rsplit("/", 1)[-1]:
                # A missing file (e.g. an old hashed asset): a real 404, not HTML.
                response = PlainTextResponse("not found", status_code=404, headers={"Cache-Control": NO_CACHE})
            elif index.is_file():
                response = self._respond(index)
            else:
                response = PlainTextResponse(
                    "the PWA is not built: run `npm ci && npm run build` in frontend/", status_code=503
                )
        await response(scope, receive, send)


def install(app: FastAPI, root: Path = STATIC_DIR) -> None:
    """Mount the PWA at `/`. Call it last, after every router."""
    app.mount("/", PWA(root), name="pwa")
