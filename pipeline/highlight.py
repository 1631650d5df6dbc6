"""Highlighted copies of the submitted originals: the evidence passages marked where the provider wrote them.

An assessor reads the policy as the provider wrote it, in their own PDF reader or in Word; these copies show
there what the evidence map shows in the browser. Two formats:

* PDF: one highlight annotation per evidence passage (one quad per line), drawn with pypdf (BSD licensed; AGPL
  libraries such as PyMuPDF are deliberately not used). Each annotation carries its own appearance stream, so
  readers that do not synthesise one (some mobile and older desktop readers) still show the highlight, and its
  note (``/Contents``, author ``/T``) names the indicators the passage evidences.
* DOCX: the runs holding each passage get a highlight colour and one Word comment names the indicators.

The input files are never modified: each copy is written to a temporary file beside its target and moved into
place with ``os.replace``, so a reader never sees half a file.

Coordinates: passage boxes come from ``pipeline.extract.pdf``, which measures from the top-left corner of the
page's visible area (the crop box clipped to the media box; identical to pdfplumber's convention whenever a page
has no separate crop box). PDF user space starts at the bottom, hence ``y = visible_top - top``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import atomic_path  # temp file + os.replace, permissions from the umask

if TYPE_CHECKING:
    from pipeline.screen import SubmissionResult

log = logging.getLogger(__name__)

HIGHLIGHT_DIR = "highlighted"
AUTHOR = "QPM Pre-screen"
INITIALS = "QPM"
NOTE_SUFFIX = "Pre-screen evidence, not a verdict: an assessor decides."

#: Highlight fills per area slot (area order in the catalogue), light enough that black text stays readable
#: (contrast >= 12:1 for #000 on each); the evidence map uses the same fills.
AREA_FILLS: tuple[str, ...] = (
    "#ffe97a",  # yellow
    "#ffc9c2",  # rose
    "#bcdcff",  # blue
    "#c8ecb9",  # green
    "#ddd0ff",  # lavender
    "#ffd4a8",  # orange
    "#b5ebe4",  # teal
    "#f5c6e6",  # pink
    "#dcdcdc",  # grey
    "#eadcb0",  # sand
)
# Word's highlight palette is fixed (WD_COLOR_INDEX); these are its light entries, in the same slot order.
_DOCX_HIGHLIGHTS: tuple[str, ...] = ("YELLOW", "PINK", "TURQUOISE", "BRIGHT_GREEN", "GRAY_25")


@dataclass(frozen=True)
class IndicatorRef:
    """An indicator a passage evidences, as named in notes and comments."""

    id: str
    title: str
    score: float


@dataclass(frozen=True)
class HighlightItem:
    """One evidence passage to mark in an original, with every indicator it evidences (best first).

    ``boxes`` are ``(page, x0, top, x1, bottom)``: 1-based page, points from the top-left of the visible page.
    """

    text: str
    start: int
    end: int
    boxes: tuple[tuple[int, float, float, float, float], ...]
    indicators: tuple[IndicatorRef, ...]
    area_slot: int = 0
    passage: int = -1

    @property
    def note(self) -> str:
        """The annotation note / comment text: which indicators this passage evidences."""
        lines = [f"{ref.id} {ref.title} (score {ref.score:.2f})" for ref in self.indicators]
        return "Evidence for:\n" + "\n".join(lines) + "\n" + NOTE_SUFFIX


@dataclass
class HighlightResult:
    """What one highlighted copy holds: how many passages were marked and which could not be located."""

    path: Path
    placed: int = 0
    missed: list[str] = field(default_factory=list)  # first words of passages not found in the original


# --- from report.json to highlight items --------------------------------------------------------------------


def items_from_report(report: Mapping[str, Any], doc_id: str, area_slots: Mapping[str, int]) -> list[HighlightItem]:
    """The passages of one document that evidence at least one indicator, merged across indicators.

    A passage that evidences three indicators becomes one item (one annotation, one comment) naming all three,
    ordered by score; its colour is the area of the best-scoring indicator.
    """
    grouped: dict[int, tuple[dict[str, Any], list[tuple[IndicatorRef, str]]]] = {}
    for ind in report.get("indicators", []):
        for ev in ind.get("evidence", []):
            if ev.get("doc_id") != doc_id:
                continue
            ref = IndicatorRef(str(ind["id"]), str(ind.get("title", "")), float(ev.get("score", 0.0)))
            entry = grouped.setdefault(int(ev["passage"]), (ev, []))
            entry[1].append((ref, str(ind.get("area", ""))))
    items = []
    for index, (ev, refs) in sorted(grouped.items(), key=lambda kv: (kv[1][0].get("start", 0), kv[0])):
        refs.sort(key=lambda r: (-r[0].score, r[0].id))
        boxes = tuple(
            (int(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4]))
            for b in ev.get("boxes") or ()
            if len(b) == 5
        )
        items.append(
            HighlightItem(
                text=str(ev.get("text", "")),
                start=int(ev.get("start", 0)),
                end=int(ev.get("end", 0)),
                boxes=boxes,
                indicators=tuple(r for r, _ in refs),
                area_slot=area_slots.get(refs[0][1], 0),
                passage=index,
            )
        )
    return items


# --- atomic output ------------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


# --- PDF ----------------------------------------------------------------------------------------------------


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    value = hex_colour.lstrip("#")
    return (int(value[0:2], 16) / 255, int(value[2:4], 16) / 255, int(value[4:6], 16) / 255)


def _visible_box(page: Any) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of what a reader shows: the crop box clipped to the media box."""
    media = page.mediabox
    crop = page.cropbox  # pypdf returns the media box when no crop box is set
    left = max(float(media.left), float(crop.left))
    bottom = max(float(media.bottom), float(crop.bottom))
    right = min(float(media.right), float(crop.right))
    top = min(float(media.top), float(crop.top))
    return left, bottom, right, top


