"""Read Word documents (.docx, and .docm with its macros ignored) into the shared reader shape.

The package is checked before anything parses it: the ZIP must stay under the configured member count and
uncompressed size (zip bombs), must hold the main document part, and no XML part may declare a DTD or an entity
(billion-laughs style expansion, external entities). Only then does python-docx load it; its lxml parser already
refuses to resolve entities and never touches the network, so the pre-scan is a second, independent guard.

The body is walked in document order straight from the XML, so paragraphs and tables stay interleaved as the
author wrote them, merged table cells appear once, content controls and tracked insertions are read, and
tracked deletions and field codes are not.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.config import Settings
from pipeline.document import BlockKind
from pipeline.errors import (
    CorruptDocumentError,
    DocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    HostileDocumentError,
    UnsupportedFormatError,
)
from pipeline.extract.base import ReaderOutput, TextBuilder
from pipeline.extract.metadata import count_words

W_NS: Final = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC_NS: Final = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_PKG_RELS_NS: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT_NS: Final = "http://schemas.openxmlformats.org/package/2006/content-types"
_RT_BASE: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_RT_OFFICE_DOCUMENT: Final = _RT_BASE + "officeDocument"
_RT_STYLES: Final = _RT_BASE + "styles"
_RT_NUMBERING: Final = _RT_BASE + "numbering"
_RT_HEADER: Final = _RT_BASE + "header"
_RT_FOOTER: Final = _RT_BASE + "footer"

_DOCX_MAIN_CT: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
# Main-part content types python-docx refuses although the body XML is identical to a .docx: macro-enabled
# documents and templates. Their content type is rewritten in memory so the text can be read.
_OTHER_MAIN_CTS: Final = frozenset(
    {
        "application/vnd.ms-word.document.macroenabled.main+xml",
        "application/vnd.ms-word.template.macroenabledtemplate.main+xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
    }
)
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DEFAULT_MAIN_PART: Final = "word/document.xml"
MACRO_WARNING: Final = "macro-enabled document: macros were ignored"
_WORDS_PER_PAGE: Final = 500

# DTDs and entity declarations have no place in OOXML; finding one means a crafted file.
_HOSTILE_XML = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_HOSTILE_XML_TEXT = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_HEADING_STYLE = re.compile(r"^heading\s*([1-9])\b", re.IGNORECASE)
_LIST_STYLE = re.compile(r"^list (bullet|number|paragraph)(?:\s*(\d))?", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
# Characters Word stores that carry no text: soft hyphen, zero-width space/joiners, BOM.
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\ufeff]")
_FALSE_VALUES: Final = frozenset({"0", "false", "off", "none"})
# Pseudo-headings (bold lines in documents without heading styles) longer than this are emphasised sentences.
_PSEUDO_HEADING_MAX_WORDS: Final = 12
_PSEUDO_HEADING_MAX_CHARS: Final = 100


def _w(tag: str) -> str:
    return f"{{{W_NS}}}{tag}"


_P, _TBL, _TR, _TC, _SDT, _SDT_CONTENT = _w("p"), _w("tbl"), _w("tr"), _w("tc"), _w("sdt"), _w("sdtContent")
_R, _T, _VAL = _w("r"), _w("t"), _w("val")
_CUSTOM_XML = _w("customXml")
_TXBX_CONTENT = _w("txbxContent")
_FALLBACK = f"{{{MC_NS}}}Fallback"
# Paragraph children that wrap runs whose text is shown: hyperlinks, tracked insertions, content controls...
_RUN_CONTAINERS: Final = frozenset(
    _w(t) for t in ("hyperlink", "ins", "smartTag", "customXml", "fldSimple", "moveTo", "dir", "bdo", "sdtContent")
)
_RUN_TEXT_SPACE: Final = frozenset(_w(t) for t in ("tab", "ptab"))
# Line breaks are kept as "\n" until the paragraph is cleaned, so a multi-line bold paragraph is no pseudo-heading.
_RUN_LINE_BREAK: Final = frozenset(_w(t) for t in ("br", "cr"))


# --------------------------------------------------------------------------------------------------------------
# Package checks (before any parsing)
# --------------------------------------------------------------------------------------------------------------


def _safe_parser() -> Any:
    """An lxml parser that cannot expand entities, load a DTD or reach the network."""
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _parse_small_xml(blob: bytes, what: str) -> Any:
    from lxml import etree

    try:
        return etree.fromstring(blob, _safe_parser())
    except etree.XMLSyntaxError as exc:
        raise CorruptDocumentError(
            f"not a valid Word document: {what} is damaged ({exc}); open it in Word and save it again"
        ) from exc


def _is_hostile_xml(blob: bytes) -> bool:
    """True when an XML part declares a DTD or an entity, in UTF-8 or in a UTF-16/32 encoding."""
    if _HOSTILE_XML.search(blob):
        return True
    # A part may be UTF-16 or UTF-32 encoded, hiding the ASCII pattern between NUL bytes.
    if b"\x00" in blob[:4]:
        for encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
            if _HOSTILE_XML_TEXT.search(blob.decode(encoding, errors="ignore")):
                return True
    return False


def _open_zip(data: bytes) -> zipfile.ZipFile:
    if data.startswith(_OLE2_MAGIC):
        if "EncryptedPackage".encode("utf-16-le") in data or "EncryptionInfo".encode("utf-16-le") in data:
            raise EncryptedDocumentError(
                "the Word document is protected with a password: remove the password in Word and upload it again"
            )
        raise UnsupportedFormatError(
            "this is an old-style Word 97-2003 file (.doc), not a .docx: save it as .docx or PDF and upload that"
        )
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise CorruptDocumentError(
            "not a valid Word document: the file is damaged or truncated (its ZIP container cannot be opened); "
            "open it in Word, save it again and upload the new copy"
        ) from exc


def _check_limits(zf: zipfile.ZipFile, settings: Settings) -> list[zipfile.ZipInfo]:
    """Refuse archives with too many members or too much uncompressed data before reading any of them.

    The declared uncompressed sizes are trustworthy as a bound: :mod:`zipfile` never returns more bytes than a
    member declares, so a lying header cannot make a later read larger than what is checked here.
    """
    infos = zf.infolist()
    if len(infos) > settings.max_zip_members:
        raise DocumentTooLargeError(
            f"the Word document holds {len(infos)} internal parts, over the limit of {settings.max_zip_members}: "
            "this is not a normal document (possible zip bomb); save it again from Word, or raise "
            "QPM_MAX_ZIP_MEMBERS if it is genuine"
        )
    total = sum(max(info.file_size, 0) for info in infos)
    limit = settings.max_uncompressed_mb * 1024 * 1024
    if total > limit:
        raise DocumentTooLargeError(
            f"the Word document expands to {total / 1024 / 1024:.0f} MB when unpacked, over the limit of "
            f"{settings.max_uncompressed_mb:g} MB (possible zip bomb): remove large embedded images or objects, "
            "or raise QPM_MAX_UNCOMPRESSED_MB if it is genuine"
        )
    if any(info.flag_bits & 0x1 for info in infos):
        raise EncryptedDocumentError(
            "parts of the Word document are encrypted: remove the password in Word and upload it again"
        )
    return infos


@dataclass
class _Package:
    """What the pre-parse checks learnt about the package."""

    content_types_xml: bytes
    main_part: str
    main_content_type: str
    has_vba: bool


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, ValueError) as exc:
        raise CorruptDocumentError(
            f"not a valid Word document: the internal part {info.filename!r} is damaged; "
            "open it in Word, save it again and upload the new copy"
        ) from exc


def _inspect_package(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> _Package:
    """Scan every XML part for DTDs/entities and find the main document part and its content type."""
    by_name = {info.filename: info for info in infos}
    ct_info = by_name.get("[Content_Types].xml")
    if ct_info is None:
        raise CorruptDocumentError(
            "not a complete Word document: [Content_Types].xml is missing; open it in Word and save it again"
        )
    ct_blob = _read_member(zf, ct_info)
    if _is_hostile_xml(ct_blob):
        raise HostileDocumentError(
            "the Word document declares an XML DTD or entity, which documents saved by Word never do "
            "(a known attack): the file was refused; save the policy again from Word or as PDF"
        )
    ct_root = _parse_small_xml(ct_blob, "[Content_Types].xml")
    defaults = {
        (el.get("Extension") or "").lower(): (el.get("ContentType") or "").lower()
        for el in ct_root.iter(f"{{{_CT_NS}}}Default")
    }
    overrides = {
        (el.get("PartName") or "").lstrip("/").lower(): (el.get("ContentType") or "").lower()
        for el in ct_root.iter(f"{{{_CT_NS}}}Override")
    }

    def content_type(name: str) -> str:
        return overrides.get(name.lower()) or defaults.get(name.rsplit(".", 1)[-1].lower(), "")

    for info in infos:
        name = info.filename
        if name == "[Content_Types].xml" or info.is_dir():
            continue
        ctype = content_type(name)
        # Scan what python-docx would parse as XML; images (SVG legitimately carries a DOCTYPE) are never parsed.
        is_xml = ctype.endswith("xml") or name.lower().endswith((".xml", ".rels"))
        if not is_xml or (ctype.startswith("image/") and not name.lower().endswith((".xml", ".rels"))):
            continue
        if _is_hostile_xml(_read_member(zf, info)):
            raise HostileDocumentError(
                f"the Word document declares an XML DTD or entity in {name!r}, which documents saved by Word "
                "never do (a known attack): the file was refused; save the policy again from Word or as PDF"
            )

    main_part = _DEFAULT_MAIN_PART
    rels_info = by_name.get("_rels/.rels")
    if rels_info is not None:
        rels_root = _parse_small_xml(_read_member(zf, rels_info), "_rels/.rels")
        for rel in rels_root.iter(f"{{{_PKG_RELS_NS}}}Relationship"):
            if rel.get("Type") == _RT_OFFICE_DOCUMENT and rel.get("TargetMode") != "External":
                main_part = (rel.get("Target") or _DEFAULT_MAIN_PART).lstrip("/")
                break
    if main_part not in by_name:
        raise CorruptDocumentError(
            f"not a complete Word document: {main_part} is missing; open it in Word, save it again and "
            "upload the new copy"
        )
    has_vba = any(name.lower().endswith("vbaproject.bin") for name in by_name)
    return _Package(ct_blob, main_part, content_type(main_part), has_vba)


def _with_docx_content_type(zf: zipfile.ZipFile, package: _Package) -> bytes:
    """Repack the archive with the main part declared as a plain .docx, so python-docx accepts a .docm/.dotx.

    Only [Content_Types].xml changes. The macro project stays an opaque blob python-docx never interprets.
    """
    patched = re.sub(
        rb'ContentType="application/vnd\.(?:ms-word\.(?:document\.macroEnabled|template\.macroEnabledTemplate)'
        rb'|openxmlformats-officedocument\.wordprocessingml\.template)\.main\+xml"',
        b'ContentType="' + _DOCX_MAIN_CT.encode() + b'"',
        package.content_types_xml,
        flags=re.IGNORECASE,
    )
    out = io.BytesIO()
    # Stored, not deflated: the copy lives only in memory and compressing it again would be wasted time.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in zf.infolist():
            blob = patched if info.filename == "[Content_Types].xml" else _read_member(zf, info)
            dst.writestr(info.filename, blob)
    return out.getvalue()


# --------------------------------------------------------------------------------------------------------------
# Styles and numbering
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Style:
    name: str = ""
    based_on: str | None = None
    outline_level: int | None = None  # 0-based as stored; 9 means body text
    num_id: str | None = None
    ilvl: int | None = None
    bold: bool | None = None


@dataclass
class _ResolvedStyle:
    """A paragraph or character style with inherited properties filled in."""

    heading_level: int | None = None
    list_kind: str | None = None  # "bullet" | "number" | "paragraph"
    list_level: int | None = None
    num_id: str | None = None
    ilvl: int | None = None
    bold: bool = False


def _on_off(el: Any) -> bool | None:
    """An OOXML on/off property (``<w:b/>``, ``<w:b w:val="0"/>``): None when absent."""
    if el is None:
        return None
    return (el.get(_VAL) or "true").lower() not in _FALSE_VALUES


def _int_or(el: Any, default: int) -> int:
    value = _int_val(el)
    return default if value is None else value


def _int_val(el: Any) -> int | None:
    if el is None:
        return None
    try:
        return int(el.get(_VAL) or "")
    except ValueError:
        return None


class _Styles:
    """Style lookup with basedOn inheritance (heading level, outline level, list numbering, bold)."""

    def __init__(self, root: Any | None) -> None:
        self._styles: dict[str, _Style] = {}
        self._resolved: dict[str, _ResolvedStyle] = {}
        if root is None:
            return
        for el in root.iter(_w("style")):
            style_id = el.get(_w("styleId"))
            if not style_id:
                continue
            name_el = el.find(_w("name"))
            based_el = el.find(_w("basedOn"))
            ppr = el.find(_w("pPr"))
            rpr = el.find(_w("rPr"))
            style = _Style(
                name=(name_el.get(_VAL) or "") if name_el is not None else "",
                based_on=based_el.get(_VAL) if based_el is not None else None,
            )
            if ppr is not None:
                style.outline_level = _int_val(ppr.find(_w("outlineLvl")))
                num_pr = ppr.find(_w("numPr"))
                if num_pr is not None:
                    num_el = num_pr.find(_w("numId"))
                    style.num_id = num_el.get(_VAL) if num_el is not None else None
                    style.ilvl = _int_val(num_pr.find(_w("ilvl")))
            if rpr is not None:
                style.bold = _on_off(rpr.find(_w("b")))
            self._styles[style_id] = style

    def character_bold(self, style_id: str | None) -> bool | None:
        """Whether a character style (e.g. "Strong") makes text bold; None when it does not say."""
        style = self._styles.get(style_id or "")
        return style.bold if style is not None else None

    def resolve(self, style_id: str | None) -> _ResolvedStyle:
        """The style's effective properties; an unknown or missing id resolves to plain body text."""
        if not style_id:
            return _ResolvedStyle()
        cached = self._resolved.get(style_id)
        if cached is not None:
            return cached
        chain: list[_Style] = []
        seen: set[str] = set()
        current: str | None = style_id
        # Walk basedOn up to the root; the seen-set stops loops in damaged files.
        while current and current not in seen and current in self._styles:
            seen.add(current)
            chain.append(self._styles[current])
            current = self._styles[current].based_on
        resolved = _ResolvedStyle()
        if chain:
            name = chain[0].name
            heading = _HEADING_STYLE.match(name)
            if heading:
                resolved.heading_level = int(heading.group(1))
            elif name.strip().lower() == "title":
                resolved.heading_level = 1
            list_match = _LIST_STYLE.match(name)
            if list_match:
                resolved.list_kind = list_match.group(1).lower()
                resolved.list_level = int(list_match.group(2)) if list_match.group(2) else 1
        for style in chain:  # nearest definition wins
            if resolved.heading_level is None and style.outline_level is not None and 0 <= style.outline_level < 9:
                resolved.heading_level = style.outline_level + 1
            if resolved.num_id is None and style.num_id is not None:
                resolved.num_id = style.num_id
                resolved.ilvl = style.ilvl
        resolved.bold = next((s.bold for s in chain if s.bold is not None), False)
        self._resolved[style_id] = resolved
        return resolved


