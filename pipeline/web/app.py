"""The FastAPI application: ``create_app(settings)``.

Start-up (the lifespan) migrates the workspace database to the newest schema, loads or creates the cookie key,
and starts loading the screening model in a background thread: the server answers at once (``/healthz`` says
503 "starting" for the few seconds the model takes, then 200), and a self-test posted meanwhile waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import __version__
from pipeline.config import Settings
from pipeline.web.common import AppState, log, make_templates, secret_key_path
from pipeline.web.db import database_url, open_database, session_factory
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
SECURITY_HEADERS = {
    "content-security-policy": DEFAULT_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
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
            # Refused through the app, not answered here, so the answer is the site's 413 page with these headers.
            too_large = declared is not None and declared > MAX_FORM_BYTES
            receive = _refused if too_large else _capped(receive, MAX_FORM_BYTES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(
                    (k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present
                )
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


class _BodyTooLarge(Exception):
    pass


async def _refused() -> Message:
    """A ``receive`` for a body declared over the limit: fails before a byte of it is read."""
    raise _BodyTooLarge


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
        engine = open_database(database_url(settings))
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
    # Browsers get pages, not FastAPI's JSON: every HTTP error (Starlette's base class, so the router's 404/405
    # too), invalid path or form values, oversized forms, and anything unexpected (500).
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(_BodyTooLarge, _body_too_large)
    app.add_exception_handler(Exception, _server_error)
    app.add_middleware(SecurityHeaders)
    return app


ERROR_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    422: "Not accepted",
    500: "Something went wrong",
}
#: What a browser is told when an error carries no message of our own. The framework's own details (a multipart
#: parser's complaint, a validator's dump of the input) are never shown: they say nothing useful to a provider or
#: an assessor, and may quote what was sent.
ERROR_MESSAGES = {
    400: "The request could not be read. Go back, reload the page and try again.",
    403: "You are not allowed to do this.",
    404: "There is no page at this address. Check the address, or start again from one of the links below.",
    405: "This address does not take that kind of request: use the links and forms on this site's pages.",
    413: "What was sent is too large.",
    422: "What was sent could not be accepted.",
    500: "Something went wrong on our side. Please try again; if it happens again, tell whoever runs this service.",
}
#: Routes answering JSON (for monitoring): their errors stay FastAPI's JSON. Every other route is a page.
JSON_ROUTES = ("/healthz",)
CSRF_MESSAGE = "This form has expired or did not come from this site. Go back, reload the page and try again."


def _wants_json(request: Request) -> bool:
    return request.url.path in JSON_ROUTES


def error_page(request: Request, status: int, message: str = "", headers: Mapping[str, str] | None = None) -> Response:
    """The app's error page (base layout, status kept): what was wrong and a link back; never a stack trace.

    No session cookie is set (the public pages set none), and ``message`` is escaped like every other text.
    """
    title = ERROR_TITLES.get(status, "Error")
    message = message or ERROR_MESSAGES.get(status, "Something went wrong.")
    in_workspace = request.url.path.startswith("/review")
    state = getattr(request.app.state, "qpm", None)
    if state is None:  # before start-up finished: no templates yet, plain words still
        return PlainTextResponse(f"{title}: {message}", status_code=status, headers=headers)
    html = state.templates.get_template("error.html").render(
        title=title,
        message=message,
        status=status,
        back_url="/review" if in_workspace else "/",
        back_label="Back to the submissions" if in_workspace else "Back to the self-test page",
        csrf_token="",
        request_path=request.url.path,
    )
    return HTMLResponse(html, status_code=status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Redirects pass through; other errors get the error page (JSON on :data:`JSON_ROUTES`).

    Registered for Starlette's ``HTTPException``, the base class, so the router's own 404 and 405 and the form
    parser's 400 get the page too (FastAPI's subclass alone covers only what our routes raise).
    """
    if 300 <= exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    if _wants_json(request):
        return await http_exception_handler(request, exc)
    # Only our own routes' messages are shown: they raise FastAPI's HTTPException with a sentence for the user.
    # A bare HTTPException(404) carries the status phrase ("Not Found"), which the plain-words default replaces.
    ours = isinstance(exc, HTTPException) and isinstance(exc.detail, str)
    detail = exc.detail if ours and exc.detail != HTTPStatus(exc.status_code).phrase else ""
    if detail == "csrf":
        detail = CSRF_MESSAGE
    return error_page(request, exc.status_code, detail, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A path or form value of the wrong kind (``/review/submissions/abc``): 422 with the error page, saying which
    value and why, but never echoing the value itself."""
    if _wants_json(request):
        return await request_validation_exception_handler(request, exc)
    return error_page(request, 422, validation_message(exc.errors()))


def validation_message(errors: Sequence[Any]) -> str:
    """Plain words for FastAPI's validation errors: where (address or form), which field, what was expected."""
    where_names = {"path": "address", "query": "address", "body": "form", "header": "request", "cookie": "request"}
    parts: list[str] = []
    where = "request"
    for error in list(errors)[:3]:
        loc = [str(p) for p in error.get("loc", ())] if isinstance(error, dict) else []
        where = where_names.get(loc[0], "request") if loc else where
        field = loc[-1].replace("_", " ") if len(loc) > 1 else ""
        what = str(error.get("msg", "not valid")) if isinstance(error, dict) else "not valid"
        what = what[:1].lower() + what[1:]
        part = f"{field}: {what}" if field else what
        if part not in parts:
            parts.append(part)
    return f"This {where} is not valid ({'; '.join(parts) or 'a value is missing or of the wrong kind'})."


async def _body_too_large(request: Request, exc: Exception) -> Response:
    return error_page(request, 413, "What was sent is too large for this form.")


async def _server_error(request: Request, exc: Exception) -> Response:
    """Any unexpected exception: a plain 500 page, nothing of the exception in it. Starlette re-raises the
    exception after this response is sent, so the server's log still has the traceback."""
    # Starlette sends this response from its outermost middleware, outside SecurityHeaders: the headers are set
    # here.
    if _wants_json(request):
        return JSONResponse({"detail": "internal error"}, status_code=500, headers=SECURITY_HEADERS)
    try:
        return error_page(request, 500, headers=SECURITY_HEADERS)
    except Exception:  # the error page itself failed (a broken template): still nothing internal
        return PlainTextResponse(ERROR_MESSAGES[500], status_code=500, headers=SECURITY_HEADERS)


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
