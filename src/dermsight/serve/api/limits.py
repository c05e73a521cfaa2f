"""Request-size limits per route, and the process-wide budget of decoded pixels.

:class:`BodyLimitMiddleware` is pure ASGI middleware: it runs before any body is parsed. Each
route has its own limit (:class:`BodyLimit`): the image routes take one image (or a batch) and
a few form fields, every other route a JSON body of at most ``max_json_kb``. A request whose
``Content-Length`` is over its route's limit is answered 413 without reading its body; a request
without one (chunked) is counted while it streams and cut off at the limit, so a 1 GB upload
never reaches memory or the temporary-file spool. Requests to the image routes that are not
``multipart/form-data`` are answered 415 at once.

:class:`PixelBudget` bounds the decoded pixels held at once by every request of the process
(predictions, batches, tracking uploads): a decoded image costs about 11 bytes a pixel while it
is being decoded, whatever its file size, so this, not the upload size, bounds the memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dermsight.errors import ApiError
from dermsight.serve.api.errors import api_response

#: Seconds a client is told to wait when the pixel budget is spent.
RETRY_AFTER_S = 2


class _BodyTooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


@dataclass(frozen=True)
class BodyLimit:
    """The body limit of one route: ``path`` is a route template (``/v1/x/{id}/photos``)."""

    method: str
    path: str
    limit: int
    multipart: bool = False
    field: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and bool(_template_regex(self.path).match(path))


@lru_cache(maxsize=64)
def _template_regex(template: str) -> re.Pattern:
    """``/v1/x/{id}/photos`` → a regex matching ``/v1/x/<one path segment>/photos``."""
    regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
    return re.compile(f"^{regex}/?$")


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n < 1024 * 1024 else f"{n / (1024 * 1024):.1f} MiB"


class BodyLimitMiddleware:
    """Answer 413 for a body over its route's limit (``default`` for routes not in ``limits``),
    415 for a non-multipart request to a multipart route; see the module docstring."""

    def __init__(self, app: ASGIApp, limits: Sequence[BodyLimit], default: int) -> None:
        self.app = app
        self.limits = tuple(limits)
        self.default = default

    def _rule(self, method: str, path: str) -> BodyLimit | None:
        return next((r for r in self.limits if r.matches(method, path)), None)

    def _too_large(self, rule: BodyLimit | None, limit: int) -> ApiError:
        if rule is None:
            return ApiError(413, "payload_too_large",
                            f"request body is over the limit of {limit} bytes "
                            f"({_size(limit)}) for a request without an image", None)
        return ApiError(413, "payload_too_large",
                        f"request body is over the limit of {limit} bytes ({_size(limit)}) "
                        f"of {rule.method} {rule.path}", rule.field)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        rule = self._rule(scope["method"], path)
        limit = rule.limit if rule is not None else self.default
        if rule is not None and rule.multipart:
            ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if ctype != "multipart/form-data":
                await self._send_error(scope, receive, send, ApiError(
                    415, "unsupported_media_type",
                    f"the request must be multipart/form-data with an image in "
                    f"'{rule.field}', got content type {ctype or 'none'!r}", None))
                return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._send_error(scope, receive, send, ApiError(
                    400, "bad_request", "invalid Content-Length header", None))
                return
            if declared > limit:
                await self._send_error(scope, receive, send, self._too_large(rule, limit))
                return

        received = 0
        started = False
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The body parser may turn our exception into its own 400: answer 413 instead.
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._send_error(scope, receive, send, self._too_large(rule, limit))
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await self._send_error(scope, receive, send, self._too_large(rule, limit))

    async def _send_error(self, scope: Scope, receive: Receive, send: Send,
                          err: ApiError) -> None:
        response = api_response(err)
        # Close the connection: the unread body must not be parsed as the next request.
        response.headers["connection"] = "close"
        await response(scope, receive, send)


# ---- decoded pixels ------------------------------------------------------------------------

def image_pixels(data: bytes, max_pixels: int) -> int:
    """Width × height of the image in ``data``, read from its header (nothing is decoded).

    0 when it is not an image Pillow can open or is over ``max_pixels``: the decoder rejects
    those without decoding them, so they hold no budget.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                pixels = int(im.width) * int(im.height)
    except Exception:  # anything Pillow cannot open: the decoder says why
        return 0
    return pixels if pixels <= max_pixels else 0


def pixel_groups(sizes: Sequence[int], cap: int) -> list[list[int]]:
    """Positions ``0..len(sizes)-1`` in order, in runs whose pixels sum to at most ``cap`` (an
    image larger than ``cap`` is a run of its own): a batch decodes one run at a time."""
    groups: list[list[int]] = []
    total = 0
    for i, n in enumerate(sizes):
        if groups and total + n <= cap:
            groups[-1].append(i)
            total += n
        else:
            groups.append([i])
            total = n
    return groups


def _load_malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_malloc_trim = _load_malloc_trim()

#: A hold at least this large gives the freed memory back to the OS when it ends and no other
#: pixels are held (glibc keeps freed blocks in its per-thread arenas otherwise, so the server
#: would stay at its peak after a burst of large images).
TRIM_PIXELS = 4_000_000


def release_memory() -> None:
    """Return the heap's free memory to the OS (``malloc_trim``; a no-op off glibc)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class PixelBudget:
    """Decoded pixels in flight across the process (thread-safe).

    :meth:`hold` takes pixels for the duration of a block, or raises ApiError 503 "busy" with
    ``Retry-After`` at once when they are not free: a request never waits holding a worker.
    When a large hold ends and nothing else is held, the freed memory goes back to the OS.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = max(0, int(pixels))
        with self._lock:
            if pixels and self.used + pixels > self.total:
                raise ApiError(
                    503, "busy",
                    f"the server is decoding other images ({self.used} of its budget of "
                    f"{self.total} pixels in use; this request needs {pixels}): retry shortly",
                    None, headers={"Retry-After": str(RETRY_AFTER_S)})
            self.used += pixels
        try:
            yield
        finally:
            with self._lock:
                self.used -= pixels
                idle = self.used == 0
            if idle and pixels >= TRIM_PIXELS:
                release_memory()