@dataclass
class _Level:
    fmt: str = "decimal"
    text: str = "%1."
    start: int = 1


@dataclass
class _Num:
    abstract_id: str
    start_overrides: dict[int, int] = field(default_factory=dict)


def _roman(n: int) -> str:
    pairs: tuple[tuple[int, str], ...] = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"))
    pairs += ((90, "xc"), (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))
    out = []
    for value, letters in pairs:
        while n >= value:
            out.append(letters)
            n -= value
    return "".join(out)


def _letters(n: int) -> str:
    # Word repeats the letter after z: a..z, aa..zz, aaa...
    n = max(n, 1)
    return chr(ord("a") + (n - 1) % 26) * ((n - 1) // 26 + 1)


_NUMBER_FORMATS: Final[dict[str, Callable[[int], str]]] = {
    "decimal": str,
    "decimalZero": lambda n: f"{n:02d}",
    "lowerLetter": _letters,
    "upperLetter": lambda n: _letters(n).upper(),
    "lowerRoman": _roman,
    "upperRoman": lambda n: _roman(n).upper(),
    "ordinal": lambda n: f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}",
    "cardinalText": str,
    "ordinalText": str,
}


class _Numbering:
    """Computes list labels ("3.", "(b)", "2.1") from numbering.xml, counting as Word does in the common cases.

    Paragraphs sharing an abstract list continue one sequence unless their list instance restarts it with a
    start override, which is how Word records "restart numbering". Anything exotic (picture bullets, list styles
    linked through numStyleLink, legal numbering) degrades to keeping the paragraph text without a computed label.
    """

    def __init__(self, root: Any | None) -> None:
        self._abstract: dict[str, dict[int, _Level]] = {}
        self._nums: dict[str, _Num] = {}
        self._counters: dict[str, list[int | None]] = {}
        if root is None:
            return
        for abstract in root.iter(_w("abstractNum")):
            levels: dict[int, _Level] = {}
            for lvl in abstract.iter(_w("lvl")):
                try:
                    ilvl = int(lvl.get(_w("ilvl")) or "0")
                except ValueError:
                    continue
                fmt_el, text_el = lvl.find(_w("numFmt")), lvl.find(_w("lvlText"))
                levels[ilvl] = _Level(
                    fmt=(fmt_el.get(_VAL) or "decimal") if fmt_el is not None else "decimal",
                    text=(text_el.get(_VAL) or "") if text_el is not None else "",
                    start=_int_or(lvl.find(_w("start")), 1),
                )
            self._abstract[abstract.get(_w("abstractNumId")) or ""] = levels
        for num in root.iter(_w("num")):
            abstract_el = num.find(_w("abstractNumId"))
            if abstract_el is None:
                continue
            entry = _Num(abstract_el.get(_VAL) or "")
            for override in num.iter(_w("lvlOverride")):
                start = _int_val(override.find(_w("startOverride")))
                if start is not None:
                    try:
                        entry.start_overrides[int(override.get(_w("ilvl")) or "0")] = start
                    except ValueError:
                        continue
            self._nums[num.get(_w("numId")) or ""] = entry

    def label(self, num_id: str, ilvl: int) -> tuple[str, bool] | None:
        """Advance the list's counter; return (label, is_bullet), or None when the label cannot be derived."""
        num = self._nums.get(num_id)
        if num is None:
            return None
        levels = self._abstract.get(num.abstract_id)
        if not levels or ilvl not in levels:
            return None
        level = levels[ilvl]
        if level.fmt == "bullet":
            return "•", True
        if level.fmt == "none":
            return "", False
        key = f"num:{num_id}" if num.start_overrides else f"abstract:{num.abstract_id}"
        counters = self._counters.setdefault(key, [None] * 9)
        ilvl = min(max(ilvl, 0), 8)

        def start_of(i: int) -> int:
            if i in num.start_overrides:
                return num.start_overrides[i]
            return levels[i].start if i in levels else 1

        current = counters[ilvl]
        counters[ilvl] = start_of(ilvl) if current is None else current + 1
        for deeper in range(ilvl + 1, 9):  # a new item at this level restarts every deeper level
            counters[deeper] = None

        def render(match: re.Match[str]) -> str:
            i = int(match.group(1)) - 1
            value = counters[i] if 0 <= i < 9 and counters[i] is not None else start_of(i)
            fmt = levels[i].fmt if i in levels else "decimal"
            formatter = _NUMBER_FORMATS.get(fmt)
            return formatter(value or 1) if formatter else "\x00"

        rendered = re.sub(r"%([1-9])", render, level.text)
        if "\x00" in rendered or not rendered.strip():
            return None
        return rendered.strip(), False


