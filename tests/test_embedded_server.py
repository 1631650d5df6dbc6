"""The embedded Prefect server's app wrapper: a prompt ``Retry-After`` on "database busy" answers."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from pipeline.embedded_server import MAX_DELAY_SECONDS, WINDOW_SECONDS, PromptRetry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answer(status: int, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers or [])})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def call(app: PromptRetry, scope_type: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(app({"type": scope_type}, receive, send))
    return sent


def retry_after(sent: list[dict[str, Any]]) -> str | None:
    values = [v.decode() for k, v in sent[0]["headers"] if k.lower() == b"retry-after"]
    assert len(values) <= 1
    return values[0] if values else None


def test_a_busy_answer_asks_for_a_prompt_retry_that_doubles_while_it_is_refused_again() -> None:
    clock = Clock()
    app = PromptRetry(answer(503), clock=clock)
    delays = []
    for _ in range(7):
        delays.append(float(retry_after(call(app)) or "nan"))
        clock.now += 0.01
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, MAX_DELAY_SECONDS, MAX_DELAY_SECONDS]
    clock.now += WINDOW_SECONDS + 0.01  # a later, separate collision starts again at the short wait
    assert retry_after(call(app)) == "0.1"


def test_other_answers_and_a_retry_after_already_given_are_left_alone() -> None:
    assert retry_after(call(PromptRetry(answer(200)))) is None
    assert retry_after(call(PromptRetry(answer(500)))) is None
    kept = call(PromptRetry(answer(503, [(b"Retry-After", b"7")])))
    assert retry_after(kept) == "7"
    assert kept[1] == {"type": "http.response.body", "body": b"{}"}


def test_non_http_scopes_pass_straight_through() -> None:
    seen: list[str] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await send({"type": "lifespan.startup.complete"})

    sent = call(PromptRetry(app), scope_type="lifespan")
    assert seen == ["lifespan"] and sent == [{"type": "lifespan.startup.complete"}]
