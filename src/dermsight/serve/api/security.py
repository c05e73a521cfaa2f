"""Security headers on every response (pure ASGI middleware).

Every response gets ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
``X-Frame-Options: DENY`` and a ``Content-Security-Policy`` (unless the route set its own):
:data:`APP_CSP` everywhere (the web app, the tracking timeline page, ``/static``, JSON), and
:data:`DOCS_CSP` on the API docs pages. Both allow nothing but this origin: no CDN, no inline
script, and no framing (``frame-ancestors 'none'``, the CSP form of ``X-Frame-Options``).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The web app and the tracking pages: scripts, styles and connections from this origin only.
APP_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
           "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
           "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

#: /docs and /redoc: the same, except that Swagger UI and ReDoc style their elements inline and
#: ReDoc runs its search in a worker built from a blob. Scripts still come from this origin only.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; worker-src 'self' blob:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeadersMiddleware:
    """Add :data:`HEADERS` and a CSP (``DOCS_CSP`` on ``docs_paths``, else ``APP_CSP``)."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope.get("path", "") in self.docs_paths else APP_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = csp
            await send(message)

        await self.app(scope, receive, send_with_headers)
