"""The FastAPI application: ``create_app(settings)``.

Start-up (the lifespan) migrates the workspace database to the newest schema, loads or creates the cookie key,
and starts loading the screening model in a background thread: the server answers at once (``/healthz`` says
503 "starting" for the few seconds the model takes, then 200), and a self-test posted meanwhile waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import __version__
from pipeline.config import Settings
from pipeline.web.common import AppState, log, make_templates, secret_key_path
from pipeline.web.db import database_url, make_engine, migrate, session_factory
from pipeline.web.security import SessionSigner, load_or_create_secret
from pipeline.web.selftest import SelfTestScreener, build_private_matcher, model_id_for
from pipeline.web.uploads import UploadLimits

#: Routes that stream their own (large) uploads with their own limits; every other request body is small.
STREAMING_UPLOADS = ("/self-test", "/review/upload")
MAX_FORM_BYTES = 256 * 1024

DEFAULT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: Third-party loggers that may quote document content in their warnings: kept quiet in the web app.
QUIET_LOGGERS = ("pdfminer", "pdfplumber", "pypdf", "pypdfium2", "docx", "PIL", "sentence_transformers", "transformers")

ScreenerFactory = Callable[[Settings], SelfTestScreener]


def configure_logging() -> None:
    """File names and contents never reach the logs: our own messages carry counts and timings only, and the
    libraries that read documents log errors only."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    log.setLevel(logging.INFO)


def default_screener(settings: Settings) -> SelfTestScreener:
    """Load the trained matcher (seconds) for self-tests."""
    try:  # a server's console is no place for a weights-loading progress bar
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass
    return SelfTestScreener(settings, build_private_matcher(settings), model_id_for(settings))


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every response, and a size cap on ordinary request bodies.

    Headers: a strict Content-Security-Policy unless the route set its own, no MIME sniffing, no referrer, no
    framing by other sites, and ``no-store`` caching for pages (results must not linger in a browser cache).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if scope.get("method") == "POST" and path not in STREAMING_UPLOADS:
            declared = _content_length(scope)
            if declared is not None and declared > MAX_FORM_BYTES:
                await _too_large(send)
                return
            receive = _capped(receive, MAX_FORM_BYTES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": DEFAULT_CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer",
                    b"x-frame-options": b"DENY",
                    b"cross-origin-opener-policy": b"same-origin",
                    b"cache-control": b"no-store",
                }
                headers.extend((k, v) for k, v in extra.items() if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send) -> None:
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"request body too large"})


class _BodyTooLarge(Exception):
    pass


def _capped(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that fails once more than ``limit`` body bytes have arrived (chunked bodies have no length)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge
        return message

    return wrapped


def create_app(settings: Settings | None = None, *, screener_factory: ScreenerFactory | None = None) -> FastAPI:
    """The web app for ``settings`` (defaults: the environment). ``screener_factory`` replaces the model loading
    (tests); it runs in a background thread at start-up."""
    settings = settings or Settings.from_env()
    configure_logging()
    # Before anything imports Prefect (the model id, assessor uploads): its home under the cache folder and quiet
    # logs, exactly as the CLI's orchestration commands decide them.
    from pipeline.cli_flows import prepare_prefect

    prepare_prefect(settings, verbose=False)
    factory = screener_factory or default_screener

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Decisions and password hashes live here: readable by this account only when we create the folder.
        Path(settings.web_data_dir).expanduser().mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = make_engine(database_url(settings))
        migrate(engine)
        signer = SessionSigner(load_or_create_secret(secret_key_path(settings)), settings.web_session_hours * 3600)
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            signer=signer,
            limits=UploadLimits.from_settings(settings),
            templates=make_templates(),
        )
        app.state.qpm = state

        def load() -> None:
            try:
                state.screener = factory(settings)
            except Exception as exc:  # reported by /healthz and the self-test page; the workspace still works
                state.load_error = f"{type(exc).__name__}: {exc}"
                log.error("the screening model could not be loaded: %s", state.load_error)
            finally:
                state.ready.set()

        threading.Thread(target=load, name="qpm-model-load", daemon=True).start()
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="QPM Pre-screen",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    from pipeline.web import public, review

    app.include_router(public.router)
    app.include_router(review.router)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(_BodyTooLarge, _body_too_large)
    app.add_middleware(SecurityHeaders)
    return app


ERROR_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    422: "Not accepted",
}


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Redirects pass through; other errors get a short page in plain words (never a stack trace)."""
    if 300 <= exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail = exc.detail if isinstance(exc.detail, str) else ""
    if detail == "csrf":
        detail = "This form has expired or did not come from this site. Go back, reload the page and try again."
    state = request.app.state.qpm
    html = state.templates.get_template("error.html").render(
        title=ERROR_TITLES.get(exc.status_code, "Error"),
        message=detail or ERROR_TITLES.get(exc.status_code, "Something went wrong."),
        status=exc.status_code,
        csrf_token="",
        request_path=request.url.path,
    )
    return HTMLResponse(html, status_code=exc.status_code, headers=exc.headers)


async def _body_too_large(request: Request, exc: Exception) -> Response:
    return Response("request body too large", status_code=413, media_type="text/plain")


def run_server(settings: Settings, **uvicorn_options: Any) -> None:
    """Serve the app with uvicorn on ``web_host``:``web_port`` (loopback by default)."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        proxy_headers=False,
        server_header=False,
        **uvicorn_options,
    )
