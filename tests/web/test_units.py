"""Unit tests of the web app's building blocks: safe names, passwords, signed sessions, portable migrations."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from pipeline.web.security import (
    SessionSigner,
    csrf_matches,
    hash_password,
    load_or_create_secret,
    safe_filename,
    unique_name,
    verify_password,
)
from tests.web.conftest import WebApp, raw_post_scope


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("policy.pdf", "policy.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\system.ini", "system.ini"),
        ("/abs/path/safeguarding.docx", "safeguarding.docx"),
        ("C:\\Users\\me\\Desktop\\Complaints Policy.docx", "Complaints Policy.docx"),
        ("..", "document"),
        ("", "document"),
        (".hidden.txt", "hidden.txt"),
        ("evil<script>.txt", "evil_script_.txt"),
        ("a\x00b\x1f.txt", "a_b_.txt"),
        ("CON.txt", "_CON.txt"),
        ("nul", "_nul"),
        ("report\u202efdp.exe", "report_fdp.exe"),
        ("x" * 300 + ".docx", "x" * 115 + ".docx"),  # 120 characters, extension kept
    ],
)
def test_safe_filename(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_unique_name_keeps_both_files() -> None:
    taken: set[str] = set()
    assert [unique_name(n, taken) for n in ("a.pdf", "A.pdf", "a.pdf", "b")] == ["a.pdf", "A (2).pdf", "a (3).pdf", "b"]


def test_password_hashes_are_salted_and_verified_in_constant_time() -> None:
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterY", first)
    assert not verify_password("anything", "garbage")
    assert not verify_password("anything", "md5$1$2$3$4$5")


def test_session_signer_rejects_tampering_and_expiry() -> None:
    signer = SessionSigner(b"k" * 48, max_age_seconds=60)
    value = signer.dumps({"uid": 3, "csrf": "t"}, now=1000)
    assert signer.loads(value, now=1030) == {"uid": 3, "csrf": "t"}
    assert signer.loads(value, now=1061) == {}  # expired
    body, stamp, mac = value.split(".")
    assert signer.loads(f"{body}.{int(stamp) + 1}.{mac}", now=1030) == {}
    assert signer.loads(f"{body[:-1]}A.{stamp}.{mac}", now=1030) == {}
    assert SessionSigner(b"other-key" * 8, 60).loads(value, now=1030) == {}
    assert signer.loads("nonsense", now=1030) == {} and signer.loads(None) == {}


def test_csrf_comparison() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd") and not csrf_matches(None, "abc") and not csrf_matches("abc", "")


def test_secret_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret_key"
    key = load_or_create_secret(path)
    assert len(key) >= 48 and load_or_create_secret(path) == key
    assert path.stat().st_mode & 0o077 == 0


def test_migrations_emit_postgresql_ddl() -> None:
    """The same migration runs on PostgreSQL: render it offline for that dialect (no server needed)."""
    from alembic import command
    from alembic.config import Config

    import pipeline.web.db as db

    here = Path(db.__file__).resolve().parent
    out = io.StringIO()
    config = Config(str(here / "alembic.ini"), output_buffer=out)
    config.set_main_option("script_location", str(here / "migrations"))
    config.set_main_option("sqlalchemy.url", "postgresql://user:secret@localhost/qpm")
    command.upgrade(config, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE decisions" in sql and "SERIAL" in sql and "TIMESTAMP WITH TIME ZONE" in sql


def test_client_disconnect_mid_upload_leaves_nothing(web: WebApp) -> None:
    """A client that goes away mid-upload: the request's folder is removed all the same."""
    parts = [
        b'--zz\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n',
        b"Our confidentiality policy " * 100,
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return {"type": "http.request", "body": parts.pop(0), "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = raw_post_scope(web.app, "zz")
    asyncio.run(web.app(scope, receive, send))  # type: ignore[arg-type]
    assert list(web.temp_dir.iterdir()) == []


def test_ordinary_form_bodies_are_capped(web: WebApp) -> None:
    client = web.client()
    response = client.post(
        "/login", content=b"a=" + b"x" * (300 * 1024), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    # the site's own error page, with the security headers every page has, not a bare line of text
    assert response.headers["content-type"].startswith("text/html")
    assert "too large" in response.text and "content-security-policy" in response.headers


def test_security_headers_on_pages(web: WebApp) -> None:
    response = web.client().get("/login")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