def to_user_space(page: Any, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A ``(x0, top, x1, bottom)`` box measured from the visible page's top-left, as PDF ``(x0, y0, x1, y1)``."""
    left, _bottom, _right, top = _visible_box(page)
    x0, y_top, x1, y_bottom = box
    return left + x0, top - y_bottom, left + x1, top - y_top


def highlight_pdf(src_pdf: Path, evidence: Sequence[HighlightItem], out_pdf: Path) -> HighlightResult:
    """Copy ``src_pdf`` to ``out_pdf`` with a highlight annotation over each evidence passage's lines."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        FloatObject,
        NameObject,
        NumberObject,
        TextStringObject,
    )

    src_pdf, out_pdf = Path(src_pdf), Path(out_pdf)
    if _same_file(src_pdf, out_pdf):
        raise ValueError(f"refusing to overwrite the input {src_pdf}")
    reader = PdfReader(src_pdf)
    if reader.is_encrypted and not reader.decrypt(""):  # owner-password-only PDFs open with an empty password
        raise ValueError(f"{src_pdf.name} is encrypted")
    writer = PdfWriter(clone_from=reader)
    outcome = HighlightResult(out_pdf)
    stamp = datetime.now(UTC).strftime("D:%Y%m%d%H%M%SZ")
    prefix = hashlib.sha256(src_pdf.name.encode()).hexdigest()[:8]
    for item in evidence:
        by_page: dict[int, list[tuple[float, float, float, float]]] = {}
        for page_no, x0, top, x1, bottom in item.boxes:
            if 1 <= page_no <= len(writer.pages) and x1 > x0 and bottom > top:
                by_page.setdefault(page_no, []).append((x0, top, x1, bottom))
        if not by_page:
            outcome.missed.append(_first_words(item.text))
            continue
        outcome.placed += 1
        colour = _rgb(AREA_FILLS[item.area_slot % len(AREA_FILLS)])
        for page_no, boxes in sorted(by_page.items()):
            page = writer.pages[page_no - 1]
            rects = [to_user_space(page, b) for b in boxes]
            quads: list[float] = []
            for x0, y0, x1, y1 in rects:
                # Quad order as Acrobat writes it (upper-left, upper-right, lower-left, lower-right); readers
                # that follow the spec's counter-clockwise wording accept it too.
                quads.extend((x0, y1, x1, y1, x0, y0, x1, y0))
            rect = (
                min(r[0] for r in rects),
                min(r[1] for r in rects),
                max(r[2] for r in rects),
                max(r[3] for r in rects),
            )
            # Appearance: fill the line boxes with Multiply blending so the text underneath stays black.
            ops = [f"/GS0 gs {colour[0]:.3f} {colour[1]:.3f} {colour[2]:.3f} rg"]
            ops.extend(f"{x0:.2f} {y0:.2f} {x1 - x0:.2f} {y1 - y0:.2f} re f" for x0, y0, x1, y1 in rects)
            appearance = DecodedStreamObject()
            appearance.set_data("\n".join(ops).encode("ascii"))
            appearance.update(
                {
                    NameObject("/Type"): NameObject("/XObject"),
                    NameObject("/Subtype"): NameObject("/Form"),
                    NameObject("/BBox"): ArrayObject(FloatObject(v) for v in rect),
                    NameObject("/Resources"): DictionaryObject(
                        {
                            NameObject("/ExtGState"): DictionaryObject(
                                {
                                    NameObject("/GS0"): DictionaryObject(
                                        {
                                            NameObject("/Type"): NameObject("/ExtGState"),
                                            NameObject("/BM"): NameObject("/Multiply"),
                                        }
                                    )
                                }
                            )
                        }
                    ),
                }
            )
            annotation = DictionaryObject(
                {
                    NameObject("/Type"): NameObject("/Annot"),
                    NameObject("/Subtype"): NameObject("/Highlight"),
                    NameObject("/Rect"): ArrayObject(FloatObject(v) for v in rect),
                    NameObject("/QuadPoints"): ArrayObject(FloatObject(v) for v in quads),
                    NameObject("/C"): ArrayObject(FloatObject(v) for v in colour),
                    NameObject("/Contents"): TextStringObject(item.note),
                    NameObject("/T"): TextStringObject(AUTHOR),
                    NameObject("/Subj"): TextStringObject(", ".join(r.id for r in item.indicators)),
                    NameObject("/NM"): TextStringObject(f"qpm-{prefix}-{item.passage}-{page_no}"),
                    NameObject("/M"): TextStringObject(stamp),
                    NameObject("/F"): NumberObject(4),  # print the highlight with the page
                    NameObject("/AP"): DictionaryObject({NameObject("/N"): writer._add_object(appearance)}),
                }
            )
            writer.add_annotation(page_no - 1, annotation)
    with atomic_path(out_pdf) as tmp, open(tmp, "wb") as handle:
        writer.write(handle)
    return outcome


# --- DOCX ---------------------------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# Elements whose runs are shown text: hyperlinks, tracked insertions, smart tags, content controls, simple fields.
_RUN_CONTAINERS = {f"{_W}{t}" for t in ("hyperlink", "ins", "smartTag", "sdt", "sdtContent", "fldSimple", "customXml")}
_RUN_CONTAINERS.add(f"{_W}moveTo")
_SIMPLE_RUN_CHILDREN = {f"{_W}rPr", f"{_W}t"}
_WORD = re.compile(r"\w+")
# A generated list label at the start of a line of passage text ("3.1", "(a)", "iv.", "•"): Word computes these,
# so they are not in the runs.
_LABEL = re.compile(r"^\s*(?:[(\[]?(?:\d+(?:\.\d+)*|[A-Za-z]|[ivxlcdmIVXLCDM]+)[.)\]]?|[•●▪◦■□➢✓*\-–—])\s+")
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\ufeff]")


def _run_text(r: Any) -> str:
    """A run's shown text, one character per shown character (as the DOCX reader sees it)."""
    out: list[str] = []
    for child in r:
        tag = child.tag
        if tag == f"{_W}t":
            out.append(child.text or "")
        elif tag in (f"{_W}tab", f"{_W}ptab"):
            out.append("\t")
        elif tag in (f"{_W}br", f"{_W}cr"):
            out.append("\n")
        elif tag == f"{_W}noBreakHyphen":
            out.append("-")
    return _INVISIBLE.sub("", "".join(out))


def _paragraph_runs(container: Any, out: list[Any]) -> None:
    for child in container:
        if child.tag == f"{_W}r":
            out.append(child)
        elif child.tag in _RUN_CONTAINERS:
            _paragraph_runs(child, out)
        # w:del and w:moveFrom hold deleted text: never shown, never matched.


@dataclass
class _Para:
    p: Any
    runs: list[tuple[Any, int, int]]  # (w:r, start, end) in the paragraph's text
    text: str


@dataclass
class _Stream:
    """Every word of the body in reading order, with where it sits (paragraph, offsets)."""

    paras: list[_Para]
    words: list[tuple[int, int, int]] = field(default_factory=list)  # (paragraph index, start, end)
    keys: list[str] = field(default_factory=list)  # case-folded word texts

    @classmethod
    def build(cls, body: Any) -> _Stream:
        paras: list[_Para] = []
        for p in body.iter(f"{_W}p"):
            runs: list[Any] = []
            _paragraph_runs(p, runs)
            spans, pos, parts = [], 0, []
            for r in runs:
                text = _run_text(r)
                spans.append((r, pos, pos + len(text)))
                parts.append(text)
                pos += len(text)
            paras.append(_Para(p, spans, "".join(parts)))
        stream = cls(paras)
        for pi, para in enumerate(paras):
            for m in _WORD.finditer(para.text):
                stream.words.append((pi, m.start(), m.end()))
                stream.keys.append(m.group().casefold())
        return stream

    def find(self, words: list[str], after: int) -> int | None:
        """Index of the first word of ``words`` as a contiguous run in the stream, searching from ``after`` first."""
        if not words:
            return None
        n, first = len(words), words[0]
        for lo, hi in ((after, len(self.keys)), (0, after)):
            for i in range(lo, min(hi, len(self.keys) - n + 1)):
                if self.keys[i] == first and self.keys[i : i + n] == words:
                    return i
        return None


def _split_run(para: _Para, at: int) -> None:
    """Split the run containing paragraph offset ``at`` so a run boundary falls exactly there (simple runs only)."""
    for k, (r, start, end) in enumerate(para.runs):
        if start < at < end:
            if any(child.tag not in _SIMPLE_RUN_CHILDREN for child in r):
                return  # tabs, breaks, fields or drawings: keep the run whole (it is highlighted whole)
            text = _run_text(r)
            tail = copy.deepcopy(r)
            _set_run_text(r, text[: at - start])
            _set_run_text(tail, text[at - start :])
            r.addnext(tail)
            para.runs[k : k + 1] = [(r, start, at), (tail, at, end)]
            return


def _set_run_text(r: Any, text: str) -> None:
    from docx.oxml.ns import qn
    from docx.oxml.parser import OxmlElement

    for t in r.findall(qn("w:t")):
        r.remove(t)
    t = OxmlElement("w:t")
    t.text = text
    t.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
    r.append(t)


def _passage_lines(text: str) -> list[list[str]]:
    """Word lists of each line of a passage (blocks are joined by newlines), with list labels kept."""
    return [[w.casefold() for w in _WORD.findall(line)] for line in text.split("\n") if _WORD.search(line)]


def _label_free(line: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(_LABEL.sub("", line, count=1))]


def highlight_docx(src_docx: Path, evidence: Sequence[HighlightItem], out_docx: Path) -> HighlightResult:
    """Copy ``src_docx`` to ``out_docx`` with each evidence passage's runs highlighted and commented.

    Passages are found by their words (case-insensitive, ignoring punctuation, spacing and the list labels Word
    generates), line by line, in document order; runs are split at the passage's first and last character so
    the highlight covers the passage and nothing else.
    """
    import docx
    from docx.enum.text import WD_COLOR_INDEX
    from docx.text.run import Run

    src_docx, out_docx = Path(src_docx), Path(out_docx)
    if _same_file(src_docx, out_docx):
        raise ValueError(f"refusing to overwrite the input {src_docx}")
    document = docx.Document(str(src_docx))
    stream = _Stream.build(document.element.body)
    outcome = HighlightResult(out_docx)
    cursor = 0
    for item in sorted(evidence, key=lambda e: e.start):
        ranges: list[tuple[int, int, int]] = []  # (paragraph index, start, end) per located line
        for raw_line in (ln for ln in item.text.split("\n") if _WORD.search(ln)):
            found = None
            for words in (_passage_lines(raw_line)[0], _label_free(raw_line)):
                at = stream.find(words, cursor)
                if at is not None:
                    found = (at, at + len(words) - 1)
                    break
            if found is None:
                continue
            first, last = stream.words[found[0]], stream.words[found[1]]
            cursor = found[1] + 1
            # Words were matched; take in the punctuation that closes the line too ("delay." not "delay").
            tail_end = _extend_over(stream.paras[last[0]].text, last[2], _trailing_marks(raw_line))
            for pi in range(first[0], last[0] + 1):  # one range per paragraph (table cells are paragraphs)
                start = first[1] if pi == first[0] else 0
                end = tail_end if pi == last[0] else len(stream.paras[pi].text)
                ranges.append((pi, start, end))
        if not ranges:
            outcome.missed.append(_first_words(item.text))
            continue
        marked: list[Any] = []
        colour = getattr(WD_COLOR_INDEX, _DOCX_HIGHLIGHTS[item.area_slot % len(_DOCX_HIGHLIGHTS)])
        for pi, start, end in ranges:
            para = stream.paras[pi]
            _split_run(para, start)
            _split_run(para, end)
            for r, rs, re_ in para.runs:
                if rs < end and re_ > start:
                    run = Run(r, document._body)
                    run.font.highlight_color = colour
                    marked.append(run)
        if not marked:
            outcome.missed.append(_first_words(item.text))
            continue
        document.add_comment([marked[0], marked[-1]], text=item.note, author=AUTHOR, initials=INITIALS)
        outcome.placed += 1
    with atomic_path(out_docx) as tmp:
        document.save(str(tmp))
    return outcome


def _trailing_marks(line: str) -> str:
    """The punctuation after a line's last word, without spaces ("." for "... without delay.")."""
    match = re.search(r"\W*$", line.strip())
    return re.sub(r"\s", "", match.group()) if match else ""


def _extend_over(text: str, end: int, marks: str) -> int:
    """``end`` moved past ``marks`` where the paragraph has exactly those characters next (spaces between allowed)."""
    pos = end
    for ch in marks:
        probe = pos
        while probe < len(text) and text[probe] in " \t":
            probe += 1
        if probe < len(text) and text[probe] == ch:
            pos = probe + 1
        else:
            break
    return pos


def _first_words(text: str, n: int = 8) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")


# --- per submission -----------------------------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r'[\x00-\x1f<>:"/\\|?*]+')


def output_name(name: str, used: set[str]) -> str:
    """A file name for a highlighted copy: the original's, made safe on every file system and unique."""
    base = _UNSAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).strip(" .") or "document"
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    candidate, n = base, 2
    while candidate.casefold() in used:
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        n += 1
    used.add(candidate.casefold())
    return candidate


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CopyOutcome:
    """For one submitted document: the highlighted copy, or why there is none."""

    doc_id: str
    name: str
    result: HighlightResult | None = None
    reason: str | None = None


