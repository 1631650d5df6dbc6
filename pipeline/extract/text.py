"""Read plain-text and Markdown policies into the shared reader shape.

Text files come from many places (exports, e-mails, copy-paste from Word), so the reader is forgiving:
it guesses the encoding, rejoins hard-wrapped lines, recognises the list markers Word leaves behind when text is
pasted ("\\uf0b7", "•", "3.1", "(a)") and, for plain text, guesses headings from short standalone lines.
Markdown headings, lists and pipe tables are read from their syntax.

Every block's text is the cleaned text (markers normalised, Markdown emphasis removed); offsets refer to the
assembled text, so ``text[block.start:block.end]`` is always the block's text.
"""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass, field
from typing import Final

from pipeline.config import Settings
from pipeline.document import BlockKind
from pipeline.errors import CorruptDocumentError, EmptyDocumentError, UnsupportedFormatError
from pipeline.extract.base import ReaderOutput, TextBuilder
from pipeline.extract.metadata import count_words

CP1252_WARNING: Final = "decoded as Windows-1252: the file is not valid UTF-8, so some characters may be wrong"
_WORDS_PER_PAGE: Final = 500
# Share of control/undecodable characters above which the "text" is really binary data. Real text has none
# beyond tab, line breaks and form feeds; random bytes decode to about a quarter of control characters.
_MAX_JUNK_RATIO: Final = 0.01
_MAX_JUNK_ABSOLUTE: Final = 2
# Control characters (C0 and C1) other than tab, line feed, vertical tab, form feed, carriage return and NEL, plus
# U+FFFD, the replacement for bytes Windows-1252 leaves undefined.
_JUNK = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufffd]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # after line breaks are normalised: all but tab/LF

_BULLETS: Final = "-*+•\uf0b7\uf0a7▪◦‣·–—○●■□➢➤►✓"
# A list marker at the start of a line: a bullet, a (multi-level) number, a letter or a roman numeral.
# Bare numbers ("2025 was...") are not markers: a single number needs "." or ")"; "3.1" needs no punctuation.
_LIST_MARKER = re.compile(
    r"^(?P<indent>[ \t]*)(?P<marker>"
    rf"[{re.escape(_BULLETS)}]"
    r"|\d{1,3}(?:\.\d{1,3})+\.?"
    r"|\d{1,3}[.)]"
    r"|\((?:\d{1,3}|[a-zA-Z]|[ivxlcIVXLC]{1,6})\)"
    r"|(?:[a-zA-Z]|[ivxlcIVXLC]{1,6})[.)]"
    r")[ \t]+(?P<rest>\S.*)$"
)
_NUMBERED = re.compile(r"^\d{1,3}(?:\.\d{1,3})*\.?$")
_UNDERLINE = re.compile(r"^[ \t]*([=\-_*~#])\1{2,}[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_TABLE_SEPARATOR = re.compile(r"^[ \t]*\|?[ \t]*:?-{1,}:?[ \t]*(?:\|[ \t]*:?-{1,}:?[ \t]*)*\|?[ \t]*$")
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+")
_BLOCKQUOTE = re.compile(r"^ {0,3}>[ \t]?")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])")
_EMPHASIS = re.compile(r"\*\*|__|`")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_NBSP_RUN = re.compile(r" *\xa0[\xa0 ]*")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = (".", "!", "?", ":", ";")
# Plain-text heading candidates: a standalone short line. Longer lines are sentences that happen to stand alone.
_HEADING_MAX_WORDS: Final = 12
_HEADING_MAX_CHARS: Final = 80
# A Markdown line that is bold from end to end ("**4.9 Review**", often with a hard break after it): how
# documents converted from Word or PDF mark the headings their source had no heading style for.
_BOLD_LINE = re.compile(r"^ {0,3}(\*\*|__)(?=\S)((?:(?!\1).)+?)(?<=\S)\1\\?$")


@dataclass
class _Pending:
    """A block being accumulated line by line."""

    kind: BlockKind
    lines: list[str] = field(default_factory=list)
    level: int = 0
    label: str = ""
    indent: int = 0
    followed_by_blank: bool = False
    bold_line: bool = False  # Markdown: a whole line in bold, a heading candidate

    def text(self) -> str:
        return _SPACES.sub(" ", " ".join(line.strip() for line in self.lines)).strip()


# --------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------


