"""Shared pieces of the web app: its state, templates, sessions, CSRF and the signed-in user."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pipeline import __version__
from pipeline.config import Settings
from pipeline.web.db import User
from pipeline.web.security import SessionSigner, csrf_matches, new_csrf_token
from pipeline.web.selftest import SelfTestScreener
from pipeline.web.uploads import UploadLimits

log = logging.getLogger("qpm.web")
SESSION_COOKIE = "qpm_session"
CSRF_FIELD = "csrf_token"


def package_dir() -> Path:
    """The installed ``pipeline/web`` folder (templates, static files and migrations ship inside it)."""
    return Path(str(resources.files("pipeline.web")))


def temp_root(settings: Settings) -> Path:
    """Where per-request self-test folders are made: ``web_temp_dir`` or the system temporary folder."""
    root = Path(settings.web_temp_dir).expanduser() if settings.web_temp_dir else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    return root


def secret_key_path(settings: Settings) -> Path:
    """``web_secret_key_file``, or ``secret_key`` in ``web_data_dir``."""
    if settings.web_secret_key_file:
        return Path(settings.web_secret_key_file).expanduser()
    return Path(settings.web_data_dir).expanduser() / "secret_key"


@dataclass
class AppState:
    """Everything the routes share. ``screener`` is set once the model has loaded (``ready``)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    signer: SessionSigner
    limits: UploadLimits
    templates: Environment
    screener: SelfTestScreener | None = None
    load_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    screen_slots: threading.BoundedSemaphore | None = None
    login_failures: dict[str, list[float]] = field(default_factory=dict)
    login_lock: threading.Lock = field(default_factory=threading.Lock)

    async def wait_ready(self, timeout: float) -> SelfTestScreener | None:
        """The screener, waiting up to ``timeout`` seconds while the model is still loading."""
        deadline = time.monotonic() + timeout
        while not self.ready.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self.screener

    def slots(self) -> threading.BoundedSemaphore:
        """How many self-tests may be screened at once. A thread semaphore, taken in the worker thread: it does
        not belong to one event loop, and a waiting request holds no more than a sleeping thread."""
        with self.login_lock:
            if self.screen_slots is None:
                self.screen_slots = threading.BoundedSemaphore(max(1, self.settings.web_concurrent_screens))
            return self.screen_slots


def state_of(request: Request) -> AppState:
    """The app's shared state."""
    state: AppState = request.app.state.qpm
    return state


def make_templates() -> Environment:
    """Jinja2 with autoescaping always on (every provider-supplied string is escaped) and strict undefineds."""
    env = Environment(
        loader=FileSystemLoader(str(package_dir() / "templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    return env


# --- sessions -----------------------------------------------------------------------------------------------


def read_session(request: Request) -> dict[str, Any]:
    """The session dict from the signed cookie (empty when absent, expired or tampered)."""
    cached = request.scope.get("qpm.session")
    if cached is None:
        cached = state_of(request).signer.loads(request.cookies.get(SESSION_COOKIE))
        request.scope["qpm.session"] = cached
    session: dict[str, Any] = cached
    return session


def write_session(request: Request, response: Response, data: dict[str, Any]) -> None:
    """Set the signed session cookie: HttpOnly (no script can read it), SameSite=Lax, Secure over HTTPS."""
    request.scope["qpm.session"] = data
    state = state_of(request)
    response.set_cookie(
        SESSION_COOKIE,
        state.signer.dumps(data),
        max_age=int(state.signer.max_age),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session(response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


def ensure_csrf(request: Request) -> tuple[dict[str, Any], bool]:
    """The session with a CSRF token in it; True when one had to be created (the cookie must then be set)."""
    session = dict(read_session(request))
    if session.get("csrf"):
        return session, False
    session["csrf"] = new_csrf_token()
    return session, True


async def check_csrf(request: Request) -> dict[str, Any]:
    """The submitted form, after checking its CSRF token against the session's; 403 when missing or wrong."""
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if not csrf_matches(read_session(request).get("csrf"), given if isinstance(given, str) else None):
        raise HTTPException(status_code=403, detail="csrf")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def current_user(request: Request, db: Session) -> User | None:
    """The signed-in user, or None. A cookie from before a password change or deactivation is not honoured."""
    session = read_session(request)
    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    user = db.get(User, uid)
    if user is None or not user.active or session.get("ver") != user.session_version:
        return None
    return user


def login_redirect(request: Request) -> HTTPException:
    """303 to the login page, remembering where the user was going (a local path only)."""
    target = request.url.path
    return HTTPException(status_code=303, headers={"Location": f"/login?next={quote(target, safe='/')}"})


def safe_next(value: str | None) -> str:
    """A redirect target after login: only a local path under /review (never another site)."""
    if value and value.startswith("/review") and "//" not in value and "\\" not in value:
        return value
    return "/review"


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    csrf: bool = True,
    **context: Any,
) -> HTMLResponse:
    """Render a template; with ``csrf`` the session's CSRF token is available to its forms.

    The public self-test pages pass ``csrf=False``: they set no cookie at all (a provider is not tracked).
    """
    session, created = ensure_csrf(request) if csrf else ({}, False)
    html = (
        state_of(request)
        .templates.get_template(template)
        .render(csrf_token=session.get("csrf", ""), request_path=request.url.path, **context)
    )
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    if created:
        write_session(request, response, session)
    return response