# --------------------------------------------------------------------------------------------------------------
# Body walk
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One block before pseudo-heading detection decides the final kinds."""

    kind: BlockKind
    text: str
    level: int = 0
    label: str = ""
    bold_line: bool = False  # short, single-line, entirely bold: a heading candidate in unstyled documents


def _clean(text: str) -> str:
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


class _BodyWalker:
    """Turns body XML into :class:`_Item` s in document order."""

    def __init__(self, styles: _Styles, numbering: _Numbering) -> None:
        self.styles = styles
        self.numbering = numbering
        self.styled_headings = 0
        self.has_images = False
        self.alt_chunks = 0

    # --- paragraphs ---

    def _run_text(self, run: Any, out: list[str], bold: list[bool], para_bold: bool) -> None:
        run_chars: list[str] = []
        for child in run:
            tag = child.tag
            if tag == _T:
                run_chars.append(child.text or "")
            elif tag in _RUN_TEXT_SPACE:
                run_chars.append(" ")
            elif tag in _RUN_LINE_BREAK:
                run_chars.append("\n")
            elif tag == _w("noBreakHyphen"):
                run_chars.append("-")
            elif tag == _w("drawing") or tag == _w("pict") or tag == f"{{{MC_NS}}}AlternateContent":
                self.has_images = True
        text = "".join(run_chars)
        if text.strip():
            rpr = run.find(_w("rPr"))
            is_bold: bool | None = None
            if rpr is not None:
                is_bold = _on_off(rpr.find(_w("b")))
                if is_bold is None:
                    rstyle = rpr.find(_w("rStyle"))
                    if rstyle is not None:
                        is_bold = self.styles.character_bold(rstyle.get(_VAL))
            bold.append(para_bold if is_bold is None else is_bold)
        out.append(text)

    def _collect_runs(self, container: Any, out: list[str], bold: list[bool], para_bold: bool) -> None:
        for child in container:
            tag = child.tag
            if tag == _R:
                self._run_text(child, out, bold, para_bold)
            elif tag in _RUN_CONTAINERS:
                self._collect_runs(child, out, bold, para_bold)
            elif tag == _SDT:
                content = child.find(_SDT_CONTENT)
                if content is not None:
                    self._collect_runs(content, out, bold, para_bold)
            # w:del / w:moveFrom (tracked deletions), field codes, bookmarks and math are not shown text.

    def paragraph(self, p: Any) -> Iterator[_Item]:
        """The paragraph's item, followed by any text boxes anchored in it."""
        ppr = p.find(_w("pPr"))
        style_id = None
        p_outline: int | None = None
        p_num_id: str | None = None
        p_ilvl: int | None = None
        if ppr is not None:
            pstyle = ppr.find(_w("pStyle"))
            style_id = pstyle.get(_VAL) if pstyle is not None else None
            p_outline = _int_val(ppr.find(_w("outlineLvl")))
            num_pr = ppr.find(_w("numPr"))
            if num_pr is not None:
                num_el = num_pr.find(_w("numId"))
                p_num_id = num_el.get(_VAL) if num_el is not None else None
                p_ilvl = _int_val(num_pr.find(_w("ilvl")))
        style = self.styles.resolve(style_id)

        parts: list[str] = []
        bold_runs: list[bool] = []
        self._collect_runs(p, parts, bold_runs, style.bold)
        raw = "".join(parts)
        text = _clean(raw)
        if text:
            yield self._classify(text, raw, style, p_outline, p_num_id, p_ilvl, bold_runs)
        yield from self._text_boxes(p)

    def _classify(
        self,
        text: str,
        raw: str,
        style: _ResolvedStyle,
        p_outline: int | None,
        p_num_id: str | None,
        p_ilvl: int | None,
        bold_runs: list[bool],
    ) -> _Item:
        # Numbering: paragraph numPr overrides the style's; numId 0 explicitly switches numbering off.
        num_id = p_num_id if p_num_id is not None else style.num_id
        ilvl = p_ilvl if p_ilvl is not None else (style.ilvl or 0)
        label_info = self.numbering.label(num_id, ilvl) if num_id and num_id != "0" else None

        heading_level = None
        if p_outline is not None:
            heading_level = p_outline + 1 if 0 <= p_outline < 9 else None
        elif style.heading_level is not None:
            heading_level = style.heading_level
        if heading_level is not None:
            self.styled_headings += 1
            # A numbered heading ("3. Limits of confidentiality") keeps its number: section paths need it.
            if label_info and label_info[0] and not label_info[1]:
                text = f"{label_info[0]} {text}"
            return _Item("heading", text, level=heading_level)

        is_list = (num_id is not None and num_id != "0") or style.list_kind is not None
        if is_list:
            level = (p_ilvl + 1) if p_ilvl is not None else (style.list_level or (ilvl + 1))
            label = ""
            if label_info is not None:
                label, _is_bullet = label_info
            elif style.list_kind == "bullet":
                label = "•"
            if label:
                text = f"{label} {text}"
            return _Item("list_item", text, level=level, label=label)

        bold_line = (
            bool(bold_runs)
            and all(bold_runs)
            and "\n" not in raw.strip()
            and len(text) <= _PSEUDO_HEADING_MAX_CHARS
            and len(text.split()) <= _PSEUDO_HEADING_MAX_WORDS
            and not text.endswith((".", ";", ","))
        )
        return _Item("paragraph", text, bold_line=bold_line)

    def _text_boxes(self, p: Any) -> Iterator[_Item]:
        for box in p.iter(_TXBX_CONTENT):
            # VML fallbacks duplicate the DrawingML text box; nested boxes are reached through their parent.
            ancestor = box.getparent()
            skip = False
            while ancestor is not None and ancestor is not p:
                if ancestor.tag == _FALLBACK or ancestor.tag == _TXBX_CONTENT:
                    skip = True
                    break
                ancestor = ancestor.getparent()
            if not skip:
                yield from self.blocks(box)

    # --- tables ---

    def _cell_is_continuation(self, tc: Any) -> bool:
        tcpr = tc.find(_w("tcPr"))
        if tcpr is None:
            return False
        for tag in ("vMerge", "hMerge"):
            merge = tcpr.find(_w(tag))
            # vMerge without val (or "continue") is the lower part of a vertically merged cell: shown once above.
            if merge is not None and (merge.get(_VAL) or "continue") != "restart":
                return True
        return False

    def _row_cells(self, tr: Any) -> list[Any]:
        cells: list[Any] = []
        for child in tr:
            if child.tag == _TC:
                cells.append(child)
            elif child.tag in (_SDT, _CUSTOM_XML):  # cells wrapped in content controls
                content = child.find(_SDT_CONTENT) if child.tag == _SDT else child
                if content is not None:
                    cells.extend(c for c in content if c.tag == _TC)
        return cells

    def _rows(self, tbl: Any) -> list[Any]:
        rows: list[Any] = []
        for child in tbl:
            if child.tag == _TR:
                rows.append(child)
            elif child.tag in (_SDT, _CUSTOM_XML):
                content = child.find(_SDT_CONTENT) if child.tag == _SDT else child
                if content is not None:
                    rows.extend(r for r in content if r.tag == _TR)
        return rows

    def table(self, tbl: Any) -> Iterator[_Item]:
        rows = [[c for c in self._row_cells(tr) if not self._cell_is_continuation(c)] for tr in self._rows(tbl)]
        # A one-column table is a box around ordinary content (a layout table): read its content as body text.
        if rows and all(len(cells) <= 1 for cells in rows):
            for cells in rows:
                for tc in cells:
                    yield from self.blocks(tc)
            return
        for cells in rows:
            texts: list[str] = []
            nested: list[Any] = []
            for tc in cells:
                cell_parts: list[str] = []
                for item in self.blocks(tc, nested_tables=nested):
                    cell_parts.append(item.text)
                cell_text = _clean(" ".join(cell_parts))
                if cell_text:
                    texts.append(cell_text)
            if texts:
                yield _Item("table_row", " | ".join(texts))
            # Tables inside a cell are flattened: their rows follow the row that holds them.
            for inner in nested:
                yield from self.table(inner)

    # --- containers ---

    def blocks(self, container: Any, nested_tables: list[Any] | None = None) -> Iterator[_Item]:
        """Items of a body, cell, text box or content control, in order.

        With ``nested_tables`` given (inside a table cell), tables are collected there instead of read.
        """
        for child in container:
            tag = child.tag
            if tag == _P:
                yield from self.paragraph(child)
            elif tag == _TBL:
                if nested_tables is not None:
                    nested_tables.append(child)
                else:
                    yield from self.table(child)
            elif tag == _SDT:
                content = child.find(_SDT_CONTENT)
                if content is not None:
                    yield from self.blocks(content, nested_tables)
            elif tag == _CUSTOM_XML:
                yield from self.blocks(child, nested_tables)
            elif tag == _w("altChunk"):
                self.alt_chunks += 1


