"""The web app in a real headless Chromium (Debian's, driven by Playwright; no browser is downloaded).

Covers: self-test upload (file picker and drag and drop) to the result page with the evidence map embedded, a
hostile upload that must run no script, sign-in, an override with its reason, sign-off and export.
Skipped, with the reason, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pipeline.web.db import Submission
from pipeline.web.workspace import import_folder
from tests.browser_support import ARTIFACTS, CHROMIUM_ARGS, find_chromium, skip_reason
from tests.web.conftest import PASSWORD, SAMPLES, LiveServer, WebApp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = find_chromium()
if (_reason := skip_reason()) is not None:
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, accept_downloads=True
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.qpm_errors = errors  # type: ignore[attr-defined]
    page.qpm_dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        page.close()
    browser.clear_cookies()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


def test_self_test_upload_to_result_in_chromium(live: LiveServer, page: Page) -> None:
    page.goto(f"{live.url}/")
    assert "Your files stay private" in page.inner_text("body")
    page.set_input_files("#files", [str(SAMPLES / "kestrel-advocacy-safeguarding-policy.docx")])
    assert "kestrel-advocacy-safeguarding-policy.docx" in page.inner_text("#chosen")
    page.click("#check-button")
    page.wait_for_selector("#what-to-add", timeout=120_000)
    # Guidance first, then the evidence map, which is embedded and working (its filter script ran).
    add_top = page.locator("#what-to-add").bounding_box()
    map_top = page.locator("#evidence-map").bounding_box()
    assert add_top and map_top and add_top["y"] < map_top["y"]
    frame = page.frame_locator("iframe.map")
    frame.locator("h1").first.wait_for(timeout=30_000)
    assert "evidence map" in frame.locator("body").inner_text().lower()
    filters = frame.locator("#filters")
    assert filters.count() == 1 and filters.is_visible(), "the map's own script did not run in the embed"
    assert page.locator("#map-download").is_visible()
    _shot(page, "web-selftest-result.png")
    assert page.qpm_errors == [], page.qpm_errors  # type: ignore[attr-defined]


def test_drag_and_drop_then_hostile_content_runs_nothing(live: LiveServer, page: Page) -> None:
    page.goto(f"{live.url}/")
    hostile = (
        "Confidentiality policy\n\n<script>alert('xss')</script>\n<img src=x onerror=\"alert('img')\">\n"
        "<a href=\"javascript:alert('link')\">click</a> We keep advocacy partners' information private.\n"
    )
    page.evaluate(
        """([name, text]) => {
            const data = new DataTransfer();
            data.items.add(new File([text], name, {type: "text/plain"}));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        ["../../<img src=x onerror=alert(9)>.txt", hostile],
    )
    assert ".txt" in page.inner_text("#chosen")
    page.click("#check-button")
    page.wait_for_selector("#what-to-add", timeout=120_000)
    page.frame_locator("iframe.map").locator("h1").first.wait_for(timeout=30_000)
    body = page.frame_locator("iframe.map").locator("body").inner_text()
    assert "<script>alert('xss')</script>" in body  # shown as text
    page.wait_for_timeout(500)
    assert page.qpm_dialogs == []  # type: ignore[attr-defined]
    _shot(page, "web-selftest-hostile.png")


def test_too_many_files_refused_in_the_browser(live: LiveServer, page: Page, tmp_path: Path) -> None:
    page.goto(f"{live.url}/")
    files = []
    for i in range(live.settings.upload_max_files + 1):
        path = tmp_path / f"policy-{i}.txt"
        path.write_text("Confidentiality policy.", encoding="utf-8")
        files.append(str(path))
    page.set_input_files("#files", files)
    assert page.locator("#client-error").is_visible()
    # The server refuses it too (the browser check is a convenience, not the control).
    page.evaluate("document.getElementById('upload-form').submit()")
    page.wait_for_selector("#upload-error")
    assert "too many files" in page.inner_text("#upload-error")


@pytest.fixture(scope="module")
def workspace(live: LiveServer, batch_out: Path, web: WebApp) -> dict[str, int]:
    make_user_live(live, "paula", "assessor")
    with live.state.sessions() as db:
        import_folder(db, batch_out, user=None)
        db.commit()
        return {s.name: s.id for s in db.scalars(select(Submission))}


def make_user_live(live: LiveServer, name: str, role: str) -> None:
    from pipeline.web.workspace import create_user

    with live.state.sessions() as db:
        create_user(db, name, PASSWORD, role, display_name=name.title())
        db.commit()


def test_login_override_sign_off_and_export_in_chromium(
    live: LiveServer, page: Page, workspace: dict[str, int]
) -> None:
    sid = workspace["hartwell"]
    page.goto(f"{live.url}/review/submissions/{sid}")
    assert page.url.startswith(f"{live.url}/login")  # not signed in: sent to the login page
    page.fill("#username", "paula")
    page.fill("#password", "not the password")
    page.click("#login-form button[type=submit]")
    assert "Wrong user name or password" in page.inner_text("#login-error")
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{live.url}/review/submissions/{sid}")
    assert page.locator("#indicators tbody tr").count() == 60

    page.click("#row-CONF-01 a")
    page.wait_for_selector("#decision-form")
    machine = page.inner_text("#machine-title + p")
    override = "missing" if "Missing" not in machine else "met"
    page.check(f"input[name=decision][value={override}]")
    page.click("#decision-form button[value=stay]")
    assert "give a reason" in page.inner_text("#error")  # refused without a reason
    page.check(f"input[name=decision][value={override}]")
    page.fill("#reason", "Checked against section 2 of the policy")
    page.click("#decision-form button[value=stay]")
    page.wait_for_selector("#message")
    assert "overridden" in page.inner_text("#current")
    assert "Checked against section 2" in page.inner_text("#history")

    page.goto(f"{live.url}/review/submissions/{sid}")
    page.click("#accept-form button")
    page.wait_for_selector("#message")
    page.fill("#comment", "Desktop review complete")
    page.click("#signoff-form button")
    page.wait_for_selector("#message")
    assert "Signed off" in page.inner_text("#signoff-state")
    _shot(page, "web-review-signed-off.png")

    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    conf = next(r for r in rows if r["indicator"] == "CONF-01")
    assert conf["human_decision"] == override and conf["reason"] == "Checked against section 2 of the policy"
    assert conf["signed_off_by"] == "Paula"
    with page.expect_download() as info:
        page.click("#export-xlsx")
    assert info.value.suggested_filename.endswith(".xlsx")
    # The wrong password (401) and the override without a reason (422) are expected refusals; nothing else.
    unexpected = [e for e in page.qpm_errors if "status of 401" not in e and "status of 422" not in e]  # type: ignore[attr-defined]
    assert unexpected == [], unexpected
