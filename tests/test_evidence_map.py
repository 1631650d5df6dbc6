"""The evidence map HTML: content, escaping of hostile text, links, self-containment, contrast, wiring."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pipeline import evidence_map
from pipeline.document import Block, ExtractedDocument
from pipeline.evidence_map import (
    AREA_INKS,
    MAP_FILE,
    STATUS_COLOURS,
    TEXT_COLOURS,
    _Mark,
    emphasise,
    render_document_text,
    render_evidence_map,
    write_evidence_map,
)
from pipeline.highlight import AREA_FILLS
from tests.evidence_fixtures import HOSTILE_IMG, HOSTILE_LINK, HOSTILE_NAME, HOSTILE_SCRIPT, build_submission


class Page(HTMLParser):
    """Every element with its attributes, the text inside each element carrying an id, and script bodies."""

    VOID = frozenset({"meta", "input", "br", "img", "link", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self._stack: list[tuple[str, dict[str, str], list[str]]] = []
        self.text_by_id: dict[str, str] = {}
        self.cells: list[tuple[dict[str, str], str]] = []  # matrix cells (li[data-cell]) and their text
        self.cards: list[tuple[dict[str, str], str]] = []  # indicator cards (article[data-ind])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag not in self.VOID:
            self._stack.append((tag, attributes, []))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, attributes, text = self._stack.pop()
            joined = "".join(text)
            if self._stack:
                self._stack[-1][2].append(joined)
            if "id" in attributes:
                self.text_by_id[attributes["id"]] = joined
            if open_tag == "script":
                self.scripts.append(joined)
            if open_tag == "li" and "data-cell" in attributes:
                self.cells.append((attributes, joined))
            if open_tag == "article" and "data-ind" in attributes:
                self.cards.append((attributes, joined))
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._stack:
            self._stack[-1][2].append(data)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.elements if "id" in a]

    def hrefs(self) -> list[str]:
        return [a["href"] for _, a in self.elements if "href" in a]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Any, Path]:
    folder = tmp_path_factory.mktemp("map")
    result, report, catalogue = build_submission(folder)
    return result, report, catalogue, folder / "out"


@pytest.fixture(scope="module")
def html(built: tuple[Any, dict[str, Any], Any, Path]) -> str:
    result, report, catalogue, out = built
    path = write_evidence_map(result, report, out, catalogue)
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(html: str) -> Page:
    parsed = Page()
    parsed.feed(html)
    parsed.close()
    return parsed


# --- safety -------------------------------------------------------------------------------------------------


def test_hostile_document_text_is_shown_as_text(html: str) -> None:
    assert "&lt;script&gt;window.__pwned = 1; alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__pwned = 2; alert(2)&#34;&gt;" in html
    assert HOSTILE_LINK in html  # no Markdown link syntax is ever turned into a link
    for raw in (HOSTILE_SCRIPT, HOSTILE_IMG, HOSTILE_NAME, "<script>alert(9)", "<b>(a scan?)</b>", "<Advocacy>"):
        assert raw not in html


def test_only_our_own_script_and_no_event_handlers_or_script_urls(page: Page) -> None:
    assert [t for t, _ in page.elements].count("script") == 1
    assert page.scripts[0].strip() == evidence_map._script()
    assert not [t for t, _ in page.elements if t in ("img", "iframe", "object", "embed", "link", "base")]
    for tag, attributes in page.elements:
        assert not [k for k in attributes if k.startswith("on")], (tag, attributes)
        for key in ("href", "src", "action", "formaction"):
            value = attributes.get(key, "").strip().lower()
            assert not value.startswith(("javascript:", "data:", "vbscript:")), (tag, attributes)


def test_hrefs_are_only_fragments_or_the_highlighted_copies(page: Page) -> None:
    for href in page.hrefs():
        assert href.startswith("#") or re.fullmatch(r"highlighted/[A-Za-z0-9._%-]+", href), href


def test_csp_pins_the_inline_script_by_hash(page: Page) -> None:
    csp = next(
        a["content"] for t, a in page.elements if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode("utf-8")).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_self_contained_and_small_enough_to_email(html: str, page: Page) -> None:
    assert not re.search(r"https?://", html.split("<body>")[0].split("</style>")[0].replace("http-equiv", ""))
    for _, attributes in page.elements:
        for key in ("href", "src"):
            assert not attributes.get(key, "").lower().startswith(("http:", "https:", "//")), attributes
    assert not [a for _, a in page.elements if "src" in a or "srcset" in a]  # no element loads anything
    assert "@import" not in html and "url(" not in html
    assert len(html.encode()) < 1_000_000


# --- content ------------------------------------------------------------------------------------------------


def test_header_verdict_versions_and_notice(html: str, built: tuple[Any, dict[str, Any], Any, Path]) -> None:
    report = built[1]
    assert "Riverside &lt;Advocacy&gt; &amp; Co" in html
    assert report["summary"]["verdict"] in html
    assert re.search(r"\d+ essential indicators missing", html)
    assert "2 March 2026, 09:30 UTC" in html
    assert f"Catalogue {report['catalogue']['id']} {report['catalogue']['version']}" in html
    assert f"qpm-prescreen {report['tool']['version']}" in html
    assert "A pre-screen, not a verdict." in html


def test_document_warnings_list_unreadable_files_and_review_dates(page: Page, html: str) -> None:
    warnings = page.text_by_id["warnings-h"]
    assert "Document warnings" in warnings
    assert "scan&lt;script&gt;alert(9)&lt;/script&gt;.pdf" in html
    assert "has no text layer &lt;b&gt;(a scan?)&lt;/b&gt;" in html
    assert "broken.docx" in html
    assert "no review or approval date was found" in html


def test_every_matrix_cell_has_a_text_label_matching_its_status(page: Page) -> None:
    labels = {"met": "Met", "partial": "Partial", "missing": "Missing"}
    assert len(page.cells) == 60
    for attributes, text in page.cells:
        words = set(re.findall(r"[A-Za-z]+", text))
        assert labels[attributes["data-status"]] in words, text
        assert not ({"Met", "Partial", "Missing"} - {labels[attributes["data-status"]]}) & words
        assert re.search(r"\b[01]\.\d\d\b", text), "score shown"
    assert len(page.cards) == 60
    for attributes, text in page.cards:
        assert labels[attributes["data-status"]] in text


def test_ids_are_unique_and_every_fragment_link_resolves(page: Page) -> None:
    ids = page.ids()
    assert len(ids) == len(set(ids))
    missing = [h for h in page.hrefs() if h.startswith("#") and h[1:] not in set(ids)]
    assert not missing


def test_links_go_both_ways_between_indicators_and_passages(page: Page, html: str) -> None:
    pairs = re.findall(r'<article class="ind[^"]*" id="(ind-[^"]+)".*?</article>', html, flags=re.S)
    assert pairs
    checked = 0
    for card_id in pairs:
        card = re.search(rf'id="{card_id}".*?</article>', html, flags=re.S)
        assert card
        for passage_id in re.findall(r'href="#(ev-[^"]+)"', card.group()):
            tags = re.search(rf'<span class="tags" id="{passage_id}">(.*?)</a></span>', html, flags=re.S)
            assert tags, passage_id
            assert f'href="#{card_id}"' in tags.group(1)  # the passage links back to the indicator
            checked += 1
    assert checked >= 10


def test_indicator_card_has_must_say_elements_evidence_and_what_to_add(page: Page, html: str) -> None:
    met = next(t for a, t in page.cards if a["id"] == "ind-CONF-02")
    assert "The policy must say" in met and "Evidenced:" in met
    assert "riverside-policy.pdf" in met and "p.1" in met and "1. Confidentiality" in met
    assert "What to add" not in met
    for attributes, text in page.cards:
        if attributes["data-status"] != "met":
            assert "What to add" in text
        if attributes["data-status"] == "missing":
            assert "Not found:" in text
    card = re.search(r'id="ind-CONF-02".*?</article>', html, flags=re.S)
    assert card and '<strong class="kt">serious harm</strong>' in card.group()


def test_document_text_is_complete_and_highlighted_by_area(
    page: Page, built: tuple[Any, dict[str, Any], Any, Path]
) -> None:
    result = built[0]
    pdf = next(d for d in result.documents if d.document.name == "riverside-policy.pdf").document
    section = page.text_by_id[f"doc-{pdf.doc_id}"]
    flat = re.sub(r"\s+", " ", section)
    for block in pdf.blocks:
        assert re.sub(r"\s+", " ", pdf.text[block.start : block.end]) in flat
    assert "Page 2" in flat


def test_legend_names_every_area_with_evidence(html: str) -> None:
    legend = re.search(r'<div class="legend">(.*?)</div>', html, flags=re.S)
    assert legend and "Confidentiality" in legend.group(1) and "Safeguarding" in legend.group(1)


def test_filters_are_real_form_controls_hidden_until_the_script_runs(page: Page) -> None:
    form = next(a for t, a in page.elements if t == "form")
    assert "hidden" in form
    names = {a.get("name") for t, a in page.elements if t in ("input", "select")}
    assert {"flags", "area", "doc", "level"} <= names
    labelled = {a["for"] for t, a in page.elements if t == "label" and "for" in a}
    assert {"f-area", "f-doc", "f-level"} <= labelled


def test_semantic_structure(page: Page) -> None:
    tags = [t for t, _ in page.elements]
    for tag in ("header", "nav", "main", "section", "table", "footer"):
        assert tag in tags
    scopes = {a.get("scope") for t, a in page.elements if t == "th"}
    assert {"col", "row"} <= scopes
    assert next(a for t, a in page.elements if t == "html")["lang"] == "en-GB"


# --- units --------------------------------------------------------------------------------------------------


def test_emphasise_wraps_terms_only_around_escaped_text() -> None:
    got = emphasise("<b>Serious   harm</b> & more", ["serious harm", "more"])
    assert got == '&lt;b&gt;<strong class="kt">Serious   harm</strong>&lt;/b&gt; &amp; <strong class="kt">more</strong>'
    assert emphasise("<i>x</i>", []) == "&lt;i&gt;x&lt;/i&gt;"
    assert "kt" not in emphasise("harmless", ["harm"])  # word boundaries


def test_overlapping_and_cross_block_passages_render_once_each() -> None:
    text = "First <para> here.\nSecond para & more."
    doc = ExtractedDocument(
        doc_id="abcdef012345",
        name="x.txt",
        path="x.txt",
        sha256="0" * 64,
        source_format="text",
        text=text,
        blocks=[Block("paragraph", 0, 18), Block("paragraph", 19, len(text))],
        pages=1,
    )
    marks = [
        _Mark(6, 30, "ev-a", 0, [(0.9, "ind-A", "A", "Title <A>", 0)]),
        _Mark(0, 12, "ev-b", 1, [(0.8, "ind-B", "B", "Title B", 1)]),
    ]
    html = str(render_document_text(doc, marks))
    assert html.count('id="ev-a"') == 1 and html.count('id="ev-b"') == 1
    assert "&lt;para&gt;" in html and "&amp; more" in html and 'title="Title &lt;A&gt;"' in html
    visible = re.sub(r'<span class="tags".*?</a></span>', "", html)
    assert re.sub(r"<[^>]+>", "", visible).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == (
        "First <para> here.\nSecond para & more."
    )


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_every_text_colour_pair_meets_wcag_aa() -> None:
    pairs = [*STATUS_COLOURS.values(), *TEXT_COLOURS.values()]
    pairs += [("#1b1b1b", fill) for fill in AREA_FILLS]  # highlighted text and tags
    pairs += [("#1f2328", bg) for _, bg in STATUS_COLOURS.values()]  # indicator ids in matrix cells
    for fg, bg in pairs:
        assert contrast(fg, bg) >= 4.5, (fg, bg, round(contrast(fg, bg), 2))
    for ink, fill in zip(AREA_INKS, AREA_FILLS, strict=True):  # swatch outlines: non-text, 3:1
        assert contrast(ink, fill) >= 3.0, (ink, fill)


def test_stylesheet_uses_only_listed_text_colours(html: str) -> None:
    css = html.split("<style>")[1].split("</style>")[0]
    listed = {c for pair in [*STATUS_COLOURS.values(), *TEXT_COLOURS.values()] for c in pair}
    listed |= {"#1b1b1b", *AREA_FILLS, *AREA_INKS}
    for colour in re.findall(r"(?<![-\w])color:\s*(#[0-9a-f]{6})", css):
        assert colour in listed, colour


# --- writing and wiring -------------------------------------------------------------------------------------


def test_written_atomically_without_leftovers(built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path) -> None:
    result, report, catalogue, _ = built
    first = write_evidence_map(result, report, tmp_path, catalogue)
    second = write_evidence_map(result, report, tmp_path, catalogue)
    assert first == second == tmp_path / MAP_FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == [MAP_FILE]


def test_report_writer_hook_writes_map_and_highlighted_copies(
    built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path
) -> None:
    from pipeline.report import write_extras

    result, report, _, _ = built
    written = write_extras(result, report, tmp_path)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["evidence-map.html", "highlighted/kestrel-safeguarding.docx", "highlighted/riverside-policy.pdf"]
    html = (tmp_path / MAP_FILE).read_text(encoding="utf-8")
    assert 'href="highlighted/riverside-policy.pdf"' in html


def test_map_without_any_readable_document(built: tuple[Any, dict[str, Any], Any, Path]) -> None:
    import dataclasses

    result, report, catalogue, _ = built
    empty = dataclasses.replace(result, documents=[], per_document=[])
    html = render_evidence_map(empty, {**report, "documents": []}, catalogue)
    assert "No document could be read" in html


MODEL = Path(__file__).resolve().parent.parent / "models" / "matcher.joblib"


@pytest.mark.slow
@pytest.mark.skipif(not MODEL.exists(), reason="models/matcher.joblib not found: run `make train` to build it")
def test_real_pipeline_writes_a_map_for_a_sample_policy(tmp_path: Path) -> None:
    """End to end without Prefect: ingest a sample policy, score it with the trained matcher, write the outputs."""
    from pipeline.config import PROJECT_ROOT, Settings
    from pipeline.errors import ModelUnavailableError
    from pipeline.ingest import IngestedDocument, ingest
    from pipeline.report import RunInfo, build_report, utc_now, write_submission_reports
    from pipeline.screen import build_matcher, screen

    settings = Settings.from_env()
    sample = PROJECT_ROOT / "sample_policies" / "docs" / "hollybank-community-link-confidentiality.pdf"
    ingested = ingest(sample, settings)
    assert isinstance(ingested, IngestedDocument)
    try:
        matcher = build_matcher(settings)
    except ModelUnavailableError as exc:  # e.g. built by an older version of the tool
        pytest.skip(f"trained matcher not usable: {exc}")
    result = screen(matcher, "hollybank", [ingested])
    now = utc_now()
    report = build_report(result, matcher.catalogue, RunInfo("hollybank", str(sample), "model", "k", now, now))
    written = write_submission_reports(result, report, tmp_path)
    assert tmp_path / MAP_FILE in written
    parsed = Page()
    parsed.feed((tmp_path / MAP_FILE).read_text(encoding="utf-8"))
    ids = set(parsed.ids())
    assert all(h[1:] in ids for h in parsed.hrefs() if h.startswith("#"))
    assert len(parsed.cells) == len(matcher.catalogue.indicators)