def _mark_pseudo_headings(items: list[_Item]) -> None:
    """In documents that use no heading styles, promote short bold lines followed by body text to level-2 headings.

    Many policies are typed with bold lines for headings instead of Word's heading styles; without this, the
    section structure later stages rely on would be lost.
    """
    for i, item in enumerate(items):
        if not item.bold_line or i + 1 >= len(items):
            continue
        following = items[i + 1]
        if following.bold_line:  # two bold lines in a row: emphasis, not a heading over body text
            continue
        item.kind = "heading"
        item.level = 2


# --------------------------------------------------------------------------------------------------------------
# Headers and footers
# --------------------------------------------------------------------------------------------------------------


def _header_lines(document: Any, walker: _BodyWalker) -> list[str]:
    """Text lines of every header and footer part, sections first in document order, deduplicated."""
    part = document.part
    rels = part.rels
    ordered: list[str] = []
    body = document.element.body
    r_id_attr = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    # Headers before footers, each in section order, then any part no section references.
    for ref_tag in (_w("headerReference"), _w("footerReference")):
        for sect_pr in body.iter(_w("sectPr")):
            for ref in sect_pr.iter(ref_tag):
                r_id = ref.get(r_id_attr)
                if r_id and r_id not in ordered:
                    ordered.append(r_id)
    for reltype in (_RT_HEADER, _RT_FOOTER):
        ordered += [r_id for r_id, rel in rels.items() if rel.reltype == reltype and r_id not in ordered]

    lines: list[str] = []
    seen: set[str] = set()
    for r_id in ordered:
        rel = rels.get(r_id)
        if rel is None or rel.is_external or rel.reltype not in (_RT_HEADER, _RT_FOOTER):
            continue
        element = getattr(rel.target_part, "element", None)
        if element is None:
            continue
        for item in walker.blocks(element):
            if item.text not in seen:
                seen.add(item.text)
                lines.append(item.text)
    return lines


