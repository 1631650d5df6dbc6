"""The evidence map: one self-contained HTML page per submission, the first thing an assessor opens.

It shows, for a screened submission: the verdict line and document warnings; a coverage matrix (areas x
indicators, status by colour *and* text); per indicator what the policy must say, its elements, the evidence
passages with key terms emphasised and, when not met, what to add; and per document the full text with the
evidence highlighted and linked both ways to the indicators.

Safety is the first design constraint: every string that comes from a provider (document text, file names,
headings, even error messages quoting them) reaches the page only through Jinja2 autoescaping or
``markupsafe.escape``. Markup is only ever added *around* escaped text, no ``href`` is built from document text
(links point at ids this module makes from indicator ids and hex document ids), and a Content-Security-Policy
``<meta>`` forbids every script except the page's own filter script, pinned by its sha256 hash. A policy that
contains ``<script>`` therefore shows it as text and runs nothing, even if escaping were ever bypassed.

The page needs no network: inline CSS, system fonts, one small inline script, no images. Without JavaScript the
filters stay hidden and everything is shown; printing gives a clean desk-review record.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup, escape

from pipeline.catalogue import Catalogue
from pipeline.document import Block, ExtractedDocument, Passage
from pipeline.highlight import AREA_FILLS, HIGHLIGHT_DIR, CopyOutcome, write_highlighted_originals

if TYPE_CHECKING:
    from pipeline.screen import SubmissionResult

MAP_FILE = "evidence-map.html"
TEMPLATE = "evidence_map.html.j2"

#: Status presentation: an icon and a word, so status never depends on colour alone.
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "met": ("\u2713", "Met"),
    "partial": ("\u25d0", "Partial"),
    "missing": ("\u2715", "Missing"),
}
LEVEL_LABELS = {"essential": "Essential", "conditional": "Conditional", "good_practice": "Good practice"}

#: (text colour, background) pairs used for status; tests check each reaches WCAG AA (4.5:1).
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "met": ("#12592f", "#dcf1e2"),
    "partial": ("#6e4400", "#ffefc7"),
    "missing": ("#9b1c14", "#fde2de"),
}
#: Darker companions of ``AREA_FILLS`` for borders and swatch outlines (decoration; text on fills is #1b1b1b).
AREA_INKS: tuple[str, ...] = (
    "#8a6d00",
    "#a4262c",
    "#1f5fa0",
    "#2e6b1f",
    "#5b3fa0",
    "#9a4a00",
    "#11675f",
    "#8b2a6b",
    "#4a4a4a",
    "#6b5520",
)
#: Every other text/background pair the stylesheet uses, for the contrast test.
TEXT_COLOURS: dict[str, tuple[str, str]] = {
    "body": ("#1f2328", "#ffffff"),
    "body-on-page": ("#1f2328", "#f4f5f7"),
    "muted": ("#555d66", "#ffffff"),
    "muted-on-page": ("#555d66", "#f4f5f7"),
    "link": ("#0a57a4", "#ffffff"),
    "header": ("#ffffff", "#1d3557"),
    "header-muted": ("#d6deea", "#1d3557"),
    "notice": ("#1f2328", "#eef3fa"),
    "add": ("#1f2328", "#fff8e6"),
    "highlight-text": ("#1b1b1b", "#dcdcdc"),
}

_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")
_HEX_ID = re.compile(r"[0-9a-f]{6,64}")


# --- static assets: template, stylesheet and script (package data) ------------------------------------------


def _asset(name: str) -> str:
    return (resources.files("pipeline") / "templates" / name).read_text(encoding="utf-8")


@cache
def _environment() -> Environment:
    # autoescape=True unconditionally: the template's name does not end in .html, and a select_autoescape()
    # keyed on extensions would silently turn escaping off.
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["status_labels"] = STATUS_LABELS
    return env


@cache
def _template() -> Template:
    # Compiled once per process: compiling took longer than rendering a 40-page submission's map.
    return _environment().from_string(_asset(TEMPLATE))


@cache
def _script() -> str:
    return _asset("evidence_map.js").strip()


def script_hash() -> str:
    """The CSP source for the inline script: ``'sha256-...'`` of its exact text."""
    digest = hashlib.sha256(_script().encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _stylesheet() -> str:
    palette = [":root {"]
    for slot, (fill, ink) in enumerate(zip(AREA_FILLS, AREA_INKS, strict=True)):
        palette.append(f"  --fill-{slot}: {fill}; --ink-{slot}: {ink};")
    for status, (fg, bg) in STATUS_COLOURS.items():
        palette.append(f"  --{status}-fg: {fg}; --{status}-bg: {bg};")
    palette.append("}")
    slots = [f".s{slot} {{ --fill: var(--fill-{slot}); --ink: var(--ink-{slot}); }}" for slot in range(len(AREA_FILLS))]
    return "\n".join([*palette, *slots, _asset("evidence_map.css").strip()])


# --- view model ---------------------------------------------------------------------------------------------


@dataclass
class EvidenceView:
    """One evidence passage as listed under its indicator."""

    doc_name: str
    reference: str  # "p.4 · 3.2 Reporting concerns"
    score: float
    text: Markup  # escaped, key terms wrapped in <strong>
    context: str  # lead-in the passage needs to be read (plain text; escaped by the template)
    anchor: str | None  # id of the highlight in the document text, when the document is in the map


@dataclass
class IndicatorView:
    """One indicator's card (and its matrix cell)."""

    id: str
    anchor: str
    area: str
    area_name: str
    slot: int
    title: str
    level: str
    level_label: str
    condition: str | None
    status: str
    score: float
    must_say: str
    elements: list[tuple[str, bool]]
    evidence: list[EvidenceView]
    what_to_add: str | None
    doc_keys: str  # space-separated document keys, for the document filter
    per_document: list[tuple[str, str, float]]  # (document name, status, score)

    @property
    def icon(self) -> str:
        """The status icon."""
        return STATUS_LABELS[self.status][0]

    @property
    def label(self) -> str:
        """The status word."""
        return STATUS_LABELS[self.status][1]


