"""Measure a PDF's drawing instructions before PDFium parses them, so a decompression bomb is refused.

PDFium inflates a page's drawing instructions (content streams and the forms they draw) in full and builds an
object per operator before any text can be read, and nothing in its API bounds that. Measured: a 100 KB file
whose page inflates to 50 MB of path operators peaked at 1 GB RSS (6 s); 16 MB of them at 350 MB, 7 MB at
190 MB (0.7 s). Real policy pages hold 5-20 KB of instructions, a page of detailed vector drawing a few MB.
``settings.max_pdf_page_content_mb`` bounds memory (pages are read one at a time);
``settings.max_pdf_content_mb`` bounds the time spent on a file of many such pages. Streams are measured by
inflating them a chunk at a time and stopping at the limit, so the check itself never holds a bomb in memory.

A form is parsed again each time it is drawn, so a page counts a form once for every time its instructions (or a
form they draw) draw it. Measured before that: a 480 KB file whose page drew one 2 MB form 2,000 times passed the
check, and reading it grew past 20 GB until the system killed the process.
"""

from __future__ import annotations

import io
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, NamedTuple

from pipeline.config import Settings
from pipeline.errors import DocumentTooLargeError

_MB: Final = 1024 * 1024
# Inflating a chunk at a time keeps a bomb from being held in memory while it is measured.
_INFLATE_CHUNK: Final = 1 << 20

# pypdf only measures here: its warnings about damaged files ("incorrect startxref pointer") would reach the
# user's terminal beside the verdict PDFium gives on the same file, which is the one that counts.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# PDF filter names (with the abbreviations PDFium also accepts) that the content check decodes.
_FILTER_KINDS: Final[dict[str, str]] = {
    "/FlateDecode": "flate",
    "/Fl": "flate",
    "/ASCII85Decode": "a85",
    "/A85": "a85",
    "/ASCIIHexDecode": "ahx",
    "/AHx": "ahx",
    "/LZWDecode": "lzw",
    "/LZW": "lzw",
    "/RunLengthDecode": "rl",
    "/RL": "rl",
}
# For files pypdf cannot parse: a stream's start ("endstream" is not one), its dictionary's filters and names.
_STREAM_RE: Final = re.compile(rb"(?<!end)stream(?:\r\n|\n|\r)")
_FILTER_RE: Final = re.compile(rb"/Filter\s*(\[[^\]]*\]|/[^\s/\[\]<>()]+)")
_NAME_RE: Final = re.compile(rb"/[^\s/\[\]<>()]+")
_INFLATE_INPUT: Final = 1 << 16  # compressed bytes handed to zlib at a time (zlib copies what it leaves over)
# A "draw this XObject" operator with its name operand, e.g. "/Fm0 Do".
_DRAW_RE: Final = re.compile(rb"/([^\s/\[\]<>(){}%]+)\s*Do(?=[\s/\[\]<>(){}%]|$)")
_DRAW_TAIL: Final = 256  # bytes of one chunk kept for the next, so an operator split between chunks is found


def check_content_size(data: bytes, settings: Settings) -> int | None:
    """Refuse a PDF whose pages inflate into more drawing instructions than can be read safely.

    pypdf walks the first ``max_pages + 1`` pages (it parses objects, not page content) and each page's content
    streams and the forms its resources name are measured by inflating them a chunk at a time and stopping at
    the limit: a bomb is never held in memory, nor inflated past the limit. Returns the number of pages found,
    or None when pypdf cannot parse the file (PDFium repairs some that it cannot): then every compressed stream
    is measured instead, without knowing its page.

    Raises:
        DocumentTooLargeError: a page inflates to more than ``settings.max_pdf_page_content_mb``, or the pages
            together to more than ``settings.max_pdf_content_mb``.
    """
    from pypdf import PdfReader

    max_pages = settings.max_pages
    page_mb, total_mb = settings.max_pdf_page_content_mb, settings.max_pdf_content_mb
    page_limit = int(page_mb * _MB)
    measured: dict[tuple[int, int], _Stream] = {}  # by object: a form drawn on every page is inflated once
    total = 0
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            return None  # it needs a password: PDFium refuses it before parsing any page
        if not isinstance(_entry(reader.root_object, "/Pages"), dict):
            return None  # no page tree (damaged): PDFium finds no page to parse either
        for index in range(max_pages + 1):  # a longer file is refused for its length anyway
            try:
                page = reader.pages[index]
            except IndexError:
                return index
            page_size = _page_size(page, _Measure(measured, page_limit))
            total += page_size
            if page_size > page_limit:
                raise DocumentTooLargeError(_content_message(f"page {index + 1}", page_mb))
            if total > total_mb * _MB:
                raise DocumentTooLargeError(_content_message("its pages together", total_mb))
        return max_pages + 1
    except DocumentTooLargeError:
        raise
    except Exception:
        # pypdf fails on malformed files in many ways, and the check must not decide readability: PDFium does.
        # Its "limit reached" errors come from damaged lengths as often as from bombs, so they are measured too.
        _scan_streams(data, page_mb, total_mb)
        return None


