"""Public routes: the provider self-test (``GET /``, ``POST /self-test``), ``/healthz``, static files, sign-in."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.requests import ClientDisconnect

from pipeline.web.common import (
    AppState,
    check_csrf,
    clear_session,
    current_user,
    log,
    package_dir,
    render,
    safe_next,
    state_of,
    temp_root,
    write_session,
)
from pipeline.web.security import new_csrf_token
from pipeline.web.selftest import SelfTestResult, guidance
from pipeline.web.uploads import SavedFile, UploadRejected, receive_files
from pipeline.web.workspace import audit, authenticate

router = APIRouter()

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
READY_WAIT_SECONDS = 60.0  # a self-test posted while the model is still loading waits this long for it
LOGIN_WINDOW, LOGIN_MAX_FAILURES = 300.0, 5  # then 5 minutes of refusals for that name


def result_csp(map_script_hash: str) -> str:
    """The result page's policy: its own script and the embedded evidence map's (pinned by hash), nothing else.

    The map is embedded with ``srcdoc`` and inherits this policy, so its inline stylesheet and hashed script must
    be allowed here; the map also carries its own, stricter policy, and runs in a sandbox without our origin.
    """
    return (
        "default-src 'none'; "
        f"script-src 'self' {map_script_hash}; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "frame-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


@router.get("/", include_in_schema=False)
async def index(request: Request) -> Response:
    """The self-test page: choose or drop 1-10 draft policies."""
    state = state_of(request)
    return render(request, "index.html", csrf=False, limits=state.limits, ready=state.ready.is_set())


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> Response:
    """200 when the model is loaded and the database answers; 503 while starting (or if loading failed)."""
    state = state_of(request)
    if state.load_error:
        # The exception itself (it may name files and folders of this machine) is in the server's log, not here:
        # this route answers anyone who can reach the server.
        detail = "the screening model could not be loaded: see the server's log"
        return JSONResponse({"status": "error", "detail": detail}, status_code=503)
    if not state.ready.is_set():
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    """The app's own CSS and JavaScript (no CDN: the app works offline)."""
    path = package_dir() / "static" / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        raise HTTPException(status_code=404)
    return Response(
        path.read_bytes(),
        media_type=STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=3600"},
    )


def _cross_site(request: Request) -> bool:
    """True for a form posted from another site (the self-test has no account to protect, but it should not
    be a free CPU for any web page the visitor opens)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() != (request.headers.get("host") or "").lower()


def _error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    state = state_of(request)
    return render(
        request,
        "index.html",
        status_code=status_code,
        csrf=False,
        limits=state.limits,
        ready=state.ready.is_set(),
        error_title=title,
        error=message,
    )


@router.post("/self-test", include_in_schema=False)
async def self_test(request: Request) -> Response:
    """Screen the uploaded drafts and answer with the result page; the files and results are then deleted.

    Everything lives in one fresh temporary folder that is removed in ``finally`` (after success, refusal,
    error or a client that went away); nothing is written to the database or logged beyond counts and timings.
    """
    state = state_of(request)
    if _cross_site(request):
        return _error_page(request, 403, "Upload refused", "Uploads must come from this page.")
    folder = Path(tempfile.mkdtemp(prefix="qpm-selftest-", dir=temp_root(state.settings)))
    try:
        try:
            files = await receive_files(
                request.stream(),
                content_type=request.headers.get("content-type"),
                content_length=request.headers.get("content-length"),
                folder=folder,
                limits=state.limits,
            )
        except UploadRejected as exc:
            log.info("self-test refused: HTTP %d", exc.status_code)
            return _error_page(request, exc.status_code, "Upload refused", exc.message)
        except ClientDisconnect:
            return Response(status_code=400)
        screener = await state.wait_ready(READY_WAIT_SECONDS)
        if screener is None:
            detail = (
                "The screening model could not be loaded."
                if state.load_error
                else "The screening model is still loading."
            )
            return _error_page(request, 503, "Not ready yet", f"{detail} Please try again in a minute.")
        if await request.is_disconnected():
            return Response(status_code=400)
        started = time.perf_counter()
        html = await anyio.to_thread.run_sync(_screen_and_render, state, screener, files)
        log.info("self-test: %d file(s) screened in %.1f s", len(files), time.perf_counter() - started)
        return Response(
            html,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": result_csp(_map_hash())},
        )
    finally:
        # Also reached when the client disconnects mid-upload or the handler is cancelled: nothing survives.
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))


def _map_hash() -> str:
    from pipeline.evidence_map import script_hash

    return script_hash()


def _screen_and_render(state: AppState, screener: Any, files: list[SavedFile]) -> str:
    """Screen (blocking) and render the result page in a worker thread, off the event loop.

    At most ``web_concurrent_screens`` run at once; the others wait here for a slot.
    """
    with state.slots():
        result: SelfTestResult = screener.screen_files(files)
    report = result.report
    context: dict[str, Any] = {
        "csrf_token": "",
        "request_path": "/self-test",
        "report": report,
        "summary": report.get("summary", {}),
        "guidance": guidance(report),
        "documents": report.get("documents", []),
        "errors": report.get("errors", []),
        "map_html": result.evidence_map_html,
        "seconds": result.seconds,
        "limits": state.limits,
    }
    return state.templates.get_template("result.html").render(**context)


# --- sign-in ------------------------------------------------------------------------------------------------


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str | None = None) -> Response:
    """The assessors' sign-in form."""
    return render(request, "login.html", next=safe_next(next), error=None, username="")


def _throttled(state: AppState, username: str) -> bool:
    now = time.monotonic()
    with state.login_lock:
        recent = [t for t in state.login_failures.get(username, []) if now - t < LOGIN_WINDOW]
        state.login_failures[username] = recent
        return len(recent) >= LOGIN_MAX_FAILURES


def _failed(state: AppState, username: str) -> None:
    with state.login_lock:
        state.login_failures.setdefault(username, []).append(time.monotonic())


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the password; on success start a new session (new CSRF token: no session fixation)."""
    state = state_of(request)
    form = await check_csrf(request)
    username = form.get("username", "").strip()[:64]
    password = form.get("password", "")[:1024]
    target = safe_next(form.get("next"))
    key = username.lower()
    if _throttled(state, key):
        return render(
            request,
            "login.html",
            status_code=429,
            next=target,
            username=username,
            error="Too many failed attempts for this user name: wait five minutes and try again.",
        )
    with state.sessions() as db:
        user = await anyio.to_thread.run_sync(authenticate, db, username, password)
        if user is None:
            _failed(state, key)
            audit(db, None, "login.failed", details=username)
            db.commit()
            return render(
                request,
                "login.html",
                status_code=401,
                next=target,
                username=username,
                error="Wrong user name or password.",
            )
        audit(db, user, "login")
        db.commit()
        session = {"uid": user.id, "ver": user.session_version, "csrf": new_csrf_token()}
    with state.login_lock:
        state.login_failures.pop(key, None)
    response = RedirectResponse(target, status_code=303)
    write_session(request, response, session)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """End the session."""
    state = state_of(request)
    await check_csrf(request)
    with state.sessions() as db:
        user = current_user(request, db)
        if user is not None:
            audit(db, user, "logout")
            db.commit()
    response = RedirectResponse("/login", status_code=303)
    clear_session(response)
    return response