def _related_element(part: Any, reltype: str) -> Any | None:
    for rel in part.rels.values():
        if rel.reltype == reltype and not rel.is_external:
            return getattr(rel.target_part, "element", None)
    return None


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def read_docx(data: bytes, settings: Settings, *, macro_enabled: bool = False) -> ReaderOutput:
    """Read a .docx (or .docm/.dotx) file's text, structure, header/footer lines and declared title.

    DOCX has no pages: page layout is decided by Word at display time. ``pages`` is therefore an estimate,
    ``max(1, round(words / 500))``, useful only for size limits and reporting; blocks carry ``page=None`` and
    ``page_starts`` stays empty.

    Macros in a .docm are never executed or parsed: only the document XML is read, and a warning says the
    macros were ignored.

    Raises:
        CorruptDocumentError: damaged ZIP container, missing main part, XML that cannot be parsed.
        DocumentTooLargeError: too many ZIP members or too much uncompressed data (zip bomb).
        HostileDocumentError: an XML part declares a DTD or entities.
        EncryptedDocumentError: a password-protected Word file.
        UnsupportedFormatError: an old binary .doc file.
        EmptyDocumentError: the document holds no text.
    """
    try:
        return _read_docx(data, settings, macro_enabled=macro_enabled)
    except DocumentError:
        raise
    except Exception as exc:  # a bug in a library on a malformed file must not stop the whole batch
        raise CorruptDocumentError(
            f"the Word document could not be read ({type(exc).__name__}: {exc}); open it in Word, "
            "save it again (or export it as PDF) and upload the new copy"
        ) from exc


