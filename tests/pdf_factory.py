"""Build test PDFs in code with reportlab, recording where each line was drawn.

The layout imitates a Word policy saved as PDF: A4, 72 pt margins, 16 pt bold headings, 11 pt body text
hard-wrapped at the right margin with 14 pt leading and 10 pt between paragraphs, list items with a hanging
indent, and optional running header/footer lines ("{page}" and "{pages}" are replaced by numbers).

Hostile and odd files (decompression bombs, lying page counts) are written byte by byte with ``raw_pdf``.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Sequence
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
    page_height: float = PAGE_HEIGHT  # of the page as displayed

    @property
    def top_from_top(self) -> float:
        """The baseline measured from the top of the page (pdfplumber's convention)."""
        return self.page_height - self.baseline


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
    width: float | None = None,
    pagesize: tuple[float, float] = A4,
    rotate: int = 0,
) -> BuiltPdf:
    """Draw the given pages; each page's items flow from the top margin down (no automatic page breaks).

    ``pagesize`` is the page as a viewer shows it and ``width`` the text width (default: within the margins).
    With ``rotate`` (90, 180, 270) every page gets that ``/Rotate`` and its text is drawn turned the other way
    underneath, so that a viewer shows the same page as without it: how printers to PDF write landscape pages
    (a portrait media box turned by 90 degrees). ``DrawnLine`` positions are on the page as shown.
    """
    shown_width, shown_height = pagesize
    if width is None:
        width = shown_width - 2 * MARGIN
    buffer = io.BytesIO()
    # reportlab takes the size as shown and swaps the media box's sides itself for a quarter turn.
    pdf = canvas.Canvas(buffer, pagesize=pagesize)
    if title is not None:
        pdf.setTitle(title)
    drawn: list[DrawnLine] = []
    total = len(pages)
    media_width, media_height = (shown_height, shown_width) if rotate in (90, 270) else pagesize

    def draw(page: int, x: float, y: float, font: str, size: float, text: str) -> None:
        pdf.setFont(font, size)
        pdf.drawString(x, y, text)
        drawn.append(DrawnLine(page, x, y, size, text, font, shown_height))

    for number, items in enumerate(pages, start=1):
        pdf.setPageRotation(rotate)
        # /Rotate turns the page clockwise for display: draw the text turned as far counter-clockwise.
        if rotate == 90:
            pdf.translate(media_width, 0)
            pdf.rotate(90)
        elif rotate == 180:
            pdf.translate(media_width, media_height)
            pdf.rotate(180)
        elif rotate == 270:
            pdf.translate(0, media_height)
            pdf.rotate(-90)
        elif rotate:
            raise ValueError(f"rotate must be 0, 90, 180 or 270, not {rotate}")
        if header:
            draw(number, MARGIN, shown_height - 40, BODY_FONT, 9, header.format(page=number, pages=total))
        if footer:
            draw(number, MARGIN, 36, BODY_FONT, 9, footer.format(page=number, pages=total))
        y = shown_height - MARGIN - HEADING_SIZE
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


def turn_in_viewer(data: bytes, degrees: int) -> bytes:
    """The PDF with every page turned by ``degrees`` as a viewer's "rotate page" does: a ``/Rotate`` entry over
    unchanged content, so that the text shows sideways (or upside down)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for page in writer.pages:
        page.rotate(degrees)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF holding the given object bodies as objects 1, 2, ... (object 1 is the catalog), with a correct
    cross-reference table: for files no PDF library would write (lying page counts, hostile streams)."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(body: bytes, extra: bytes = b"") -> bytes:
    """An object body for a stream with the given (already encoded) data and extra dictionary entries."""
    return b"<< /Length %d %s >>\nstream\n" % (len(body), extra) + body + b"\nendstream"


HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
PAGE_TEXT = b"BT /F1 11 Tf 72 760 Td (Advocates keep records safe.) Tj ET\n"
PATHS = b"0 0 m 1 1 l S\n"  # one path drawing operator sequence: PDFium builds an object for each


def deflate(chunks: Iterable[bytes], layers: int = 1) -> bytes:
    """The chunks Flate-compressed without joining them first (a bomb's content never sits in memory), then
    compressed again ``layers - 1`` times."""
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(chunk) for chunk in chunks) + compressor.flush()
    for _ in range(layers - 1):
        data = zlib.compress(data, 9)
    return data


def repeated(unit: bytes, megabytes: float) -> Iterable[bytes]:
    """``unit`` repeated to ``megabytes`` MiB (a little over), a MiB at a time."""
    block = unit * (1024 * 1024 // len(unit) + 1)
    for _ in range(int(megabytes)):
        yield block
    rest = int((megabytes - int(megabytes)) * 1024 * 1024)
    if rest:
        yield unit * (rest // len(unit) + 1)


def pages_pdf(
    contents: list[bytes],
    *,
    count: int | None = None,
    resources: bytes = b"",
    extra: Sequence[bytes] = (),
    catalog: bytes = b"",
) -> bytes:
    """A PDF whose pages draw the given content-stream objects (complete stream object bodies, see ``stream``),
    with Helvetica as /F1; ``count`` is the page tree's /Count (default: the truth); ``resources`` is added to
    each page's resource dictionary, ``catalog`` to the catalog's, and ``extra`` objects follow the streams
    (numbered from 4 + 2 * pages)."""
    pages = len(contents)
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R %s >>" % catalog,
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages if count is None else count),
        HELVETICA,
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
        b"/Resources << /Font << /F1 3 0 R >> %s >> >>" % (4 + pages + i, resources)
        for i in range(pages)
    ]
    return raw_pdf(objects + contents + list(extra))


def inflating_pdf(megabytes: float, *, unit: bytes = PATHS, layers: int = 1, in_form: bool = False) -> bytes:
    """A one-page PDF, a few kilobytes long, whose page inflates into ``megabytes`` MiB of ``unit`` operators
    (after a line of text): a decompression bomb. ``layers`` Flate layers multiply the ratio (about a thousand
    each); ``in_form`` hides the bomb in a form XObject the page draws instead of the page's own content."""
    filters = b"/Filter [%s]" % b" ".join([b"/FlateDecode"] * layers)
    bomb = deflate([PAGE_TEXT, *repeated(unit, megabytes)], layers)
    if not in_form:
        return pages_pdf([stream(bomb, filters)])
    form = stream(bomb, filters + b" /Type /XObject /Subtype /Form /BBox [0 0 595 842]")
    return pages_pdf([stream(b"/Fm0 Do\n")], resources=b"/XObject << /Fm0 6 0 R >>", extra=[form])


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
