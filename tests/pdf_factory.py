"""Build test PDFs in code with reportlab, recording where each line was drawn.

The layout imitates a Word policy saved as PDF: A4, 72 pt margins, 16 pt bold headings, 11 pt body text
hard-wrapped at the right margin with 14 pt leading and 10 pt between paragraphs, list items with a hanging
indent, and optional running header/footer lines ("{page}" and "{pages}" are replaced by numbers).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfgen import canvas

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 72.0
BODY_FONT, BODY_SIZE, LEADING = "Helvetica", 11.0, 14.0
HEADING_FONT, HEADING_SIZE = "Helvetica-Bold", 16.0
PARAGRAPH_SPACE = 10.0
LIST_INDENT = 18.0


@dataclass(frozen=True)
class DrawnLine:
    """One line of text as drawn: page (1-based), left x, baseline y in PDF space (from the bottom), size."""

    page: int
    x: float
    baseline: float
    size: float
    text: str
    font: str

    @property
    def top_from_top(self) -> float:
        """The baseline measured from the top of the page (pdfplumber's convention)."""
        return PAGE_HEIGHT - self.baseline


@dataclass
class BuiltPdf:
    """The PDF bytes and what was drawn where."""

    data: bytes
    lines: list[DrawnLine] = field(default_factory=list)

    def find(self, text: str) -> DrawnLine:
        """The first drawn line containing ``text``."""
        for line in self.lines:
            if text in line.text:
                return line
        raise KeyError(text)


# A page is a list of items: ("h", text) heading, ("p", text) paragraph, ("li", label, text) list item (an
# optional fourth element is the label's font size), ("row", cell, cell, ...) a table row, one cell per column.
Item = tuple[str, ...]
COLUMN_WIDTH = 150.0


def build_pdf(
    pages: list[list[Item]],
    *,
    header: str | None = None,
    footer: str | None = None,
    title: str | None = None,
    width: float = PAGE_WIDTH - 2 * MARGIN,
) -> BuiltPdf:
    """Draw the given pages; each page's items flow from the top margin down (no automatic page breaks)."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    if title is not None:
        pdf.setTitle(title)
    drawn: list[DrawnLine] = []
    total = len(pages)

    def draw(page: int, x: float, y: float, font: str, size: float, text: str) -> None:
        pdf.setFont(font, size)
        pdf.drawString(x, y, text)
        drawn.append(DrawnLine(page, x, y, size, text, font))

    for number, items in enumerate(pages, start=1):
        if header:
            draw(number, MARGIN, PAGE_HEIGHT - 40, BODY_FONT, 9, header.format(page=number, pages=total))
        if footer:
            draw(number, MARGIN, 36, BODY_FONT, 9, footer.format(page=number, pages=total))
        y = PAGE_HEIGHT - MARGIN - HEADING_SIZE
        for item in items:
            kind = item[0]
            if kind == "h":
                draw(number, MARGIN, y, HEADING_FONT, HEADING_SIZE, item[1])
                y -= HEADING_SIZE + PARAGRAPH_SPACE
            elif kind == "p":
                for line in simpleSplit(item[1], BODY_FONT, BODY_SIZE, width):
                    draw(number, MARGIN, y, BODY_FONT, BODY_SIZE, line)
                    y -= LEADING
                y -= PARAGRAPH_SPACE
            elif kind == "li":
                label, text = item[1], item[2]
                draw(number, MARGIN, y, BODY_FONT, float(item[3]) if len(item) > 3 else BODY_SIZE, label)
                for line in simpleSplit(text, BODY_FONT, BODY_SIZE, width - LIST_INDENT):
                    draw(number, MARGIN + LIST_INDENT, y, BODY_FONT, BODY_SIZE, line)
                    y -= LEADING
                y -= PARAGRAPH_SPACE / 2
            elif kind == "row":
                for column, cell in enumerate(item[1:]):
                    draw(number, MARGIN + column * COLUMN_WIDTH, y, BODY_FONT, BODY_SIZE, cell)
                y -= LEADING + PARAGRAPH_SPACE
            else:
                raise ValueError(f"unknown item kind {kind!r}")
            if y < MARGIN:
                raise ValueError(f"page {number} overflows: give it fewer items")
        pdf.showPage()
    pdf.save()
    return BuiltPdf(buffer.getvalue(), drawn)


def image_only_pdf() -> bytes:
    """A one-page PDF holding only a drawn image (a fake scan): no text layer at all."""
    from reportlab.lib.utils import ImageReader

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    pdf.drawImage(ImageReader(io.BytesIO(tiny_png())), 72, 400, width=400, height=300)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def tiny_png() -> bytes:
    """A valid 2x2 grey PNG, built with zlib (no imaging library needed)."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80\x40" for _ in range(2))  # filter byte + 2 grey pixels per row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


LOREM = (
    "Advocates must keep information about the people they support confidential and must only share it with "
    "consent, unless there is a risk of serious harm to the person or to others, or the law requires it."
)


TOPICS = (
    "Purpose and scope",
    "Sharing information",
    "Consent",
    "Recording decisions",
    "Storing records",
    "Breaches of confidentiality",
    "Training and supervision",
    "Monitoring and review",
)


def policy_pages(count: int, *, paragraphs_per_page: int = 4) -> list[list[Item]]:
    """Realistic-looking policy pages: a numbered heading, numbered paragraphs and a short list on each page."""
    pages: list[list[Item]] = []
    for n in range(1, count + 1):
        items: list[Item] = [("h", f"{n}. {TOPICS[(n - 1) % len(TOPICS)]}")]
        for p in range(paragraphs_per_page):
            items.append(("p", f"{n}.{p + 1} {LOREM} This is paragraph {p + 1} of section {n}."))
        items.append(("li", "•", "Staff record each decision to share information and the reason for it."))
        items.append(("li", "•", "The person is told what was shared, with whom and why, unless unsafe."))
        pages.append(items)
    return pages
