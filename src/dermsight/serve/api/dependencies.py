"""Shared state of one API process and the dependencies routers use to reach it.

Inference runs in worker threads (never on the event loop) through an ``anyio.CapacityLimiter``
of ``settings.max_concurrency`` tokens; at most ``settings.max_pending`` requests may wait for a
token, more get 503 "busy" with ``Retry-After``. Work that decodes images says how many pixels
it holds at most (``run(fn, pixels=n)``); it takes them from the process's
:class:`~dermsight.serve.api.limits.PixelBudget` once it has a token, and gets 503 "busy" with
``Retry-After`` when they are not free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request

from dermsight.serve.api.errors import ApiError
from dermsight.serve.api.limits import PixelBudget
from dermsight.serve.api.settings import ServeSettings

if TYPE_CHECKING:
    from dermsight.serve.engine import Engine

T = TypeVar("T")


@dataclass
class ServeState:
    settings: ServeSettings
    engine: Engine | None = None
    load_error: str | None = None
    limiter: anyio.CapacityLimiter | None = None
    pending: int = 0
    budget: PixelBudget | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = PixelBudget(self.settings.pixels_in_flight)

    @property
    def ready(self) -> bool:
        return self.engine is not None

    async def run(self, fn: Callable[..., T], *args: Any, pixels: int = 0) -> T:
        """Run ``fn(*args)`` in the inference pool, bounded by the concurrency settings, holding
        ``pixels`` of the pixel budget while it runs (the most it decodes at once)."""
        if self.limiter is None:  # created lazily: it must belong to the running event loop
            self.limiter = anyio.CapacityLimiter(self.settings.max_concurrency)
        with self._lock:
            if self.pending >= self.settings.max_pending + self.settings.max_concurrency:
                raise ApiError(503, "busy", "the server is busy, retry shortly", None,
                               headers={"Retry-After": "1"})
            self.pending += 1
        budget = self.budget

        def held() -> T:
            with budget.hold(pixels):
                return fn(*args)

        try:
            return await anyio.to_thread.run_sync(held, limiter=self.limiter)
        finally:
            with self._lock:
                self.pending -= 1


def get_state(request: Request) -> ServeState:
    return request.app.state.dermsight


def get_engine(request: Request) -> Engine:
    state = get_state(request)
    if state.engine is None:
        message = "the model is still loading" if state.load_error is None else (
            f"the model failed to load: {state.load_error}")
        raise ApiError(503, "not_ready", message, None, headers={"Retry-After": "2"})
    return state.engine


#: Route parameter types: ``state: State``, ``engine: LoadedEngine``.
State = Annotated[ServeState, Depends(get_state)]
LoadedEngine = Annotated[Any, Depends(get_engine)]