@dataclass
class AreaView:
    """An area: its row in the matrix and its group of indicator cards."""

    code: str
    name: str
    slot: int
    anchor: str
    indicators: list[IndicatorView] = field(default_factory=list)

    def count(self, status: str) -> int:
        """How many of the area's indicators have ``status``."""
        return sum(1 for i in self.indicators if i.status == status)


@dataclass
class WarningView:
    """A line in the warnings panel."""

    kind: str  # Not read | Scanned | Review date | Language | Skipped | Note
    document: str
    message: str


@dataclass
class DocumentView:
    """A document section: facts, highlighted copy and the full text with evidence marked."""

    key: str
    name: str
    format: str
    title: str
    detected_type: str
    pages: int
    words: int
    review_date: str | None
    out_of_date: bool
    language: str
    warnings: list[str]
    highlights: int
    body: Markup
    copy_href: str | None = None
    copy_note: str | None = None


@dataclass
class _Mark:
    """An evidence passage to highlight in a document's text."""

    start: int
    end: int
    anchor: str
    slot: int
    refs: list[tuple[float, str, str, str, int]]  # (score, indicator anchor, id, title, area slot)


def safe_id(text: str) -> str:
    """An id fragment made only of letters, digits, ``-`` and ``_`` (never document text)."""
    return _SAFE_ID.sub("-", text).strip("-") or "x"


