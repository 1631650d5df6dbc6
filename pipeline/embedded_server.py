"""The ASGI app of the embedded Prefect server: Prefect's own, asking for a prompt retry when its database is busy.

The embedded server keeps its history in SQLite. When an API write meets one of the server's own background
writes (its recorder storing the last run's task states), SQLite refuses it at once rather than waiting, and the
API answers 503 without a ``Retry-After``; Prefect's client then waits 2 s before trying again (4 s, 8 s, ...
after that). Measured here: from the third flow run in quick succession on, every run's creation waited those
2 s, and a batch of 20 submissions met two such waits. The write in the way takes milliseconds, so this app
adds ``Retry-After: 0.1`` to a 503, doubling for each further 503 within ``WINDOW_SECONDS`` (the same write
refused again) up to Prefect's own first wait. A lock held longer still gets the server's own 60 s wait for it
on every attempt.

Started by the embedded server's command (``uvicorn --factory``, :mod:`pipeline.prefect_home`); imports nothing
else of the tool.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 2.0  # Prefect's client's own first wait
WINDOW_SECONDS = 1.0  # 503s this close together are one write retried, not separate collisions

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class PromptRetry:
    """Wraps an ASGI app: a 503 answer without ``Retry-After`` gets one (see the module docstring)."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self._recent: deque[float] = deque()

    def delay(self) -> float:
        """Seconds to ask the client to wait for the 503 being sent now."""
        now = self.clock()
        while self._recent and now - self._recent[0] > WINDOW_SECONDS:
            self._recent.popleft()
        self._recent.append(now)
        return min(FIRST_DELAY_SECONDS * 2 ** (len(self._recent) - 1), MAX_DELAY_SECONDS)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _ in headers):
                    headers.append((b"retry-after", f"{self.delay():g}".encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def create_app() -> ASGIApp:
    """Prefect's server app (configured by the environment, as Prefect's own command does), wrapped."""
    from prefect.server.api.server import create_app as prefect_app

    return PromptRetry(prefect_app())
