"""Shared fixtures for the web app tests: one app (and one model load) per test session.

The real trained matcher is used when ``models/matcher.joblib`` exists (loading it costs seconds, so the app is
session-scoped); without it the web tests are skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.evidence_map import render_evidence_map
from pipeline.report import RunInfo, build_report, utc_now, write_json_atomic, write_text_atomic
from pipeline.screen import screen
from pipeline.train import MODEL_FILE
from pipeline.web.app import create_app
from pipeline.web.common import AppState
from pipeline.web.selftest import files_of
from pipeline.web.workspace import create_user

# Prefect (the assessor upload runs the CLI's flow) reads its home at import: the same test home as the flow tests.
os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "qpm-test-prefect-home"))

SAMPLES = PROJECT_ROOT / "sample_policies" / "docs"
PASSWORD = "correct horse battery"

if not (Settings.from_env().models_dir / MODEL_FILE).exists():
    pytest.skip("web tests skipped: no trained matcher (run `make train`)", allow_module_level=True)


def web_settings(root: Path, **overrides: Any) -> Settings:
    """Settings whose data folder and temporary folder live under ``root`` (nothing touches the user's)."""
    return Settings.from_env(
        web_data_dir=root / "data",
        web_temp_dir=str(root / "tmp"),
        **overrides,
    )


def wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    """Block until ``/healthz`` says ready; fail at once when the model could not be loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/healthz")
        if response.status_code == 200:
            return
        if response.json().get("status") == "error":
            raise AssertionError(f"the web app could not load its model: {response.json().get('detail')}")
        time.sleep(0.1)
    raise AssertionError("the web app did not become ready")


@dataclass
class WebApp:
    """The session's app, its settings and helpers to make clients."""

    app: FastAPI
    settings: Settings
    root: Path
    main: TestClient

    @property
    def state(self) -> AppState:
        return self.app.state.qpm  # type: ignore[no-any-return]

    @property
    def temp_dir(self) -> Path:
        return Path(self.settings.web_temp_dir)

    def client(self) -> TestClient:
        """A new client with its own cookie jar, sharing the running app (no second start-up)."""
        return TestClient(self.app, base_url="http://testserver")


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApp]:
    """The app with the real model, started once for the whole session."""
    root = tmp_path_factory.mktemp("web")
    settings = web_settings(root)
    app = create_app(settings)
    with TestClient(app) as main:
        wait_ready(main)
        yield WebApp(app=app, settings=settings, root=root, main=main)


def make_user(web: WebApp, name: str, role: str = "assessor") -> str:
    """Create a user (once) and return the name."""
    from sqlalchemy import select

    from pipeline.web.db import User

    with web.state.sessions() as db:
        if db.scalar(select(User).where(User.username == name)) is None:
            create_user(db, name, PASSWORD, role, display_name=name.title())
            db.commit()
    return name


def login(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    """Sign in through the form (GET for the CSRF token, then POST)."""
    page = client.get("/login")
    token = csrf_of(page.text)
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": token, "next": "/review"},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a page."""
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@pytest.fixture(scope="session")
def batch_out(web: WebApp, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``batch``-style output folder with two submissions (report.json + evidence-map.html each), made with the
    same functions the flow calls (fast: no Prefect start-up)."""
    out = tmp_path_factory.mktemp("batch-out")
    screener = web.state.screener
    assert screener is not None
    groups = {
        "kestrel-advocacy": ["kestrel-advocacy-safeguarding-policy.docx", "brightpath-advocacy-confidentiality.docx"],
        "hartwell": ["hartwell-speak-up-complaints.md"],
    }
    for name, files in groups.items():
        documents, failures = screener.read_files(files_of([SAMPLES / f for f in files]), date.today())
        result = screen(screener.matcher, name, documents, failures)
        run = RunInfo(
            submission=name,
            source=str(SAMPLES),
            model_id=screener.model_id,
            input_key=f"key-{name}",
            started_at=utc_now(),
            finished_at=utc_now(),
        )
        report = build_report(result, screener.matcher.catalogue, run)
        folder = out / name
        write_text_atomic(folder / "evidence-map.html", render_evidence_map(result, report, screener.matcher.catalogue))
        write_json_atomic(folder / "report.json", report)
    return out


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a thread."""

    url: str
    port: int
    settings: Settings
    app: FastAPI

    @property
    def state(self) -> AppState:
        return self.app.state.qpm  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """uvicorn serving a second app instance on a free loopback port (the model itself is loaded once per process)."""
    import httpx
    import uvicorn

    root = tmp_path_factory.mktemp("live")
    port = free_port()
    settings = web_settings(root, web_port=port)
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/healthz", timeout=2)
            if response.status_code == 200:
                break
            if response.json().get("status") == "error":
                server.should_exit = True
                raise AssertionError(f"the live server could not load its model: {response.json().get('detail')}")
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        server.should_exit = True
        raise AssertionError("the live server did not become ready")
    try:
        yield LiveServer(url=url, port=port, settings=settings, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def raw_post_scope(app: Any, boundary: str, path: str = "/self-test") -> dict[str, Any]:
    """An ASGI scope for a multipart POST, for tests that feed the body chunk by chunk themselves."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
        "app": app,
    }