def emphasise(text: str, terms: Sequence[str]) -> Markup:
    """``text`` escaped, with each key term occurrence wrapped in ``<strong class="kt">``.

    Terms are matched case-insensitively on word boundaries, longest first, with any run of spaces between
    their words; the tags are only ever put around already-escaped slices.
    """
    terms = [t for t in terms if t.strip()]
    if not terms:
        return escape(text)
    alternatives = "|".join(re.escape(t.strip()).replace(r"\ ", r"\s+") for t in sorted(terms, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    parts: list[Markup] = []
    pos = 0
    for m in pattern.finditer(text):
        parts.append(escape(text[pos : m.start()]))
        parts.append(Markup('<strong class="kt">{}</strong>').format(m.group()))
        pos = m.end()
    parts.append(escape(text[pos:]))
    return Markup("").join(parts)


def _classify_warning(message: str) -> str:
    low = message.casefold()
    if "scanned" in low or "no text" in low or "ocr" in low:
        return "Scanned"
    if "review" in low or "out of date" in low or "approval" in low:
        return "Review date"
    if "welsh" in low or "language" in low or "english" in low:
        return "Language"
    return "Note"


def _format_when(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    zone = when.tzname() or ""
    return when.strftime("%-d %B %Y, %H:%M") + (f" {zone}" if zone else "")


def _page_ref(pages: Sequence[int]) -> str:
    if not pages:
        return ""
    first, last = min(pages), max(pages)
    return f"p.{first}" if first == last else f"pp.{first}\u2013{last}"


# --- document text ------------------------------------------------------------------------------------------

_BLOCK_CLASS = {"heading": "b-h", "paragraph": "b-p", "list_item": "b-li", "table_row": "b-tr"}


def _blocks_of(doc: ExtractedDocument) -> list[Block]:
    """The document's blocks in order; for a document without any, one paragraph per non-empty line."""
    if doc.blocks:
        return sorted(doc.blocks, key=lambda b: b.start)
    blocks, pos = [], 0
    for line in doc.text.split("\n"):
        if line.strip():
            blocks.append(Block("paragraph", pos, pos + len(line)))
        pos += len(line) + 1
    return blocks


def _tags(mark: _Mark) -> Markup:
    links = Markup("").join(
        Markup('<a class="tag s{}" href="#{}" title="{}">{}</a>').format(slot, anchor, title, ind_id)
        for _score, anchor, ind_id, title, slot in mark.refs
    )
    return Markup('<span class="tags" id="{}"><span class="sr">Evidence for </span>{}</span>').format(
        mark.anchor, links
    )


def render_document_text(doc: ExtractedDocument, marks: Sequence[_Mark]) -> Markup:
    """The document's text as HTML blocks, evidence passages wrapped in ``<mark>`` with indicator tags.

    Passages may cross blocks and may overlap each other: each block is cut at every passage boundary inside
    it, and each piece is marked with the innermost passage covering it. A passage's tags (and its anchor id)
    go where its first marked piece starts, so every anchor exists exactly once.
    """
    out: list[Markup] = []
    placed: set[str] = set()
    page: int | None = None
    ordered = sorted(marks, key=lambda m: (m.start, -m.end))
    for block in _blocks_of(doc):
        if doc.source_format == "pdf":
            block_page = block.page or doc.page_at(block.start)
            if block_page and block_page != page:
                page = block_page
                out.append(Markup('<p class="pg" aria-hidden="true">Page {}</p>').format(page))
        inside = [m for m in ordered if m.start < block.end and m.end > block.start]
        cuts = sorted(
            {block.start, block.end} | {x for m in inside for x in (m.start, m.end) if block.start < x < block.end}
        )
        pieces: list[Markup] = []
        for a, z in pairwise(cuts):
            covering = [m for m in inside if m.start <= a and m.end >= z]
            for m in covering:
                if m.anchor not in placed:
                    placed.add(m.anchor)
                    pieces.append(_tags(m))
            text = escape(doc.text[a:z])
            if covering:
                inner = min(covering, key=lambda m: m.end - m.start)
                pieces.append(
                    Markup('<mark class="ev s{}" data-ev="{}">{}</mark>').format(inner.slot, inner.anchor, text)
                )
            else:
                pieces.append(text)
        depth = min(block.level, 4) if block.kind == "list_item" else 0
        classes = _BLOCK_CLASS.get(block.kind, "b-p") + (f" d{depth}" if depth else "")
        out.append(Markup('<p class="{}">{}</p>').format(classes, Markup("").join(pieces)))
    missing = [m for m in ordered if m.anchor not in placed]
    if missing:  # offsets outside every block (should not happen): keep the anchors so links still resolve
        tags = Markup(" ").join(_tags(m) for m in missing)
        out.append(Markup('<p class="b-p unplaced">Evidence not located in the text above: {}</p>').format(tags))
    return Markup("\n").join(out)


# --- building the page --------------------------------------------------------------------------------------


def _area_table(report: Mapping[str, Any], catalogue: Catalogue | None) -> dict[str, str]:
    areas: dict[str, str] = dict(catalogue.areas) if catalogue else {}
    for ind in report.get("indicators", []):
        areas.setdefault(str(ind["area"]), str(ind.get("area_name") or ind["area"]))
    return areas


def area_slots(report: Mapping[str, Any], catalogue: Catalogue | None) -> dict[str, int]:
    """Each area's colour slot: its position in the catalogue, so colours are stable across submissions."""
    return {code: i % len(AREA_FILLS) for i, code in enumerate(_area_table(report, catalogue))}


def _document_keys(result: SubmissionResult) -> dict[str, str]:
    keys: dict[str, str] = {}
    used: set[str] = set()
    for n, ingested in enumerate(result.documents, start=1):
        doc_id = ingested.document.doc_id
        key = f"doc-{doc_id}" if _HEX_ID.fullmatch(doc_id) else f"doc-n{n}"
        while key in used:
            key += "x"
        used.add(key)
        keys[doc_id] = key
    return keys


def build_context(
    result: SubmissionResult,
    report: Mapping[str, Any],
    catalogue: Catalogue | None,
    copies: Sequence[CopyOutcome] = (),
) -> dict[str, Any]:
    """Everything the template shows, computed here so the template stays declarative."""
    areas = _area_table(report, catalogue)
    slots = area_slots(report, catalogue)
    doc_keys = _document_keys(result)
    passages: dict[tuple[str, int], Passage] = {
        (d.document.doc_id, p.index): p for d in result.documents for p in d.passages
    }
    known_terms: dict[str, tuple[str, ...]] = {i.id: i.key_terms for i in catalogue.indicators} if catalogue else {}

    used_anchors: set[str] = set()
    area_views = {code: AreaView(code, name, slots[code], f"area-{safe_id(code)}") for code, name in areas.items()}
    marks: dict[str, dict[int, _Mark]] = {}
    indicators: list[IndicatorView] = []
    for ind in report.get("indicators", []):
        anchor = f"ind-{safe_id(str(ind['id']))}"
        while anchor in used_anchors:
            anchor += "x"
        used_anchors.add(anchor)
        area = str(ind["area"])
        slot = slots.get(area, 0)
        evidence: list[EvidenceView] = []
        for ev in ind.get("evidence", []):
            doc_id, index = str(ev.get("doc_id", "")), int(ev.get("passage", -1))
            key = doc_keys.get(doc_id)
            ev_anchor = f"ev-{key}-{index}" if key else None
            if key and ev_anchor:
                mark = marks.setdefault(key, {}).get(index)
                if mark is None:
                    mark = _Mark(int(ev["start"]), int(ev["end"]), ev_anchor, slot, [])
                    marks[key][index] = mark
                mark.refs.append((float(ev.get("score", 0.0)), anchor, str(ind["id"]), str(ind.get("title", "")), slot))
            passage = passages.get((doc_id, index))
            section = ev.get("section") or []
            ref = " \u00b7 ".join(x for x in (_page_ref(ev.get("pages") or []), section[-1] if section else "") if x)
            evidence.append(
                EvidenceView(
                    doc_name=str(ev.get("document", "")),
                    reference=ref,
                    score=float(ev.get("score", 0.0)),
                    text=emphasise(str(ev.get("text", "")), known_terms.get(str(ind["id"]), ())),
                    context=passage.context if passage else "",
                    anchor=ev_anchor,
                )
            )
        view = IndicatorView(
            id=str(ind["id"]),
            anchor=anchor,
            area=area,
            area_name=areas.get(area, area),
            slot=slot,
            title=str(ind.get("title", "")),
            level=str(ind.get("level", "")),
            level_label=LEVEL_LABELS.get(str(ind.get("level", "")), str(ind.get("level", ""))),
            condition=ind.get("condition"),
            status=str(ind["status"]) if ind.get("status") in STATUS_LABELS else "missing",
            score=float(ind.get("score", 0.0)),
            must_say=str(ind.get("must_say", "")),
            elements=[(str(e["text"]), bool(e["evidenced"])) for e in ind.get("elements", [])],
            evidence=evidence,
            what_to_add=ind.get("what_to_add") if ind.get("status") != "met" else None,
            doc_keys=" ".join(
                sorted({doc_keys[str(e["doc_id"])] for e in ind.get("evidence", []) if e.get("doc_id") in doc_keys})
            ),
            per_document=[
                (str(p["document"]), str(p["status"]), float(p["score"]))
                for p in ind.get("per_document", [])
                if p.get("status") in STATUS_LABELS
            ],
        )
        indicators.append(view)
        area_views.setdefault(area, AreaView(area, view.area_name, slot, f"area-{safe_id(area)}")).indicators.append(
            view
        )

    # Tags best-first; the indicator whose evidence scores highest gives the highlight its colour.
    for by_index in marks.values():
        for mark in by_index.values():
            mark.refs.sort(key=lambda r: (-r[0], r[2]))
            mark.slot = mark.refs[0][4]

    copy_by_doc = {c.doc_id: c for c in copies}
    documents: list[DocumentView] = []
    for ingested in result.documents:
        doc = ingested.document
        key = doc_keys[doc.doc_id]
        doc_marks = list(marks.get(key, {}).values())
        doc_view = DocumentView(
            key=key,
            name=doc.name,
            format=doc.source_format,
            title=doc.metadata.title,
            detected_type=doc.metadata.policy_type.replace("_", " "),
            pages=doc.pages,
            words=doc.metadata.word_count,
            review_date=doc.metadata.review_date,
            out_of_date=doc.metadata.out_of_date,
            language=doc.metadata.language,
            warnings=list(doc.warnings),
            highlights=len(doc_marks),
            body=render_document_text(doc, doc_marks),
        )
        outcome = copy_by_doc.get(doc.doc_id)
        if outcome and outcome.result:
            # The copy's file name is ours (made file-system safe by output_name) and fully percent-encoded,
            # so the link can only ever be a relative path inside highlighted/.
            doc_view.copy_href = f"{HIGHLIGHT_DIR}/{quote(outcome.result.path.name, safe='')}"
            if outcome.result.missed:
                doc_view.copy_note = f"{len(outcome.result.missed)} passage(s) could not be located in the original"
        elif outcome and outcome.reason:
            doc_view.copy_note = outcome.reason
        documents.append(doc_view)

    warnings: list[WarningView] = [
        WarningView(
            "Scanned, not read" if e.get("code") == "scanned" else "Not read",
            str(e.get("name", "")),
            str(e.get("message", "")),
        )
        for e in report.get("errors", [])
    ]
    for d in report.get("documents", []):
        messages = [str(w) for w in d.get("warnings", [])]
        warnings.extend(WarningView(_classify_warning(w), str(d["name"]), w) for w in messages)
        if d.get("out_of_date") and not any(_classify_warning(w) == "Review date" for w in messages):
            warnings.append(
                WarningView("Review date", str(d["name"]), f"review date {d.get('review_date')} has passed")
            )
        if d.get("language", "en") != "en" and not any(_classify_warning(w) == "Language" for w in messages):
            warnings.append(
                WarningView(
                    "Language", str(d["name"]), f"the text does not look English (detected: {d.get('language')})"
                )
            )
    warnings.extend(
        WarningView("Skipped", str(s.get("name", "")), str(s.get("reason", ""))) for s in report.get("skipped", [])
    )

    summary = report.get("summary", {})
    counts = {s: sum(1 for i in indicators if i.status == s) for s in STATUS_LABELS}
    if summary.get("essential_missing"):
        tone = "bad"
    elif summary.get("essential_partial") or counts["missing"]:
        tone = "warn"
    else:
        tone = "ok"
    catalogue_info = report.get("catalogue", {})
    return {
        "submission": str(report.get("submission", {}).get("name") or result.name),
        "when": _format_when(report.get("finished_at")),
        "tool": report.get("tool", {}),
        "catalogue": catalogue_info,
        "catalogue_notice": catalogue_info.get("notice") or (catalogue.notice if catalogue else ""),
        "model": report.get("model", {}).get("id", ""),
        "verdict": summary.get("verdict", ""),
        "tone": tone,
        "counts": counts,
        "essential_missing": [i for i in indicators if i.level == "essential" and i.status == "missing"],
        "warnings": warnings,
        "areas": [a for a in area_views.values() if a.indicators],
        "indicators": indicators,
        "documents": documents,
        "levels": [(k, v) for k, v in LEVEL_LABELS.items() if any(i.level == k for i in indicators)],
        "legend": [(a.slot, a.code, a.name) for a in area_views.values() if a.indicators],
    }


def render_evidence_map(
    result: SubmissionResult,
    report: Mapping[str, Any],
    catalogue: Catalogue | None = None,
    copies: Sequence[CopyOutcome] = (),
) -> str:
    """The evidence map's HTML."""
    context = build_context(result, report, catalogue, copies)
    template = _template()
    # The stylesheet and script are our own package files, never input: marked safe so they are not escaped.
    return template.render(
        **context,
        stylesheet=Markup(_stylesheet()),
        script=Markup(_script()),
        script_hash=script_hash(),
    )


def write_evidence_map(
    result: SubmissionResult,
    report: Mapping[str, Any],
    out_dir: Path,
    catalogue: Catalogue | None = None,
    *,
    copies: Sequence[CopyOutcome] = (),
) -> Path:
    """Write ``evidence-map.html`` into ``out_dir`` atomically and return its path.

    ``catalogue`` supplies the key terms to emphasise (the report does not carry them); without it the map is
    complete but no term is emphasised. ``copies`` are the highlighted originals to link to.
    """
    from pipeline.atomic import write_text_atomic

    return write_text_atomic(Path(out_dir) / MAP_FILE, render_evidence_map(result, report, catalogue, copies))


def write_evidence_outputs(result: SubmissionResult, report: dict[str, Any], out_dir: Path) -> list[Path]:
    """The report writer's hook (``pipeline.report.OPTIONAL_WRITERS``): highlighted originals, then the map."""
    catalogue = result.catalogue
    copies = write_highlighted_originals(result, report, Path(out_dir), area_slots(report, catalogue))
    written = [c.result.path for c in copies if c.result is not None]
    written.append(write_evidence_map(result, report, Path(out_dir), catalogue, copies=copies))
    return written