def _read_docx(data: bytes, settings: Settings, *, macro_enabled: bool) -> ReaderOutput:
    zf = _open_zip(data)
    with zf:
        infos = _check_limits(zf, settings)
        package = _inspect_package(zf, infos)
        warnings: list[str] = []
        main_ct = package.main_content_type
        if macro_enabled or package.has_vba or "macroenabled" in main_ct:
            warnings.append(MACRO_WARNING)
        if main_ct and main_ct != _DOCX_MAIN_CT:
            if main_ct not in _OTHER_MAIN_CTS:
                raise UnsupportedFormatError(
                    f"this ZIP file is not a Word document (its main part is {main_ct!r}): "
                    "save the policy as DOCX or PDF and upload that"
                )
            data = _with_docx_content_type(zf, package)

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CorruptDocumentError(
            f"not a valid Word document ({exc}): open it in Word, save it again and upload the new copy"
        ) from exc
    except Exception as exc:
        from lxml import etree

        if isinstance(exc, etree.XMLSyntaxError):
            raise CorruptDocumentError(
                f"not a valid Word document: its XML is damaged ({exc}); open it in Word, save it again "
                "and upload the new copy"
            ) from exc
        raise

    styles = _Styles(_related_element(document.part, _RT_STYLES))
    numbering = _Numbering(_related_element(document.part, _RT_NUMBERING))
    walker = _BodyWalker(styles, numbering)
    items = list(walker.blocks(document.element.body))
    if walker.styled_headings == 0:
        _mark_pseudo_headings(items)

    builder = TextBuilder()
    for item in items:
        builder.add_block(item.text, item.kind, level=item.level, label=item.label)
    text = builder.text()
    if not builder.blocks:
        hint = (
            "it holds only images: if it is a scan, send a PDF with a text layer (run OCR first)"
            if walker.has_images
            else "upload the version that holds the policy text"
        )
        raise EmptyDocumentError(f"the Word document contains no text: {hint}")
    if walker.alt_chunks:
        warnings.append(
            f"{walker.alt_chunks} embedded document part(s) (altChunk) were not read: "
            "open the file in Word and save it again to merge them into the text"
        )

    # A fresh walker for headers so their numbering and counters do not disturb the body's.
    headers = _header_lines(document, _BodyWalker(styles, _Numbering(None)))
    title = ""
    try:
        title = (document.core_properties.title or "").strip()
    except Exception:  # core properties are optional and sometimes malformed; the title is only a hint
        title = ""
    words = count_words(text)
    return ReaderOutput(
        text=text,
        blocks=builder.blocks,
        pages=max(1, round(words / _WORDS_PER_PAGE)),
        headers=headers,
        title_hint=title,
        warnings=warnings,
    )