def _content_message(what: str, limit_mb: float) -> str:
    return (
        f"the PDF cannot be read safely: {what} inflates to more than {limit_mb:g} MB of drawing instructions "
        "(a decompression bomb, or vector drawing far more detailed than a policy needs); export the policy "
        "again from the original document, with any large drawings as pictures"
    )


class _Stream(NamedTuple):
    size: int  # bytes of drawing instructions, counted to just past the page limit
    draws: Counter[bytes]  # the XObject names it draws, and how many times


class _Measure:
    """Measures streams once each (``known`` is shared by a document's pages), and what drawing a form costs."""

    def __init__(self, known: dict[tuple[int, int], _Stream], limit: int) -> None:
        self.known = known
        self.limit = limit
        self.drawn: dict[tuple[int, int], int] = {}
        self.visited: set[tuple[int, int]] = set()  # streams measured for this page

    def stream(self, key: tuple[int, int] | None, stream: Any) -> _Stream:
        """A stream's size and what it draws, inflated a chunk at a time (never held whole)."""
        if key is not None:
            self.visited.add(key)
        got = self.known.get(key) if key is not None else None
        if got is None:
            draws: Counter[bytes] = Counter()
            # pypdf keeps a stream's bytes as stored (decrypted) in _data; get_data() would decode them whole,
            # which is what must not happen here.
            size = _decoded_size(stream._data, _filter_names(stream.get("/Filter")), self.limit, draws)
            got = _Stream(size, draws)
            if key is not None:
                self.known[key] = got
        return got

    def drawing(self, draws: Counter[bytes], resources: Any, forms_above: frozenset[tuple[int, int]]) -> int:
        """Bytes parsed to draw ``draws`` (names in ``resources``' XObjects), forms in forms included; a form
        drawing itself (``forms_above``) adds nothing, as PDFium refuses that recursion."""
        from pypdf.generic import DictionaryObject

        xobjects = _entry(resources, "/XObject")
        if not isinstance(xobjects, DictionaryObject):
            return 0
        total = 0
        for name, times in draws.items():
            key, form = _resolve(xobjects.get("/" + name.decode("latin-1")))
            if not _is_form(form) or key in forms_above:
                continue
            total += times * self.form(key, form, resources, forms_above)
            if total > self.limit:
                return self.limit + 1
        return total

    def form(
        self, key: tuple[int, int] | None, form: Any, inherited: Any, forms_above: frozenset[tuple[int, int]]
    ) -> int:
        """Bytes parsed to draw ``form`` once: its own instructions and the forms they draw."""
        if key is not None and key in self.drawn:
            return self.drawn[key]
        own = self.stream(key, form)
        resources = _entry(form, "/Resources") or inherited  # a form without resources uses its page's
        above = forms_above | {key} if key is not None else forms_above
        size = min(own.size + self.drawing(own.draws, resources, above), self.limit + 1)
        if key is not None:
            self.drawn[key] = size
        return size