def decode_bytes(data: bytes) -> tuple[str, list[str]]:
    """Decode text bytes: UTF-8 (BOM stripped), UTF-16/32 with a BOM, else Windows-1252 with a warning.

    Raises:
        UnsupportedFormatError: binary data (NUL bytes or many control characters).
        CorruptDocumentError: a UTF-16/32 byte-order mark followed by undecodable data.
    """
    warnings: list[str] = []
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        text = _decode_with_bom(data, "utf-32")
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = _decode_with_bom(data, "utf-16")
    else:
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        if b"\x00" in data:
            raise UnsupportedFormatError(
                "the file holds binary data (NUL bytes), not text: save the policy as PDF, DOCX or UTF-8 text "
                "and upload that"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Windows-1252 maps almost every byte; the five it leaves undefined become U+FFFD and count as junk.
            text = data.decode("cp1252", errors="replace")
            warnings.append(CP1252_WARNING)
    text = text.rstrip("\x1a")  # a DOS end-of-file marker is not content
    junk = len(_JUNK.findall(text))
    if junk > max(_MAX_JUNK_ABSOLUTE, _MAX_JUNK_RATIO * len(text)):
        raise UnsupportedFormatError(
            "the file holds binary data (control characters), not text: save the policy as PDF, DOCX or UTF-8 "
            "text and upload that"
        )
    return text, warnings


def _decode_with_bom(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec)  # the codec reads and removes the byte-order mark
    except UnicodeDecodeError as exc:
        raise CorruptDocumentError(
            f"the file starts with a {codec.upper()} byte-order mark but the text after it is damaged: "
            "save it again as UTF-8 text and upload that"
        ) from exc


def _normalise_newlines(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x85", "\n").replace("\u2028", "\n")
    # Page and paragraph separators end a block, like a blank line.
    text = text.replace("\f", "\n\n").replace("\v", "\n").replace("\u2029", "\n\n")
    # Remaining control characters (below the binary threshold) are noise: make them spaces.
    return _CONTROL.sub(" ", text)


# --------------------------------------------------------------------------------------------------------------
# Shared line handling
# --------------------------------------------------------------------------------------------------------------


def _indent_width(indent: str) -> int:
    return len(indent.expandtabs(4))


def _list_item(match: re.Match[str]) -> _Pending:
    """A list item from a marker match; bullets of every kind become "•" so all formats look alike."""
    marker = match.group("marker")
    indent = _indent_width(match.group("indent"))
    label = "•" if len(marker) == 1 and marker in _BULLETS else marker
    return _Pending("list_item", [f"{label} {match.group('rest')}"], level=1 + indent // 2, label=label, indent=indent)


def _clean_inline(text: str) -> str:
    """Markdown inline syntax removed: images and links keep their text; bold, code and escapes go.

    HTML character references are decoded as a Markdown renderer would ("&amp;" is "&"); web captures indent
    with runs of "&nbsp;", which become one space.
    """
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _HTML_BREAK.sub(" ", text)
    text = _EMPHASIS.sub("", text)
    text = _ESCAPE.sub(r"\1", text)
    return _NBSP_RUN.sub(" ", html.unescape(text))


def _split_row(line: str) -> list[str]:
    """Cells of a Markdown table row, ignoring escaped pipes and the optional outer pipes."""
    cells = re.split(r"(?<!\\)\|", line.strip())
    if cells and not cells[0].strip():
        cells = cells[1:]
    if cells and not cells[-1].strip():
        cells = cells[:-1]
    return [_clean_inline(c.replace("\\|", "|")).strip() for c in cells]


class _Blocks:
    """Accumulates pending blocks; knows the current one so continuation lines can join it."""

    def __init__(self) -> None:
        self.done: list[_Pending] = []
        self.current: _Pending | None = None

    def flush(self, *, blank_follows: bool = False) -> None:
        if self.current is not None:
            self.current.followed_by_blank = blank_follows
            self.done.append(self.current)
            self.current = None

    def start(self, pending: _Pending) -> None:
        self.flush()
        self.current = pending

    def add(self, pending: _Pending) -> None:
        """A complete one-line block (heading, table row)."""
        self.flush()
        self.done.append(pending)

    def mark_blank(self) -> None:
        """A blank line: ends the current block, and tells the last finished block a blank line followed it."""
        if self.current is not None:
            self.flush(blank_follows=True)
        elif self.done:
            self.done[-1].followed_by_blank = True


# --------------------------------------------------------------------------------------------------------------
# Plain text
# --------------------------------------------------------------------------------------------------------------


def _parse_plain(lines: list[str]) -> list[_Pending]:
    blocks = _Blocks()
    for raw in lines:
        line = raw.rstrip()
        if not line.strip():
            blocks.mark_blank()
            continue
        current = blocks.current
        if _UNDERLINE.match(line):
            # "Title\n=====" underlines the line above it; elsewhere a rule of dashes is decoration.
            if current is not None and current.kind == "paragraph" and len(current.lines) == 1:
                current.kind = "heading"
                current.level = 1 if line.strip()[0] in "=#" else 2
                blocks.flush()
            else:
                blocks.flush()
            continue
        marker = _LIST_MARKER.match(line)
        if marker:
            blocks.start(_list_item(marker))
            continue
        if _is_caps_heading(line):
            # "PURPOSE" on its own line is a heading even when the text follows without a blank line.
            blocks.add(_Pending("heading", [line], level=1))
            continue
        if current is None:
            blocks.current = _Pending("paragraph", [line])
        elif current.kind == "list_item":
            indent = _indent_width(line[: len(line) - len(line.lstrip())])
            previous = current.lines[-1].rstrip()
            # A wrapped list item continues on an indented line or after a line that stops mid-sentence;
            # an unindented line after a finished sentence is a new paragraph.
            if indent > current.indent or not previous.endswith(_SENTENCE_END):
                current.lines.append(line)
            else:
                blocks.start(_Pending("paragraph", [line]))
        else:
            current.lines.append(line)
    blocks.flush()
    _guess_headings(blocks.done)
    return blocks.done


def _is_caps_heading(line: str) -> bool:
    """A short line in capitals ("3. LIMITS OF CONFIDENTIALITY"), without a final full stop."""
    text = line.strip()
    letters = [ch for ch in text if ch.isalpha()]
    return (
        len(letters) >= 4
        and all(ch.isupper() for ch in letters)
        and len(text) <= _HEADING_MAX_CHARS
        and len(text.split()) <= _HEADING_MAX_WORDS
        and not text.endswith((".", ",", ";", ":"))
    )


def _is_heading_line(block: _Pending) -> bool:
    text = block.text()
    if len(block.lines) != 1 or len(text) > _HEADING_MAX_CHARS or len(text.split()) > _HEADING_MAX_WORDS:
        return False
    if text.endswith((".", ",", ";", ":", "!")) or not any(ch.isalpha() for ch in text):
        return False
    body = text[len(block.label) :].strip() if block.label else text
    return bool(body) and (body[0].isupper() or body[0].isdigit())


def _guess_headings(blocks: list[_Pending]) -> None:
    """Promote standalone short lines to headings: ALL CAPS (level 1), numbered "3.1 Limits" (by depth), others 2.

    A candidate is one line, short, without a final full stop, starting with a capital, and followed by a blank
    line and more text. Numbered candidates stay list items when the block before is a list item: "1. Staff",
    "2. Volunteers" separated by blank lines are a list, not a run of headings.
    """
    for i, block in enumerate(blocks):
        if not block.followed_by_blank or i + 1 >= len(blocks) or block.kind == "heading":
            continue
        if block.kind == "list_item":
            if not _NUMBERED.match(block.label) or not _is_heading_line(block):
                continue
            if i > 0 and blocks[i - 1].kind == "list_item":
                continue
            if blocks[i + 1].kind == "list_item" and blocks[i + 1].label.count(".") == block.label.count("."):
                continue
            block.kind = "heading"
            block.level = min(len([p for p in block.label.split(".") if p]), 6)
            block.label = ""
        elif block.kind == "paragraph" and _is_heading_line(block):
            text = block.text()
            letters = [ch for ch in text if ch.isalpha()]
            block.kind = "heading"
            block.level = 1 if (i == 0 or (len(letters) >= 3 and all(ch.isupper() for ch in letters))) else 2


# --------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------


def _front_matter(lines: list[str]) -> tuple[str, int]:
    """A YAML front-matter title and the number of lines the front matter takes (0 when there is none)."""
    if not lines or lines[0].strip() != "---":
        return "", 0
    for end in range(1, min(len(lines), 60)):
        if lines[end].strip() in ("---", "..."):
            title = ""
            for line in lines[1:end]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "title":
                    title = value.strip().strip("\"'")
            return title, end + 1
    return "", 0


def _parse_markdown(lines: list[str]) -> list[_Pending]:
    blocks = _Blocks()
    in_fence = False
    in_table = False
    line_broken = True  # the previous line ended a block, a sentence or with a hard break
    for index, raw in enumerate(lines):
        previous_broken, line_broken = line_broken, raw.endswith("  ") or raw.rstrip().endswith(("\\", *_SENTENCE_END))
        line = raw.rstrip()
        if _FENCE.match(line):
            blocks.flush()
            in_fence = not in_fence
            continue
        if in_fence:
            if line.strip():
                blocks.add(_Pending("paragraph", [line]))
            else:
                blocks.mark_blank()
            continue
        line = _BLOCKQUOTE.sub("", line)
        while _BLOCKQUOTE.match(line):
            line = _BLOCKQUOTE.sub("", line)
        if not line.strip():
            in_table = False
            blocks.mark_blank()
            continue
        current = blocks.current

        # Tables: a row with outer pipes, or any piped line introducing a |---| separator.
        next_line = lines[index + 1] if index + 1 < len(lines) else ""
        if "|" in line and (
            in_table or line.lstrip().startswith("|") or (_TABLE_SEPARATOR.match(next_line) and "|" in next_line)
        ):
            in_table = True
            if _TABLE_SEPARATOR.match(line):
                continue
            cells = [c for c in _split_row(line) if c]
            if cells:
                blocks.add(_Pending("table_row", [" | ".join(cells)]))
            continue
        in_table = False

        heading = _ATX_HEADING.match(line)
        if heading:
            text = _clean_inline((heading.group(2) or "").strip())
            if text:
                blocks.add(_Pending("heading", [text], level=len(heading.group(1))))
            else:
                blocks.flush()
            continue
        if _UNDERLINE.match(line) and line.strip()[0] in "=-" and current is not None and current.kind == "paragraph":
            current.kind = "heading"
            current.level = 1 if line.strip()[0] == "=" else 2
            blocks.flush()
            continue
        if _THEMATIC_BREAK.match(line) or _UNDERLINE.match(line):
            blocks.flush()
            continue
        if _LINK_DEFINITION.match(line):
            continue
        if _is_bold_line(line) and (current is None or previous_broken):
            # Its own block even where Markdown would join it to the lines around it: the next line is body text.
            blocks.add(_Pending("paragraph", [line.removesuffix("\\")], bold_line=True))
            line_broken = True
            continue
        marker = _LIST_MARKER.match(line)
        if marker:
            blocks.start(_list_item(marker))
            continue
        if current is None:
            blocks.current = _Pending("paragraph", [line])
        else:
            current.lines.append(line)  # Markdown joins any non-blank line to the paragraph or item above
    blocks.flush()
    for block in blocks.done:
        if block.kind in ("paragraph", "list_item"):
            block.lines = [_clean_inline(line) for line in block.lines]
    _promote_bold_lines(blocks.done)
    return blocks.done


def _is_bold_line(line: str) -> bool:
    """A short line in bold from end to end that does not end like a sentence."""
    match = _BOLD_LINE.match(line)
    if not match:
        return False
    text = _clean_inline(match.group(2)).strip()
    return (
        any(ch.isalpha() for ch in text)
        and len(text) <= _HEADING_MAX_CHARS
        and len(text.split()) <= _HEADING_MAX_WORDS
        and not text.endswith((".", ",", ";"))
    )


def _promote_bold_lines(blocks: list[_Pending]) -> None:
    """Bold lines followed by body text become headings one level below the Markdown heading above them (level 2
    when there is none), as the Word reader treats bold lines in documents without heading styles. Two bold lines
    in a row are emphasis, not a heading over body text."""
    section_level = 1
    for i, block in enumerate(blocks):
        if block.kind == "heading":
            section_level = block.level
        elif block.bold_line and i + 1 < len(blocks) and not blocks[i + 1].bold_line:
            block.kind = "heading"
            block.level = min(section_level + 1, 6)


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def read_text(data: bytes, settings: Settings, *, markdown: bool) -> ReaderOutput:
    """Read a plain-text (``markdown=False``) or Markdown file.

    Text files have no pages: ``pages`` is an estimate, ``max(1, round(words / 500))``, and blocks carry
    ``page=None``. ``settings`` is accepted for symmetry with the other readers (size limits are applied by the
    caller before the bytes reach here).

    Raises:
        UnsupportedFormatError: binary data rather than text.
        EmptyDocumentError: nothing but whitespace (or Markdown syntax without text).
        CorruptDocumentError: a UTF-16/32 byte-order mark followed by undecodable data.
    """
    text, warnings = decode_bytes(data)
    if not text.strip():
        raise EmptyDocumentError("the file holds only blank space: upload the policy again")
    lines = _normalise_newlines(text).split("\n")
    title = ""
    if markdown:
        title, skip = _front_matter(lines)
        pending = _parse_markdown(lines[skip:])
    else:
        pending = _parse_plain(lines)

    builder = TextBuilder()
    for block in pending:
        builder.add_block(block.text(), block.kind, level=block.level, label=block.label)
    if not builder.blocks:
        raise EmptyDocumentError("the file holds no readable text, only formatting: upload the policy text")
    full_text = builder.text()
    return ReaderOutput(
        text=full_text,
        blocks=builder.blocks,
        pages=max(1, round(count_words(full_text) / _WORDS_PER_PAGE)),
        title_hint=title,
        warnings=warnings,
    )
