"""Response headers that make the browser refuse what our pages never do.

The pages carry no inline script or style and load everything from their own origin, so the
Content-Security-Policy can forbid everything else: an attacker's text that slipped past
escaping still cannot run. The headers are added on `on_response_prepare`, not in a
middleware, so that static files, redirects and error pages get them too.
"""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        # Video clips in the console's pages (<video>): only our own files.
        "media-src 'self'",
        # Scripts, their requests, the service worker and the web app manifest: only our own files.
        "script-src 'self'",
        "connect-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Pages show live state and, on the console, private data: never keep them in a cache.
# Static files set their own validators (ETag/Last-Modified) and are left alone.
DEFAULT_CACHE_CONTROL = "no-store"


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not isinstance(response, web.FileResponse):
        response.headers.setdefault("Cache-Control", DEFAULT_CACHE_CONTROL)


def install_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(_add_headers)