def _page_size(page: Any, measure: _Measure) -> int:
    """Bytes of drawing instructions PDFium parses for a page: its contents and each form as often as they
    draw it, plus once every other stream it may parse (forms named but not seen drawn, Type 3 glyphs)."""
    size = 0
    for key, stream in _contents(page):
        own = measure.stream(key, stream)
        size += own.size + measure.drawing(own.draws, _entry(page, "/Resources"), frozenset())
    drawn = set(measure.visited)
    size += sum(measure.stream(key, stream).size for key, stream in _page_streams(page) if key not in drawn)
    return min(size, measure.limit + 1)


def _page_streams(page: Any) -> Iterator[tuple[tuple[int, int] | None, Any]]:
    """The streams PDFium may parse as drawing instructions for a pypdf page, each once, with its object number.

    These are the page's contents, every form its resources name, forms inside forms too (whether or not the
    page draws them), and the glyph procedures of its Type 3 fonts (PDFium parses each glyph once per font).
    Measured before the glyphs were counted: a 400 KB file with one 200 MB glyph took 15 s and 4.3 GB to read.
    """
    from pypdf.generic import DictionaryObject, StreamObject

    seen: set[tuple[int, int]] = set()
    for key, stream in _contents(page):
        if _first_time(key, seen):
            yield key, stream
    pending = [_entry(page, "/Resources")]
    while pending:
        resources = pending.pop()
        fonts = _entry(resources, "/Font")
        for ref in list(fonts.values()) if isinstance(fonts, DictionaryObject) else []:
            key, font = _resolve(ref)
            if not isinstance(font, DictionaryObject) or _entry(font, "/Subtype") != "/Type3":
                continue
            if not _first_time(key, seen):
                continue
            procs = _entry(font, "/CharProcs")
            for proc_ref in list(procs.values()) if isinstance(procs, DictionaryObject) else []:
                proc_key, proc = _resolve(proc_ref)
                if isinstance(proc, StreamObject) and _first_time(proc_key, seen):
                    yield proc_key, proc
            pending.append(_entry(font, "/Resources"))
        xobjects = _entry(resources, "/XObject")
        for ref in list(xobjects.values()) if isinstance(xobjects, DictionaryObject) else []:
            key, form = _resolve(ref)
            if _is_form(form) and _first_time(key, seen):
                yield key, form
                pending.append(_entry(form, "/Resources"))


def _contents(page: Any) -> Iterator[tuple[tuple[int, int] | None, Any]]:
    """A page's content streams (one, or an array of them) with their object numbers."""
    from pypdf.generic import ArrayObject, StreamObject

    contents = page.get("/Contents")
    listed = _resolve(contents)[1]
    for ref in listed if isinstance(listed, ArrayObject) else [contents]:
        key, stream = _resolve(ref)
        if isinstance(stream, StreamObject):
            yield key, stream


def _is_form(value: Any) -> bool:
    """Whether a resolved XObject is a form (drawing instructions), not an image (never decoded to read text)."""
    from pypdf.generic import StreamObject

    return isinstance(value, StreamObject) and _entry(value, "/Subtype") == "/Form"


def _first_time(key: tuple[int, int] | None, seen: set[tuple[int, int]]) -> bool:
    """True the first time an object number is met, and always for a direct value (it has none)."""
    if key is None:
        return True
    if key in seen:
        return False
    seen.add(key)
    return True


def _resolve(value: Any) -> tuple[tuple[int, int] | None, Any]:
    """A pypdf value with its object number (None for a direct value), references followed."""
    from pypdf.generic import IndirectObject

    if isinstance(value, IndirectObject):
        return (value.idnum, value.generation), value.get_object()
    return None, value


def _entry(container: Any, key: str) -> Any:
    """A pypdf dictionary's entry, its reference followed (``get`` leaves references as they are), or None."""
    from pypdf.generic import DictionaryObject

    return _resolve(container.get(key))[1] if isinstance(container, DictionaryObject) else None


def _filter_names(value: Any) -> list[str]:
    """A stream's ``/Filter`` (one name or an array of them) as a list of names."""
    value = _resolve(value)[1]
    names = [_resolve(item)[1] for item in (value if isinstance(value, list) else [value])]
    return [str(name) for name in names if isinstance(name, str)]


