"""The evidence map in a real headless Chromium: scripts, filters, links, hostile text, print, screenshots.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and Playwright for Python (a dev dependency; its bundled
browsers are never downloaded: the system Chromium is launched through ``executable_path``). Without either,
every test here is skipped with the reason printed by ``pytest -ra``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.evidence_map import write_evidence_map
from tests.browser_support import ARTIFACTS, CHROMIUM_ARGS, find_chromium, skip_reason
from tests.evidence_fixtures import build_submission

pytestmark = pytest.mark.browser

CHROMIUM = find_chromium()
if (_reason := skip_reason()) is not None:
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def map_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("browser")
    result, report, catalogue = build_submission(folder)
    return write_evidence_map(result, report, folder / "out", catalogue).as_uri()


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="qpm-chromium-")  # a fresh profile: no state from earlier runs
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


class Watched:
    """A page with every console error, uncaught exception and dialog recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def watched(browser_context: Any, map_url: str) -> Iterator[Watched]:
    page = browser_context.new_page()
    w = Watched(page)
    page.goto(map_url)
    page.wait_for_load_state("load")
    yield w
    page.close()


def visible_cards(page: Page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "article[data-ind]",
        "els => els.filter(e => !e.hidden && e.offsetParent !== null)"
        ".map(e => ({id: e.id, status: e.dataset.status, area: e.dataset.area, level: e.dataset.level,"
        " docs: e.dataset.docs}))",
    )


def test_map_opens_with_no_console_error_and_the_filter_script_runs(watched: Watched) -> None:
    page = watched.page
    page.wait_for_timeout(300)
    # The form is shown by the inline script: visible means the CSP hash let our own script run.
    assert page.is_visible("#filters")
    assert page.text_content("#filter-status") == "Showing all 60 indicators"
    assert watched.errors == []
    assert watched.dialogs == []


def test_hostile_document_runs_no_script(watched: Watched) -> None:
    page = watched.page
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == []
    assert page.locator("img, iframe, object, embed").count() == 0
    assert "<script>window.__pwned = 1; alert(1)</script>" in (page.text_content("#documents") or "")
    assert page.locator("a[href^='javascript:' i]").count() == 0


def test_filters_only_flags_area_document_level_and_clear(watched: Watched) -> None:
    page = watched.page
    page.check("#f-flags")
    cards = visible_cards(page)
    assert cards and all(c["status"] != "met" for c in cards)
    assert page.locator("li[data-cell][data-status='met']:visible").count() == 0
    assert "Showing" in (page.text_content("#filter-status") or "")

    page.uncheck("#f-flags")
    page.select_option("#f-area", "SAFE")
    cards = visible_cards(page)
    assert cards and all(c["area"] == "SAFE" for c in cards)
    assert page.locator("#matrix tbody tr:visible").count() == 1

    page.select_option("#f-area", "")
    doc_key = page.eval_on_selector("#f-doc option:nth-child(2)", "o => o.value")
    page.select_option("#f-doc", doc_key)
    cards = visible_cards(page)
    assert cards and all(doc_key in c["docs"].split() for c in cards)
    assert page.locator("section.doc:visible").count() == 1

    page.select_option("#f-doc", "")
    page.select_option("#f-level", "good_practice")
    cards = visible_cards(page)
    assert cards and all(c["level"] == "good_practice" for c in cards)

    page.click("button[type=reset]")
    page.wait_for_timeout(50)
    assert len(visible_cards(page)) == 60
    assert page.text_content("#filter-status") == "Showing all 60 indicators"
    assert watched.errors == []


def test_links_both_ways(watched: Watched) -> None:
    page = watched.page
    page.click("a.cell[href='#ind-CONF-02']")
    assert page.evaluate("location.hash") == "#ind-CONF-02"
    assert page.locator("#ind-CONF-02").is_visible()

    link = page.locator("#ind-CONF-02 .evidence a").first
    target = (link.get_attribute("href") or "")[1:]
    link.click()
    assert page.evaluate("location.hash") == f"#{target}"
    tags = page.locator(f"[id='{target}']")
    assert tags.is_visible() and tags.locator("a[href='#ind-CONF-02']").count() == 1
    assert page.evaluate(f"document.getElementById('{target}').getBoundingClientRect().top") < 900

    tags.locator("a[href='#ind-CONF-02']").click()
    assert page.evaluate("location.hash") == "#ind-CONF-02"


def test_a_link_to_a_filtered_out_target_clears_the_filters(watched: Watched) -> None:
    page = watched.page
    page.select_option("#f-area", "SAFE")
    assert not page.locator("#ind-CONF-02").is_visible()
    page.locator("span.tags a[href='#ind-CONF-02']").first.click()
    assert page.locator("#ind-CONF-02").is_visible()
    assert page.input_value("#f-area") == ""


def test_keyboard_reaches_the_skip_link_and_the_filters(watched: Watched) -> None:
    page = watched.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "f-flags":
            break
    assert page.evaluate("document.activeElement.id") == "f-flags"
    page.keyboard.press("Space")
    assert page.is_checked("#f-flags")
    assert all(c["status"] != "met" for c in visible_cards(page))


def test_without_javascript_everything_is_shown(browser_context: Any, map_url: str) -> None:
    page = browser_context.new_page()
    cdp = browser_context.new_cdp_session(page)
    cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})
    page.goto(map_url)
    assert not page.is_visible("#filters")  # no dead controls without the script
    assert page.locator("article[data-ind]:visible").count() == 60
    assert page.locator("section.doc:visible").count() == 3
    page.close()


def test_print_layout_and_artifacts(watched: Watched) -> None:
    page = watched.page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "evidence-map.png"))
    page.screenshot(path=str(ARTIFACTS / "evidence-map-full.png"), full_page=True)
    page.emulate_media(media="print")
    assert not page.is_visible("nav.bar")
    assert page.locator("article[data-ind]:visible").count() == 60
    page.pdf(path=str(ARTIFACTS / "evidence-map-print.pdf"), format="A4", print_background=True)
    assert (ARTIFACTS / "evidence-map-print.pdf").stat().st_size > 10_000
    page.emulate_media(media="screen")
