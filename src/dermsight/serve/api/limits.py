"""Request-size guard, as pure ASGI middleware (it runs before any body is parsed).

A request whose ``Content-Length`` is over the limit is answered 413 without reading its body.
A request without one (chunked) is counted while it streams and cut off at the limit, so a
1 GB upload never reaches memory or the temporary-file spool. Requests to the prediction
endpoints that are not ``multipart/form-data`` are answered 415 at once.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dermsight.serve.api.errors import ApiError


class _BodyTooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int, multipart_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.multipart_prefixes = multipart_prefixes

    def _too_large(self) -> ApiError:
        return ApiError(413, "payload_too_large",
                        f"request body is over the limit of {self.limit} bytes", "file")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if scope["method"] == "POST" and path.startswith(self.multipart_prefixes):
            ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if ctype != "multipart/form-data":
                await self._send_error(scope, receive, send, ApiError(
                    415, "unsupported_media_type",
                    f"the request must be multipart/form-data with an image in 'file', "
                    f"got content type {ctype or 'none'!r}", None))
                return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._send_error(scope, receive, send, ApiError(
                    400, "bad_request", "invalid Content-Length header", None))
                return
            if declared > self.limit:
                await self._send_error(scope, receive, send, self._too_large())
                return

        received = 0
        started = False
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The body parser may turn our exception into its own 400: answer 413 instead.
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._send_error(scope, receive, send, self._too_large())
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await self._send_error(scope, receive, send, self._too_large())

    async def _send_error(self, scope: Scope, receive: Receive, send: Send,
                          err: ApiError) -> None:
        response = err.response()
        # Close the connection: the unread body must not be parsed as the next request.
        response.headers["connection"] = "close"
        await response(scope, receive, send)