def _decoded_size(raw: bytes, filters: Sequence[str], limit: int, draws: Counter[bytes] | None = None) -> int:
    """How many bytes a stream decodes to, counted no further than just past ``limit``, output never kept;
    ``draws`` (if given) counts the XObject names the decoded instructions draw.

    Flate layers inflate a chunk at a time (a chain of them multiplies a bomb a thousandfold per layer). Text
    encodings and LZW or run-length layers before them are decoded whole: their input is part of the file and
    pypdf caps their output. Decoding stops at any other filter (an image's) or at a text encoding after a Flate
    layer (those shrink the data: what goes in is counted), and at damaged data, where PDFium stops too.
    """
    from pypdf import filters as pdf_filters
    from pypdf.errors import LimitReachedError

    decoders = {
        "a85": pdf_filters.ASCII85Decode.decode,
        "ahx": pdf_filters.ASCIIHexDecode.decode,
        "lzw": pdf_filters.LZWDecode.decode,
        "rl": pdf_filters.RunLengthDecode.decode,
    }
    chunks: Iterable[bytes] = (raw,)
    inflating = False
    for name in filters:
        kind = _FILTER_KINDS.get(name)
        if kind == "flate":
            chunks = _inflate(chunks)
            inflating = True
        elif kind is not None and not inflating:
            try:
                chunks = (decoders[kind](b"".join(chunks)),)
            except LimitReachedError:
                return limit + 1
            except Exception:  # damaged: count the bytes as they are
                break
        else:
            break
    size = 0
    tail = b""
    for chunk in chunks:
        size += len(chunk)
        if draws is not None:
            # operators across the seam with the chunk before (those wholly before it were counted then), then
            # the chunk's own: scanned in place, as a joined copy would double the memory a bomb costs here
            seam = tail + chunk[:_DRAW_TAIL]
            draws.update(m.group(1) for m in _DRAW_RE.finditer(seam) if m.start() < len(tail) < m.end())
            draws.update(m.group(1) for m in _DRAW_RE.finditer(chunk))
            tail = (tail + chunk)[-_DRAW_TAIL:] if len(chunk) < _DRAW_TAIL else chunk[-_DRAW_TAIL:]
        if size > limit:
            break
    return size


def _inflate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Inflate a zlib stream given in pieces, yielding at most ``_INFLATE_CHUNK`` bytes at a time."""
    decompressor = zlib.decompressobj()
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            for offset in range(0, len(view), _INFLATE_INPUT):
                pending: Any = view[offset : offset + _INFLATE_INPUT]
                while pending and not decompressor.eof:
                    yield decompressor.decompress(pending, _INFLATE_CHUNK)
                    pending = decompressor.unconsumed_tail
                if decompressor.eof:
                    return
    except zlib.error:
        return  # damaged data: PDFium keeps what inflated before the damage, and so does the count


def _scan_streams(data: bytes, page_mb: float, total_mb: float) -> None:
    """Measure every compressed stream in a file pypdf cannot parse, where pages cannot be told apart.

    Each stream must stay within the page limit and all of them within the document limit. Streams whose
    dictionary says they are images are skipped: PDFium does not decode images to read text, and a scanned page
    can inflate to tens of megabytes.
    """
    page_limit = int(page_mb * _MB)
    total = 0
    for match in _STREAM_RE.finditer(data):
        head = data[max(0, match.start() - 4096) : match.start()]
        head = head[head.rfind(b" obj") + 1 :]  # the stream's own dictionary
        found = _FILTER_RE.search(head)
        if found is None or b"/Image" in head:
            continue  # not compressed (no larger than the file), or an image
        filters = [name.decode("latin-1") for name in _NAME_RE.findall(found.group(1))]
        end = data.find(b"endstream", match.end())
        size = _decoded_size(data[match.end() : end if end >= 0 else len(data)], filters, page_limit)
        total += size
        if size > page_limit:
            raise DocumentTooLargeError(_content_message("part of it", page_mb))
        if total > total_mb * _MB:
            raise DocumentTooLargeError(_content_message("its content", total_mb))
