"""The public self-test: upload to result page, limits while streaming, hostile uploads, privacy, /healthz."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.conftest import SAMPLES, WebApp, raw_post_scope

pytestmark = pytest.mark.slow

POLICY = SAMPLES / "kestrel-advocacy-safeguarding-policy.docx"


def _upload(web: WebApp, files: list[tuple[str, bytes]], **kwargs: Any) -> Any:
    client = web.client()
    return client.post("/self-test", files=[("files", (name, data)) for name, data in files], **kwargs)


def _assert_no_leftovers(web: WebApp) -> None:
    assert list(web.temp_dir.iterdir()) == [], "a self-test left files behind"


def test_healthz_ready(web: WebApp) -> None:
    response = web.client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_index_page_has_upload_form_and_privacy_statement(web: WebApp) -> None:
    response = web.client().get("/")
    assert response.status_code == 200
    page = response.text
    assert 'action="/self-test"' in page and 'enctype="multipart/form-data"' in page
    assert 'name="files"' in page and "multiple" in page
    assert "deleted as soon as your result page has been sent" in page
    assert "Nothing is sent to any other organisation" in page
    assert "set-cookie" not in response.headers  # a provider is not tracked
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp


def test_self_test_upload_shows_guidance_first_then_evidence_map(web: WebApp) -> None:
    response = _upload(web, [(POLICY.name, POLICY.read_bytes())])
    assert response.status_code == 200, response.text[:500]
    page = response.text
    assert "Your self-test result" in page
    add, docs, evidence_map = (
        page.index('id="what-to-add"'),
        page.index("Documents read"),
        page.index('id="evidence-map"'),
    )
    assert add < docs < evidence_map, "what to add must come first, the evidence map after"
    assert "What to add:" in page
    assert POLICY.name in page
    # The evidence map is embedded, sandboxed, as an escaped srcdoc document.
    frame = re.search(r'<iframe class="map"[^>]*sandbox="allow-scripts allow-popups"[^>]*srcdoc="([^"]*)"', page)
    assert frame is not None
    embedded = html.unescape(frame.group(1))
    assert embedded.startswith("<!DOCTYPE html>") and "Evidence map" in embedded
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    _assert_no_leftovers(web)


def test_same_pipeline_as_cli_gives_same_statuses(web: WebApp) -> None:
    """The self-test's statuses equal those of the plain pipeline functions the flow's tasks call."""
    from pipeline.ingest import ingest
    from pipeline.screen import screen

    screener = web.state.screener
    assert screener is not None
    ingested = ingest(POLICY, web.settings)
    assert not hasattr(ingested, "code")
    expected = screen(screener.matcher, "x", [ingested], []).submission  # type: ignore[list-item]
    response = _upload(web, [(POLICY.name, POLICY.read_bytes())])
    page = response.text
    for result in expected.results:
        shown = f'id="add-{result.indicator_id}"' in page
        assert shown == (result.status != "met"), result.indicator_id


def test_hostile_upload_is_escaped_and_named_safely(web: WebApp) -> None:
    hostile = (
        b"<!DOCTYPE html><html><body><script>alert(1)</script><img src=x onerror=alert(2)>"
        b"<a href='javascript:alert(3)'>x</a></body></html>"
    )
    script_text = (
        b"Confidentiality policy\n\n<script>alert('xss')</script> We keep records safe. <img src=x onerror=alert(1)>\n"
    )
    response = _upload(
        web,
        [
            ("../../etc/passwd", b"root:x:0:0"),
            ("page.html", hostile),
            ("..\\..\\windows\\evil<script>.txt", script_text),
            (POLICY.name, POLICY.read_bytes()),
        ],
    )
    assert response.status_code == 200
    page = response.text
    # Nothing from a file reaches the page unescaped: no live script or handler outside our own.
    outside_map = re.sub(r'srcdoc="[^"]*"', "", page)
    assert "<script>alert" not in outside_map and "onerror=alert" not in outside_map
    assert outside_map.count("<script") == 1  # our result.js
    # The web page is refused with the CLI's message; the traversal names lost their folders.
    assert "not a document" in page or "web page" in page
    assert "../" not in page and "..\\" not in page
    assert "passwd" in page  # shown under its safe base name
    assert "evil_script_.txt" in page
    _assert_no_leftovers(web)


def test_unreadable_files_get_the_cli_messages(web: WebApp) -> None:
    from pipeline.ingest import ingest

    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    response = _upload(web, [("scan.pdf", png), ("empty.docx", b""), (POLICY.name, POLICY.read_bytes())])
    assert response.status_code == 200
    page = html.unescape(response.text)
    tmp = web.root / "cli-check"
    tmp.mkdir(exist_ok=True)
    (tmp / "scan.pdf").write_bytes(png)
    expected = ingest(tmp / "scan.pdf", web.settings)
    assert expected.message in page  # type: ignore[union-attr]
    assert "Files that could not be read" in page
    assert page.index('id="what-to-add"') < page.index('id="file-problems"')


def test_only_bad_files_still_answer_with_reasons(web: WebApp) -> None:
    response = _upload(web, [("a.txt", b"   \n  ")])
    assert response.status_code == 200
    assert "No document could be read" in response.text
    assert "None of your files could be read" in response.text
    assert "blank space" in response.text
    assert 'class="guide ' not in response.text  # no "what to add" list built on nothing


def test_duplicate_upload_is_screened_once(web: WebApp) -> None:
    data = POLICY.read_bytes()
    response = _upload(web, [("one.docx", data), ("two.docx", data)])
    assert response.status_code == 200
    assert "same content as one.docx" in response.text


def test_too_many_files_refused(web: WebApp) -> None:
    files = [(f"f{i}.txt", b"Our confidentiality policy.") for i in range(web.settings.upload_max_files + 1)]
    response = _upload(web, files)
    assert response.status_code == 413
    assert "too many files" in response.text
    _assert_no_leftovers(web)


def test_oversize_file_refused(web: WebApp) -> None:
    big = b"a" * (int(web.settings.upload_max_file_mb * 1024 * 1024) + 10)
    response = _upload(web, [("big.txt", big)])
    assert response.status_code == 413
    assert "over the limit" in response.text
    _assert_no_leftovers(web)


def test_declared_content_length_over_limit_refused_before_reading(web: WebApp) -> None:
    response = web.client().post(
        "/self-test",
        content=b"x" * 100,
        headers={
            "content-type": "multipart/form-data; boundary=abc",
            "content-length": str(200 * 1024 * 1024),
        },
    )
    assert response.status_code == 413


def test_empty_and_non_multipart_requests_refused(web: WebApp) -> None:
    client = web.client()
    assert client.post("/self-test", data={"x": "1"}).status_code == 415
    response = client.post("/self-test", files=[("files", ("", b""))])
    assert response.status_code == 400
    assert "choose at least one file" in response.text
    assert (
        client.post(
            "/self-test", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=zz"}
        ).status_code
        == 400
    )
    _assert_no_leftovers(web)


def test_cross_site_post_refused(web: WebApp) -> None:
    response = _upload(web, [("a.txt", b"policy")], headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    _assert_no_leftovers(web)


def test_nothing_about_files_is_logged(web: WebApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_name = "acme-secret-draft-policy.txt"
    response = _upload(web, [(secret_name, b"Our very secret confidentiality wording about advocacy partners.")])
    assert response.status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "acme-secret" not in logged and "very secret" not in logged


def test_nothing_is_stored_in_the_database(web: WebApp) -> None:
    from sqlalchemy import func, select

    from pipeline.web.db import AuditEvent, Submission

    with web.state.sessions() as db:
        before = (db.scalar(select(func.count(Submission.id))), db.scalar(select(func.count(AuditEvent.id))))
    _upload(web, [("x.txt", b"Confidentiality: we keep advocacy partners' information private.")])
    with web.state.sessions() as db:
        after = (db.scalar(select(func.count(Submission.id))), db.scalar(select(func.count(AuditEvent.id))))
    assert before == after


# --- limits enforced while streaming: an ASGI-level test that counts what the server reads -------------------


def _multipart_chunks(boundary: str, total: int, chunk: int) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    sent = 0
    while sent < total:
        yield b"a" * chunk
        sent += chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def test_oversize_stream_is_refused_before_it_is_fully_read(web: WebApp) -> None:
    """No Content-Length (chunked): the server must stop pulling body chunks once a limit is crossed."""
    limit = int(web.settings.upload_max_file_mb * 1024 * 1024)
    chunk = 256 * 1024
    body = _multipart_chunks("b0undary", total=limit * 4, chunk=chunk)
    pulled = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        try:
            data = next(body)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(data)
        return {"type": "http.request", "body": data, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = raw_post_scope(web.app, "b0undary")
    asyncio.run(web.app(scope, receive, send))  # type: ignore[arg-type]
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert pulled < limit + 2 * chunk, f"read {pulled} bytes of a {limit * 4}-byte upload"
    _assert_no_leftovers(web)