def write_highlighted_originals(
    result: SubmissionResult, report: Mapping[str, Any], out_dir: Path, area_slots: Mapping[str, int]
) -> list[CopyOutcome]:
    """Write ``highlighted/NAME.pdf|docx`` for each PDF and DOCX of the submission that has evidence.

    A copy that cannot be made (the source is gone or changed since it was screened, an odd file) is reported
    with its reason and never stops the other outputs: the report and the map matter more than one copy.
    """
    outcomes: list[CopyOutcome] = []
    used: set[str] = set()
    for ingested in result.documents:
        doc = ingested.document
        outcome = CopyOutcome(doc.doc_id, doc.name)
        outcomes.append(outcome)
        suffix = Path(doc.name).suffix.lower()
        writer: Callable[[Path, Sequence[HighlightItem], Path], HighlightResult]
        if doc.source_format == "pdf" and suffix == ".pdf":
            writer = highlight_pdf
        elif doc.source_format == "docx" and suffix == ".docx":
            writer = highlight_docx
        else:
            outcome.reason = "highlighted copies are made for .pdf and .docx files"
            continue
        items = items_from_report(report, doc.doc_id, area_slots)
        if not items:
            outcome.reason = "no evidence passage in this document"
            continue
        src = Path(doc.path)
        try:
            if not src.is_file() or _sha256(src) != doc.sha256:
                outcome.reason = "the original file is no longer where it was screened (or has changed)"
                continue
            outcome.result = writer(src, items, out_dir / HIGHLIGHT_DIR / output_name(doc.name, used))
        except Exception as exc:  # one odd file must not lose the submission's other outputs
            log.warning("no highlighted copy of %s: %s", doc.name, exc)
            outcome.reason = f"the highlighted copy could not be made ({type(exc).__name__})"
    return outcomes
