"""What every format reader returns, and a builder that keeps offsets exact while text is assembled.

Conventions shared by all readers, so later stages see one shape whatever the format:
- blocks are separated by a blank line ("\\n\\n"); inside a block, hard-wrapped lines are rejoined with a space;
- table rows are one block each, cells joined with " | " (a merged cell appears once);
- list items keep their number or bullet at the start of the block text ("3.1 ...", "(a) ...", "• ...").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.document import Block, BlockKind, TextSpan

BLOCK_SEPARATOR = "\n\n"


@dataclass
class ReaderOutput:
    """The format-independent result of reading one file."""

    text: str
    blocks: list[Block]
    pages: int
    page_starts: list[int] = field(default_factory=list)
    spans: list[TextSpan] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)  # running headers/footers, header-part text
    title_hint: str = ""  # a title the format itself declares (DOCX core properties, PDF /Title)
    warnings: list[str] = field(default_factory=list)


class TextBuilder:
    """Appends blocks to a growing text and records each block's exact offsets."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.blocks: list[Block] = []

    @property
    def length(self) -> int:
        """Current length of the text (the offset the next appended character will get)."""
        return self._length

    def _append_raw(self, chunk: str) -> None:
        self._parts.append(chunk)
        self._length += len(chunk)

    def add_block(
        self, text: str, kind: BlockKind = "paragraph", *, page: int | None = None, level: int = 0, label: str = ""
    ) -> Block | None:
        """Append one block (stripped); returns it, or None when the text is blank."""
        text = text.strip()
        if not text:
            return None
        if self._length:
            self._append_raw(BLOCK_SEPARATOR)
        start = self._length
        self._append_raw(text)
        block = Block(kind=kind, start=start, end=self._length, page=page, level=level, label=label)
        self.blocks.append(block)
        return block

    def text(self) -> str:
        """The assembled text."""
        return "".join(self._parts)
