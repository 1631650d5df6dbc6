"""Read a PDF's text layer with PDFium: reading-order text, blocks, and a box for every word.

Why PDFium (pypdfium2) and not pdfplumber: screening must run at 50+ pages a second on two cores, and PDFium
gives characters, boxes and font sizes in about a millisecond a page where pdfplumber takes tens. Layout analysis
is ours and deliberately simple, tuned for what advocacy providers send (Word documents saved as PDF):

1. PDFium lists a page's characters in content order and marks line ends with generated CR/LF; words are runs
   of non-space characters. A word's box runs from its first to its last character's loose box and is one font
   size tall, ending at the descender, which is what pdfplumber reports. Only two boxes are asked per word and
   two font samples per line: per-character calls through ctypes would dominate the time.
2. Lines near the top or bottom of the page whose text (digits ignored) recurs on most pages are running
   headers and footers: they are removed from the text and reported in ``headers``.
3. Lines are grouped into blocks: a new block starts at a larger vertical gap than the body line spacing, at a
   list marker ("3.1", "(a)", "•"), at a change of font size, or at a heading. Headings are lines in a larger
   font, short bold or all-capitals lines, short numbered lines not in a run of numbered items, or short
   capitalised lines in the body style standing alone between gaps (not table rows or small print). A line's
   size and weight are those of its text, not of a list number set in another font.
   Hard-wrapped lines are rejoined with a space; a paragraph that runs over a page break stays one block.

Pages are laid out in the direction their text runs (``_text_turn``), so that a landscape table on a page turned
by ``/Rotate`` reads line by line; word boxes are turned back into the unrotated page, where highlights are drawn.
Before PDFium sees the file, each page's drawing instructions are measured without being held in memory
(``pipeline.extract.pdf_content``): PDFium inflates and parses them whole, so a decompression bomb would exhaust
memory.

All PDFium calls hold one process-wide lock: PDFium is not thread-safe, and a caller running documents on
threads would otherwise crash the interpreter rather than get an error.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from pipeline.config import Settings
from pipeline.document import Block, BlockKind, Box, TextSpan
from pipeline.errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    ScannedDocumentError,
)
from pipeline.extract.base import ReaderOutput, TextBuilder
from pipeline.extract.pdf_content import check_content_size

_PDFIUM_LOCK = threading.Lock()

# Word's bullets arrive from Symbol/Wingdings fonts as private-use code points; ligatures are split so that
# "ﬁle" matches "file"; a non-breaking space is a space. Mapping to None deletes the character.
_CHAR_MAP: Final[dict[int, str | None]] = {
    0xF0B7: "•",  # Symbol bullet
    0xF0A7: "▪",  # Wingdings square
    0xF0FC: "✓",  # Wingdings tick
    0xF0D8: "➢",  # Wingdings arrowhead
    0xF076: "❖",  # Wingdings diamond
    0xF06F: "□",  # Wingdings box
    0xF0A8: "□",
    0xF0E0: "➢",
    0xF02D: "-",
    0xFB00: "ff",
    0xFB01: "fi",
    0xFB02: "fl",
    0xFB03: "ffi",
    0xFB04: "ffl",
    0xFB05: "st",
    0xFB06: "st",
    0x00AD: None,  # soft hyphen: only meaningful at a line end, handled there
    0x0002: None,  # PDFium's marker for a hyphen it believes is a soft line-end hyphen
    0xFFFE: None,
    0xFEFF: None,
    0x200B: None,
}
_SOFT_HYPHENS: Final = ("\u00ad", "\x02")
# Words are runs of anything but whitespace and control characters (PDFium's \x02 stays inside the word).
_WORD_RE: Final = re.compile(r"[^\s\x00\x01\x03-\x1f\x7f]+")
_BULLETS: Final = "•●○◦▪■□➢►▶✓✔❖"
_MARKER_RE: Final = re.compile(
    rf"""^(?:
        (?P<bullet>[{_BULLETS}]|[-–*·o](?=\s))                   # bullets; "o" is Word's second-level bullet
      | (?P<num>\d{{1,3}}(?:\.\d{{1,3}})*\.?)(?=\s+[A-Z(\["'‘“])  # 3  3.  3.1  3.1.2 (before a capital)
      | (?P<paren>\(?(?:[a-zA-Z]|[ivxlcIVXLC]{{1,5}}|\d{{1,3}})\))(?=\s)  # (a)  a)  (iv)  1)
      | (?P<letter>[a-zA-Z]\.)(?=\s)                              # a.  B.
    )""",
    re.VERBOSE,
)
# A word that is nothing but a list marker: "3.", "3.1", "(a)", "iv)", "•".
_LONE_MARKER_RE: Final = re.compile(
    rf"^(?:[{_BULLETS}]|\d{{1,3}}(?:\.\d{{1,3}})*\.?|\(?(?:[a-zA-Z]|[ivxlcIVXLC]{{1,5}})\)|[a-zA-Z]\.)$"
)
_PAGE_NUMBER_RE: Final = re.compile(r"^[-–—\s]*(?:page\s*)?#+(?:\s*(?:of|/)\s*#+)?[-–—\s]*$")
_PAGE_LABEL_RE: Final = re.compile(r"\bpage\s*#(?:\s*(?:of|/)\s*#)?$")
_TERMINAL: Final = (".", "!", "?", ":", ";")
_BOLD_NAME_RE: Final = re.compile(r"bold|black|heavy|semibold|demibold|,b$|-b$", re.IGNORECASE)
_FORCE_BOLD_FLAG: Final = 1 << 18
# Running headers live in the top or bottom band of the page.
_HEADER_BAND: Final = 0.13
_OCR_SECONDS_PER_PAGE: Final = 10.0
# Characters sampled per page to find which way its text runs (see _text_turn).
_ANGLE_SAMPLES: Final = 16


@dataclass(slots=True)
class _Word:
    text: str
    x0: float
    top: float
    x1: float
    bottom: float
    soft_hyphen: bool = False  # the word ended in a soft hyphen that was removed


@dataclass(slots=True)
class _Line:
    page: int  # 1-based
    words: list[_Word]
    size: float
    bold: bool
    text: str = ""
    x0: float = 0.0
    top: float = 0.0
    x1: float = 0.0
    bottom: float = 0.0
    marker: str = ""  # list marker (bullet or number) at the start of the line
    marker_kind: str = ""  # bullet | num | paren | letter
    heading: bool = False

    def finish(self) -> None:
        """Compute the line's text and extent from its words."""
        self.text = " ".join(w.text for w in self.words)
        self.x0 = min(w.x0 for w in self.words)
        self.x1 = max(w.x1 for w in self.words)
        self.top = min(w.top for w in self.words)
        self.bottom = max(w.bottom for w in self.words)


@dataclass
class _Page:
    """One page's lines, measured in the page's reading frame (see ``_text_turn``)."""

    number: int
    height: float  # of the reading frame: the unrotated width when the frame is turned by 90 or 270 degrees
    lines: list[_Line] = field(default_factory=list)
    chars: int = 0
    garbled: int = 0
    objects: int = -1  # drawn objects (images, paths), counted only on pages without text
    turn: int = 0  # degrees clockwise from the unrotated page to the reading frame: 0, 90, 180 or 270
    size: tuple[float, float] = (0.0, 0.0)  # the unrotated visible page's width and height


@dataclass
class _Layout:
    """Document-wide measures the block rules compare against."""

    body_size: float
    body_bold: bool
    pitch: float  # usual baseline-to-baseline distance of body lines
    left: float
    right: float
    heading_sizes: list[float]
    list_indents: list[float]

    @property
    def paragraph_gap(self) -> float:
        """A step between baselines larger than this is a blank line's worth of space."""
        return self.pitch * 1.3 + 1.0


def read_pdf(data: bytes, settings: Settings) -> ReaderOutput:
    """Read a PDF into text, blocks, page starts and word boxes.

    Password-protected files are opened with an empty password when that is all they need. A PDF without any
    text layer is passed through ``ocrmypdf`` when it is installed.

    Pages are read in the direction their text runs, whatever the page's ``/Rotate``: a landscape table turned
    on a portrait page reads line by line. Word boxes stay in the unrotated page's coordinates (see ``Box``).

    Raises:
        EncryptedDocumentError: a password is needed to open the file.
        CorruptDocumentError: the file is truncated or not a PDF PDFium can parse.
        DocumentTooLargeError: more pages than ``settings.max_pages``, or pages that inflate into more drawing
            instructions than can be read safely (a decompression bomb).
        ScannedDocumentError: no text layer on any page and no OCR available (or OCR failed).
        EmptyDocumentError: the PDF has no pages, or every page is blank.
    """
    return _read(data, settings, allow_ocr=True)


def _read(data: bytes, settings: Settings, *, allow_ocr: bool) -> ReaderOutput:
    # A file cut short in transfer usually loses its trailer; PDFium can rebuild the cross-reference table and
    # open such a file, but then silently misses pages or objects, so truncation decides how failures read.
    truncated = b"%%EOF" not in data[-4096:]
    # Before PDFium parses any page (pure Python: no need to hold PDFium's lock).
    surveyed_pages = check_content_size(data, settings)
    warnings: list[str] = []
    with _PDFIUM_LOCK:
        pdf = _open(data, truncated, surveyed_pages)
        try:
            declared = len(pdf)
            # In a truncated file the missing pages are lost content, not a miscount: they stay unreadable.
            page_count = declared if truncated else _pages_held(pdf, declared, settings.max_pages)
            if page_count > settings.max_pages:
                shown = page_count if page_count == declared else f"more than {settings.max_pages}"
                raise DocumentTooLargeError(
                    f"the PDF has {shown} pages, over the limit of {settings.max_pages}: split it into "
                    "separate policies or raise QPM_MAX_PAGES"
                )
            if page_count == 0:
                # A page tree naming pages that are not in the file is broken, not empty (that is /Count 0).
                raise CorruptDocumentError(
                    f"could not be read: it is damaged (its page list names {declared} page(s) but none is in the "
                    "file); upload the file again or export it from the original document"
                )
            if page_count < declared:
                warnings.append(
                    f"the PDF declares {declared} pages but holds {page_count}: the {page_count} it holds were read"
                )
            pages, unreadable = _read_pages(pdf, page_count)
            title = _clean_title(_metadata_title(pdf))
        finally:
            pdf.close()

    if truncated and (unreadable or any(not p.lines for p in pages)):
        raise CorruptDocumentError(
            "could not be read: the PDF is truncated or damaged (it ends before its end-of-file marker); "
            "upload the file again or export it from the original document"
        )
    headers = _remove_running_lines(pages)
    # Pages left with nothing once running headers are gone are scans too (a typed header over a scanned page).
    empty = [p.number for p in pages if not p.lines]
    if len(empty) == page_count:
        if page_count < declared and not any(p.chars for p in pages):
            # Pages missing from the page tree and no text in the rest: damage, not a blank or scanned document.
            raise CorruptDocumentError(
                f"could not be read: it is damaged (its page list names {declared} page(s), {page_count} of them "
                "in the file, without text); upload the file again or export it from the original document"
            )
        if not any(p.chars or p.objects for p in pages):
            raise EmptyDocumentError(
                "the PDF's pages are blank (no text, no images): nothing to screen; export the policy again"
            )
        if allow_ocr:
            ocr_data = _ocr(data, settings, page_count, has_running_text=any(p.chars for p in pages))
            out = _read(ocr_data, settings, allow_ocr=False)
            out.warnings.insert(0, "the PDF had no text layer: its text was recognised by OCR and may contain errors")
            return out
        raise ScannedDocumentError(
            "scanned document with no text layer: OCR found no text in it; export the policy from Word as PDF "
            "and upload that"
        )

    if truncated:
        warnings.append("the PDF seems truncated (no end-of-file marker): some content may be missing")
    if unreadable:
        warnings.append(f"page(s) {_page_list(unreadable)} could not be read and were skipped")
    blank = [n for n in empty if n not in unreadable]
    if blank:
        warnings.append(f"no text on page(s) {_page_list(blank)} (scanned images?): their content is not screened")
    total_chars = sum(p.chars for p in pages)
    if total_chars and sum(p.garbled for p in pages) / total_chars > 0.2:
        warnings.append(
            "the PDF's text layer looks garbled (fonts without a Unicode map): results may be unreliable; "
            "export the PDF again from the original document"
        )

    lines = [line for page in pages for line in page.lines]
    layout = _measure(lines)
    _mark_lines(lines, layout)
    text, blocks, spans, page_starts = _assemble(pages, layout)
    return ReaderOutput(
        text=text,
        blocks=blocks,
        pages=page_count,
        page_starts=page_starts,
        spans=spans,
        headers=headers,
        title_hint=title,
        warnings=warnings,
    )


def _open(data: bytes, truncated: bool, surveyed_pages: int | None) -> pdfium.PdfDocument:
    """Open the PDF with PDFium; ``surveyed_pages`` is the page count pypdf found (None: it could not tell)."""
    try:
        # password=None lets PDFium try the empty user password, which many "protected" PDFs use (they only
        # restrict printing or copying, which does not concern us).
        return pdfium.PdfDocument(data, password=None)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if _parses_without_pages(data):
            # pypdfium2 reports a document without pages as a failure to load, with the error code PDFium set
            # last, possibly for another file: it says nothing about this one.
            if surveyed_pages == 0:  # pypdf finds the page tree intact and empty too: well formed, only empty
                raise EmptyDocumentError(
                    "the PDF has no pages: nothing to screen; export the policy again from the original document"
                ) from None
            code = None
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise EncryptedDocumentError(
                "this PDF is password-protected: remove the password and upload again"
            ) from None
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise EncryptedDocumentError(
                "this PDF uses an encryption scheme the tool cannot open: save an unprotected copy and upload it"
            ) from None
        why = "it is truncated (it ends before its end-of-file marker)" if truncated else "it is damaged"
        raise CorruptDocumentError(
            f"could not be read: {why}; upload the file again or export it from the original document"
        ) from None


def _parses_without_pages(data: bytes) -> bool:
    """Whether PDFium parses the file but finds no page in it (only asked once opening it has failed)."""
    handle = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if not handle:
        return False
    try:
        return pdfium_c.FPDF_GetPageCount(handle) == 0
    finally:
        pdfium_c.FPDF_CloseDocument(handle)


def _pages_held(pdf: pdfium.PdfDocument, declared: int, max_pages: int) -> int:
    """How many pages the PDF really holds, counting no further than one past ``max_pages``.

    PDFium takes the page tree's ``/Count`` on trust, and a wrong one (hand-edited or hostile files) made every
    missing page "unreadable", or refused a one-page file as too long. Where the last declared page is missing,
    the pages are counted by looking each one up, which reads the page tree without parsing any content.
    """
    size = pdfium_c.FS_SIZEF()
    if declared == 0 or pdfium_c.FPDF_GetPageSizeByIndexF(pdf.raw, declared - 1, size):
        return declared
    held = 0
    for index in range(min(declared, max_pages + 1)):
        if pdfium_c.FPDF_GetPageSizeByIndexF(pdf.raw, index, size):
            held = index + 1  # a damaged page before the last one found still counts (it is reported unreadable)
    return held


def _read_pages(pdf: pdfium.PdfDocument, page_count: int) -> tuple[list[_Page], list[int]]:
    pages: list[_Page] = []
    unreadable: list[int] = []
    for index in range(page_count):
        number = index + 1
        try:
            page = pdf[index]
        except pdfium.PdfiumError:
            unreadable.append(number)
            pages.append(_Page(number, 842.0))
            continue
        try:
            left, bottom, right, top = page.get_bbox()  # the visible area, unrotated
            textpage = page.get_textpage()
            try:
                turn = _text_turn(textpage.raw)
                if turn is None:
                    turn = page.get_rotation()
                elif turn != page.get_rotation():
                    # PDFium orders characters and places line breaks as the page is displayed: a page turned
                    # with its text upright underneath (a page rotated in a viewer) came out with its lines
                    # reversed or its columns swapped. Display it with the text upright, here only, and read again.
                    textpage.close()
                    pdfium_c.FPDFPage_SetRotation(page.raw, turn // 90)
                    textpage = page.get_textpage()
                read = _read_page(textpage, number, (left, top), (right - left, top - bottom), turn)
            finally:
                textpage.close()
            if not read.chars:
                # Only pages without text need this: it tells a scan (an image) from a blank page.
                read.objects = max(0, pdfium_c.FPDFPage_CountObjects(page.raw))
            pages.append(read)
        except pdfium.PdfiumError:
            unreadable.append(number)
            pages.append(_Page(number, 842.0))
        finally:
            page.close()
    return pages, unreadable


def _read_page(textpage: Any, number: int, corner: tuple[float, float], size: tuple[float, float], turn: int) -> _Page:
    """Read one page's lines, measured in its reading frame: the page turned ``turn`` degrees clockwise.

    ``corner`` is the visible area's top-left corner and ``size`` its width and height, all unrotated.
    """
    raw = textpage.raw
    left, top_edge = corner
    width, height = size
    count = pdfium_c.FPDFText_CountChars(raw)
    result = _Page(number, width if turn in (90, 270) else height, turn=turn, size=size)
    if count <= 0:
        return result
    chars = _page_chars(raw, count)
    result.chars = count
    result.garbled = sum(1 for ch in chars if "\ue000" <= ch <= "\uf8ff" and ord(ch) not in _CHAR_MAP)
    rect = pdfium_c.FS_RECTF()

    def box(index: int) -> tuple[float, float, float, float]:
        if not pdfium_c.FPDFText_GetLooseCharBox(raw, index, rect):
            return (0.0, 0.0, 0.0, 0.0)
        # PDFium's boxes are in the unrotated page, whatever the rotation. Layout is measured where the text
        # runs left to right, so that lines are horizontal and a word's first character is its left end.
        unrotated = (rect.left - left, top_edge - rect.top, rect.right - left, top_edge - rect.bottom)
        return _turned(unrotated, turn, width, height) if turn else unrotated

    lines: list[_Line] = []
    current: list[_Word] = []
    samples: list[int] = []  # char indices whose font describes the line
    previous_end = 0
    for match in _WORD_RE.finditer(chars):
        start, end = match.span()
        if current and ("\n" in chars[previous_end:start] or "\r" in chars[previous_end:start]):
            lines.append(_make_line(raw, number, current, samples))
            current, samples = [], []
        previous_end = end
        raw_word = match.group()
        word_text = raw_word.translate(_CHAR_MAP)
        if not word_text:
            continue
        x0, top, _, bottom0 = box(start)
        _, top1, x1, bottom = box(end - 1)
        current.append(_Word(word_text, x0, min(top, top1), x1, max(bottom0, bottom), raw_word.endswith(_SOFT_HYPHENS)))
        if len(samples) < 2:
            samples.append(start)
        else:
            samples[1] = start  # the first and the last word's first character
        if len(current) == 2 and _LONE_MARKER_RE.match(current[0].text):
            # A list number is often set in another size or weight than its text: judge the line by the text.
            samples[0] = start
    if current:
        lines.append(_make_line(raw, number, current, samples))
    result.lines = _merge_split_lines(lines)
    return result


def _text_turn(raw: Any) -> int | None:
    """The clockwise turn (0, 90, 180 or 270, as ``/Rotate`` counts) that sets most of the page's text upright.

    Landscape tables are often portrait pages turned by ``/Rotate`` with their text drawn sideways underneath,
    so that a viewer shows it upright; a page turned in a viewer has upright text under a ``/Rotate``; a table
    can also be drawn sideways on an unturned page. In each case lines are lines only where the text runs left
    to right. PDFium gives each character's angle clockwise in the unrotated page; a few characters spread over
    the page decide (None: no text to judge by).
    """
    count = pdfium_c.FPDFText_CountChars(raw)
    votes: Counter[int] = Counter()
    for index in range(0, max(count, 0), max(1, count // _ANGLE_SAMPLES)):
        if pdfium_c.FPDFText_GetUnicode(raw, index) <= 0x20:
            continue  # spaces and PDFium's generated line breaks have no angle of their own
        angle = pdfium_c.FPDFText_GetCharAngle(raw, index)
        if angle >= 0:
            votes[round(math.degrees(angle) / 90) % 4] += 1
    if not votes:
        return None
    quarter = votes.most_common(1)[0][0]
    return (4 - quarter) % 4 * 90


def _turned(
    box: tuple[float, float, float, float], turn: int, width: float, height: float
) -> tuple[float, float, float, float]:
    """A box ``(x0, top, x1, bottom)`` on a page ``width`` by ``height``, measured on the page turned ``turn``
    degrees clockwise (origin at the turned page's top-left). Turning back is turning by ``360 - turn`` on the
    turned page's own width and height."""
    x0, top, x1, bottom = box
    if turn == 90:
        return height - bottom, x0, height - top, x1
    if turn == 180:
        return width - x1, height - bottom, width - x0, height - top
    if turn == 270:
        return top, width - x1, bottom, width - x0
    return box


def _page_chars(raw: Any, count: int) -> str:
    """The page's characters, one string character per PDFium character (so indices match)."""
    buffer = (ctypes.c_ushort * (count + 1))()
    written = pdfium_c.FPDFText_GetText(raw, 0, count, buffer)
    # When PDFium inserted or dropped characters in its text view, ask character by character instead.
    codes: list[int] = (
        buffer[:count] if written - 1 == count else [pdfium_c.FPDFText_GetUnicode(raw, i) for i in range(count)]
    )
    # chr() keeps a lone surrogate as one character, so the string stays aligned with PDFium's indices.
    return "".join(map(chr, codes))


def _make_line(raw: Any, page: int, words: list[_Word], samples: list[int]) -> _Line:
    sizes = [pdfium_c.FPDFText_GetFontSize(raw, i) for i in samples]
    bold = all(_is_bold(raw, i) for i in samples)
    line = _Line(page=page, words=words, size=round(max(sizes), 1) if sizes else 0.0, bold=bold)
    if line.size > 0:
        # PDFium's loose box spans the font's whole bounding box, taller than the type; pdfplumber (whose
        # convention Box follows) makes a word exactly one font size tall, ending at the descender.
        for word in words:
            if word.bottom - word.top > line.size:
                word.top = word.bottom - line.size
    line.finish()
    return line


_NAME_BUFFER = ctypes.create_string_buffer(256)
_FLAGS = ctypes.c_int()


def _is_bold(raw: Any, index: int) -> bool:
    weight = pdfium_c.FPDFText_GetFontWeight(raw, index)
    if weight >= 600:
        return True
    if 0 < weight < 600:
        return False
    # The standard 14 fonts and many subset fonts carry no weight: fall back to the name and flags.
    length = pdfium_c.FPDFText_GetFontInfo(raw, index, _NAME_BUFFER, len(_NAME_BUFFER), ctypes.byref(_FLAGS))
    if length <= 0:
        return False
    name = _NAME_BUFFER.raw[: max(0, min(length, len(_NAME_BUFFER)) - 1)].decode("latin-1")
    return bool(_BOLD_NAME_RE.search(name)) or bool(_FLAGS.value & _FORCE_BOLD_FLAG)


def _merge_split_lines(lines: list[_Line]) -> list[_Line]:
    """Join consecutive "lines" that sit side by side on one baseline (PDFium breaks some at font changes)."""
    merged: list[_Line] = []
    for line in lines:
        if merged:
            last = merged[-1]
            height = max(last.bottom - last.top, 1.0)
            if abs(line.bottom - last.bottom) < 0.3 * height and line.x0 >= last.x1 - 1.0:
                lone_marker = len(last.words) == 1 and _LONE_MARKER_RE.match(last.words[0].text)
                last.words.extend(line.words)
                last.size = line.size if lone_marker else max(last.size, line.size)
                last.bold = line.bold if lone_marker else last.bold and line.bold
                last.finish()
                continue
        merged.append(line)
    return merged


def _remove_running_lines(pages: list[_Page]) -> list[str]:
    """Drop running headers/footers from the pages and return their text (first occurrence of each).

    A running line sits in the top or bottom band of at least half the pages with text (and at least two), and
    its text is the same everywhere except for numbers that follow the page number ("Page 3 of 12"). Checking
    that the numbers track the page keeps a body line such as "2. Scope" from being mistaken for one.
    """
    with_text = [p for p in pages if p.lines]
    candidates: list[tuple[_Line, str]] = []  # lines in the top/bottom band, with their keys
    seen_on: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for page in with_text:
        band = page.height * _HEADER_BAND
        for line in page.lines:
            if line.top < band or line.bottom > page.height - band:
                key = _running_key(line.text)
                if key:
                    candidates.append((line, key))
                    numbers = tuple(int(n) for n in re.findall(r"\d+", line.text)[:8])
                    seen_on.setdefault(key, []).append((page.number, numbers))
    needed = max(2, math.ceil(0.5 * len(with_text)))
    running = {
        key
        for key, hits in seen_on.items()
        # A line carrying "Page n" is a footer even in a one-page document, where nothing can repeat.
        if (len({p for p, _ in hits}) >= needed and _tracks_page(hits)) or _PAGE_LABEL_RE.search(key)
    }
    headers: list[str] = []
    reported: set[str] = set()
    keys = {id(line): key for line, key in candidates}
    for page in with_text:
        # Peel running lines off the top and bottom edges only: a body line that happens to match (a numbered
        # heading on every page) is shielded by the real header above it.
        drop: set[int] = set()
        ordered = sorted(page.lines, key=lambda line: line.top)
        for edge in (ordered, ordered[::-1]):
            for line in edge:
                line_key = keys.get(id(line))
                if line_key is None or id(line) in drop:
                    break
                is_number = bool(_PAGE_NUMBER_RE.match(line_key))
                if line_key not in running and not is_number:
                    break
                drop.add(id(line))
                if not is_number and line_key not in reported:
                    reported.add(line_key)
                    headers.append(line.text)
        if drop:
            page.lines = [line for line in page.lines if id(line) not in drop]
    return headers


def _tracks_page(hits: list[tuple[int, tuple[int, ...]]]) -> bool:
    """True when every number in the repeated line is either constant or the page number plus a constant."""
    lengths = {len(numbers) for _, numbers in hits}
    if len(lengths) != 1:
        return False
    for position in range(lengths.pop()):
        values = {numbers[position] for _, numbers in hits}
        offsets = {numbers[position] - page for page, numbers in hits}
        if len(values) > 1 and len(offsets) > 1:
            return False
    return True


def _running_key(text: str) -> str:
    # Page numbers change from page to page; the rest of a running header does not.
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", text.lower())).strip()


def _measure(lines: list[_Line]) -> _Layout:
    if not lines:
        return _Layout(10.0, False, 12.0, 0.0, 595.0, [], [])
    weights: Counter[float] = Counter()
    bold_weight: Counter[float] = Counter()
    for line in lines:
        size = round(line.size * 2) / 2
        weights[size] += len(line.text)
        if line.bold:
            bold_weight[size] += len(line.text)
    body = weights.most_common(1)[0][0]
    body_bold = bold_weight[body] > 0.6 * weights[body]
    gaps = [
        b.bottom - a.bottom
        for a, b in itertools.pairwise(lines)
        if a.page == b.page and abs(a.size - body) < 0.6 and abs(b.size - body) < 0.6 and b.bottom > a.bottom
    ]
    plausible = [g for g in gaps if g < 3 * body]
    # The smallest common gap is the line spacing inside a paragraph; larger ones are paragraph breaks.
    pitch = statistics.median_low(sorted(plausible)[: max(1, len(plausible) // 2 + 1)]) if plausible else body * 1.2
    body_lines = [line for line in lines if abs(line.size - body) < 0.6] or lines
    lefts = sorted(line.x0 for line in body_lines)
    rights = sorted(line.x1 for line in body_lines)
    left = lefts[len(lefts) // 10]
    right = rights[min(len(rights) - 1, (len(rights) * 9) // 10)]
    return _Layout(body, body_bold, pitch, left, max(right, left + 1.0), [], [])


def _mark_lines(lines: list[_Line], layout: _Layout) -> None:
    """Find list markers and headings; fill the layout's heading sizes and list indents."""
    for line in lines:
        match = _MARKER_RE.match(line.text)
        if match and match.lastgroup:
            line.marker = match.group(match.lastgroup)
            line.marker_kind = match.lastgroup
    width = layout.right - layout.left
    for i, line in enumerate(lines):
        line.heading = _looks_like_heading(line, lines, i, layout, width)
    sizes = sorted(
        {round(line.size * 2) / 2 for line in lines if line.heading and line.size >= _big(layout)}, reverse=True
    )
    layout.heading_sizes = sizes
    indents: list[float] = []
    for x in sorted(line.x0 for line in lines if line.marker and not line.heading):
        if not indents or x - indents[-1] > 6.0:
            indents.append(x)
    layout.list_indents = indents


def _big(layout: _Layout) -> float:
    return layout.body_size * 1.15 + 0.1


def _looks_like_heading(line: _Line, lines: list[_Line], i: int, layout: _Layout, width: float) -> bool:
    text = line.text
    words = len(line.words)
    if words > 25 or len(text) > 200 or not any(ch.isalpha() for ch in text):
        return False
    if line.marker_kind == "bullet":
        return False
    ends_sentence = text.endswith((".", ",", ";"))
    if line.size >= _big(layout):
        return True
    if ends_sentence or words > 15:
        return False
    if line.bold and not layout.body_bold:
        return True
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) >= 4 and all(ch.isupper() for ch in letters) and words <= 12:
        return True
    if line.marker_kind == "num" and words <= 12 and not text.endswith(":"):
        short = line.x1 < layout.right - 0.25 * width
        return short and not _in_numbered_run(line, lines, i)
    # Headings typed in the body style: a short capitalised line standing alone, as the text reader reads them.
    return (
        not line.marker
        and words <= 12
        and len(text) <= 80
        and not text.endswith((":", "!"))
        and letters[0].isupper()
        and _stands_alone(lines, i, layout)
    )


def _stands_alone(lines: list[_Line], i: int, layout: _Layout) -> bool:
    """Space above (or a new page) and space below the line, with body text after it."""
    gap = layout.paragraph_gap
    before = lines[i - 1] if i > 0 else None
    after = lines[i + 1] if i + 1 < len(lines) else None
    if after is None or abs(after.size - layout.body_size) >= 0.6:
        return False
    line = lines[i]
    if abs(line.size - layout.body_size) >= 0.6:
        return False  # small print (a caption, a footnote, a running header) is not a heading
    if any(b.x0 - a.x1 > layout.body_size for a, b in itertools.pairwise(line.words)):
        return False  # words spread over columns: a table row
    space_above = before is None or before.page != line.page or line.bottom - before.bottom > gap
    return space_above and (after.page != line.page or after.bottom - line.bottom > gap)


def _in_numbered_run(line: _Line, lines: list[_Line], i: int) -> bool:
    """A numbered line next to another of the same depth is a list item, not a heading ("1. Independence").

    Looking back, the previous item's wrapped lines (indented under its text, with no marker) are skipped.
    """
    depth = _depth(line.marker)
    previous = i - 1
    while previous >= 0 and not lines[previous].marker and lines[previous].x0 > line.x0 + 6.0:
        previous -= 1
    for j in (previous, i + 1):
        if 0 <= j < len(lines):
            other = lines[j]
            if other.marker_kind == "num" and _depth(other.marker) == depth and abs(other.x0 - line.x0) < 6.0:
                return True
    return False


def _depth(number: str) -> int:
    return len([part for part in number.rstrip(".").split(".") if part])


@dataclass
class _Pending:
    """A block being assembled: its text, word offsets relative to the block, and where pages start in it."""

    kind: BlockKind
    page: int
    level: int
    label: str
    size: float
    bold: bool
    x0: float
    parts: list[str] = field(default_factory=list)
    length: int = 0
    words: list[tuple[int, int, Box]] = field(default_factory=list)
    page_offsets: list[tuple[int, int]] = field(default_factory=list)  # (page, offset in block)
    last: _Line | None = None


def _assemble(pages: list[_Page], layout: _Layout) -> tuple[str, list[Block], list[TextSpan], list[int]]:
    builder = TextBuilder()
    spans: list[TextSpan] = []
    page_first: dict[int, int] = {}
    pending: _Pending | None = None
    turned = {page.number: page for page in pages if page.turn}

    def flush() -> None:
        nonlocal pending
        if pending is None or not pending.parts:
            pending = None
            return
        block = builder.add_block(
            "".join(pending.parts), pending.kind, page=pending.page, level=pending.level, label=pending.label
        )
        if block is not None:
            for start, end, box in pending.words:
                if box.page in turned:
                    box = _unturned(box, turned[box.page])
                spans.append(TextSpan(block.start + start, block.start + end, box))
            for page, offset in pending.page_offsets:
                page_first.setdefault(page, block.start + offset)
        pending = None

    for page in pages:
        for line in page.lines:
            if pending is None or _starts_block(pending, line, layout):
                flush()
                pending = _new_block(line, layout)
            _append_line(pending, line)
    flush()

    text = builder.text()
    page_starts: list[int] = []
    next_start = len(text)
    for page in reversed(pages):
        next_start = page_first.get(page.number, next_start)
        page_starts.append(next_start)
    page_starts.reverse()
    return text, builder.blocks, spans, page_starts


def _unturned(box: Box, page: _Page) -> Box:
    """A word box measured in a turned page's reading frame, back in the unrotated page.

    Boxes stay in the unrotated page, as pdfplumber measures them: ``pipeline.highlight`` places annotations
    in PDF user space, which ``/Rotate`` does not turn.
    """
    width, height = page.size
    frame = (height, width) if page.turn in (90, 270) else (width, height)
    x0, top, x1, bottom = _turned((box.x0, box.top, box.x1, box.bottom), (360 - page.turn) % 360, *frame)
    return Box(box.page, x0, top, x1, bottom)


def _new_block(line: _Line, layout: _Layout) -> _Pending:
    kind: BlockKind = "paragraph"
    level = 0
    label = ""
    if line.heading:
        kind = "heading"
        if line.marker_kind == "num":
            level = _depth(line.marker)
        elif line.size >= _big(layout) and layout.heading_sizes:
            size = round(line.size * 2) / 2
            level = layout.heading_sizes.index(size) + 1 if size in layout.heading_sizes else 1
        else:
            level = len(layout.heading_sizes) + 1
    elif line.marker:
        kind = "list_item"
        label = line.marker.rstrip(".") if line.marker_kind == "num" else line.marker
        level = 1 + sum(1 for x in layout.list_indents[1:] if line.x0 >= x - 3.0)
    return _Pending(kind, line.page, level, label, line.size, line.bold, line.x0)


def _starts_block(block: _Pending, line: _Line, layout: _Layout) -> bool:
    previous = block.last
    if previous is None:
        return True
    if line.marker:
        return True
    if block.kind == "heading":
        # A long heading wraps: keep following lines of the same style unless the heading looked complete.
        return not (
            line.heading
            and line.page == previous.page
            and abs(line.size - previous.size) < 0.6
            and line.bold == previous.bold
            and 0 < line.bottom - previous.bottom < 1.6 * max(line.size, 1.0)
            and not line.marker
        )
    if line.heading or abs(line.size - block.size) >= 0.6:
        return True
    if line.page != previous.page:
        # Across a page break a sentence that did not end carries on; anything else starts afresh.
        return previous.text.endswith(_TERMINAL)
    step = line.bottom - previous.bottom
    if step <= 0 or step > layout.paragraph_gap:
        return True  # a blank line's worth of space, or a jump back up (next column)
    width = layout.right - layout.left
    if block.kind == "list_item":
        # Continuation lines of an item hang under its text. A line back at the marker's edge after a finished
        # sentence or a short (unwrapped) line is a new paragraph, and so is any line left of the marker.
        at_edge = line.x0 <= block.x0 + 2.0
        finished = previous.text.endswith(_TERMINAL) or previous.x1 < layout.right - 0.35 * width
        return line.x0 < block.x0 - 3.0 or (at_edge and finished)
    # A first-line indent marks a new paragraph in documents without space between paragraphs.
    if line.x0 > previous.x0 + 10.0 and previous.text.endswith(_TERMINAL):
        return True
    return previous.text.endswith((".", "!", "?")) and previous.x1 < layout.right - 0.35 * width


def _append_line(block: _Pending, line: _Line) -> None:
    new_page = not block.page_offsets or block.page_offsets[-1][0] != line.page
    for index, word in enumerate(line.words):
        text = word.text
        if block.parts:
            joined = False
            if index == 0 and block.last is not None:
                prev_word = block.last.words[-1].text
                # Rejoin words split at a line end: always after a soft hyphen; after a real hyphen keep it
                # ("decision-" + "making"), since a PDF cannot tell the two apart otherwise.
                joined = block.last.words[-1].soft_hyphen or (
                    prev_word.endswith("-") and len(prev_word) > 1 and prev_word[-2].isalpha() and text[:1].islower()
                )
            if not joined:
                block.parts.append(" ")
                block.length += 1
        start = block.length
        if index == 0 and new_page:
            block.page_offsets.append((line.page, start))
        block.parts.append(text)
        block.length += len(text)
        block.words.append((start, block.length, Box(line.page, word.x0, word.top, word.x1, word.bottom)))
    block.last = line


def _page_list(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _metadata_title(pdf: pdfium.PdfDocument) -> str:
    try:
        return str(pdf.get_metadata_value("Title") or "")
    except (pdfium.PdfiumError, UnicodeDecodeError, ValueError):
        return ""


def _clean_title(title: str) -> str:
    """A usable title from PDF metadata: without Word's "Microsoft Word - " prefix or a file extension."""
    title = re.sub(r"^\s*microsoft\s+(?:word|powerpoint)\s*-\s*", "", title, flags=re.IGNORECASE)
    title = re.sub(r"\.(?:docx?|docm|odt|rtf|pdf)\s*$", "", title, flags=re.IGNORECASE).strip()
    if title.lower() in {"", "untitled", "title", "document", "document1", "anonymous"}:
        return ""
    return title


def _ocr(data: bytes, settings: Settings, page_count: int, *, has_running_text: bool) -> bytes:
    """Add a text layer with ocrmypdf, when it is installed; else explain that the file needs OCR."""
    ocrmypdf = shutil.which("ocrmypdf")
    if ocrmypdf is None:
        raise ScannedDocumentError(
            "scanned document with no text layer: needs OCR (not installed here); export the policy from Word "
            "as PDF, or run OCR on the scan (e.g. ocrmypdf) and upload the result"
        )
    timeout = max(settings.convert_timeout_s, _OCR_SECONDS_PER_PAGE * page_count)
    with tempfile.TemporaryDirectory(prefix="qpm-ocr-") as tmp:
        folder = Path(tmp)
        source, target = folder / "in.pdf", folder / "out.pdf"
        source.write_bytes(data)
        # --skip-text leaves pages that carry any text alone, so a scan under a typed running header would stay
        # unread: --redo-ocr recognises the image parts of such pages as well.
        mode = "--redo-ocr" if has_running_text else "--skip-text"
        command = [ocrmypdf, "--quiet", mode, "--output-type", "pdf", str(source), str(target)]
        with subprocess.Popen(
            command,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout can stop Tesseract workers too
        ) as process:
            try:
                _, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    process.kill()
                process.wait()
                raise ScannedDocumentError(
                    f"scanned document with no text layer: OCR took longer than {timeout:g} s; run OCR on the "
                    "scan yourself (e.g. ocrmypdf) and upload the result"
                ) from None
        if process.returncode != 0 or not target.is_file():
            reason = (stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1][:120]
            raise ScannedDocumentError(
                f"scanned document with no text layer: OCR failed ({reason}); run OCR on the scan yourself "
                "and upload the result"
            )
        return target.read_bytes()
