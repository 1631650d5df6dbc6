"""Text and Markdown reader: decoding, hard wraps, list markers, headings, tables and the offset invariant."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.errors import CorruptDocumentError, DocumentError, EmptyDocumentError, UnsupportedFormatError
from pipeline.extract.base import ReaderOutput
from pipeline.extract.text import CP1252_WARNING, read_text

SETTINGS = Settings()


def blocks(out: ReaderOutput) -> list[tuple[str, str]]:
    return [(b.kind, out.text[b.start : b.end]) for b in out.blocks]


def levelled(out: ReaderOutput) -> list[tuple[str, int, str]]:
    return [(b.kind, b.level, out.text[b.start : b.end]) for b in out.blocks]


def plain(text: str) -> ReaderOutput:
    return read_text(text.encode("utf-8"), SETTINGS, markdown=False)


def md(text: str) -> ReaderOutput:
    return read_text(text.encode("utf-8"), SETTINGS, markdown=True)


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------


def test_utf8_bom_is_stripped() -> None:
    out = read_text(codecs.BOM_UTF8 + "Café policy".encode(), SETTINGS, markdown=False)
    assert out.text == "Café policy" and out.warnings == []


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_with_bom(encoding: str) -> None:
    raw = "Advocates’ duty of confidentiality".encode(encoding)
    if encoding == "utf-16-be":
        raw = codecs.BOM_UTF16_BE + raw
    assert read_text(raw, SETTINGS, markdown=False).text == "Advocates’ duty of confidentiality"


def test_windows_1252_fallback_warns() -> None:
    out = read_text(b"We \x93never\x94 share \x96 ever. Caf\xe9", SETTINGS, markdown=False)
    assert out.text == "We “never” share – ever. Café"
    assert CP1252_WARNING in out.warnings and "Windows-1252" in out.warnings[0]


def test_crlf_and_form_feed() -> None:
    out = plain("First line\r\nwrapped here.\r\n\fSecond block.")
    assert blocks(out) == [("paragraph", "First line wrapped here."), ("paragraph", "Second block.")]


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"PK\x03\x04\x00\x00binary\x00stuff", "NUL bytes"),
        (bytes(range(1, 32)) * 20 + b"some text", "control characters"),
    ],
)
def test_binary_is_unsupported(data: bytes, phrase: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=phrase):
        read_text(data, SETTINGS, markdown=False)


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  ", codecs.BOM_UTF8 + b"\n\n"])
def test_blank_is_empty(data: bytes) -> None:
    with pytest.raises(EmptyDocumentError, match="blank space"):
        read_text(data, SETTINGS, markdown=False)


def test_markdown_with_only_syntax_is_empty() -> None:
    with pytest.raises(EmptyDocumentError, match="no readable text"):
        md("---\n\n***\n\n#\n")


def test_damaged_utf16_is_corrupt() -> None:
    with pytest.raises(CorruptDocumentError, match="UTF-16"):
        read_text(codecs.BOM_UTF16_LE + b"a\x00\x00\xd8", SETTINGS, markdown=False)


# ---------------------------------------------------------------------------------------------------------------
# Plain text structure
# ---------------------------------------------------------------------------------------------------------------


def test_hard_wrapped_paragraph_is_rejoined() -> None:
    out = plain("We keep information\nconfidential within the\n   service.\n\nNext paragraph.\n")
    assert blocks(out) == [
        ("paragraph", "We keep information confidential within the service."),
        ("paragraph", "Next paragraph."),
    ]


def test_list_markers_start_list_items() -> None:
    text = (
        "We may share information when:\n"
        "- someone is at risk\n"
        "* a crime is\n  being committed\n"
        "• a court orders it\n"
        "\uf0b7 pasted from Word\n"
        "1. first\n"
        "3.1 section style\n"
        "(a) lettered\n"
        "b) lettered again\n"
        "i. roman\n"
    )
    out = plain(text)
    assert blocks(out) == [
        ("paragraph", "We may share information when:"),
        ("list_item", "• someone is at risk"),
        ("list_item", "• a crime is being committed"),
        ("list_item", "• a court orders it"),
        ("list_item", "• pasted from Word"),
        ("list_item", "1. first"),
        ("list_item", "3.1 section style"),
        ("list_item", "(a) lettered"),
        ("list_item", "b) lettered again"),
        ("list_item", "i. roman"),
    ]
    assert [b.label for b in out.blocks[1:]] == ["•", "•", "•", "•", "1.", "3.1", "(a)", "b)", "i."]


def test_nested_list_level_from_indent() -> None:
    out = plain("- top\n    - nested\n")
    assert [(b.kind, b.level) for b in out.blocks] == [("list_item", 1), ("list_item", 3)]


def test_numbers_that_are_not_markers() -> None:
    out = plain("2025 was the year we\nupdated the policy.")
    assert blocks(out) == [("paragraph", "2025 was the year we updated the policy.")]


def test_paragraph_after_list_item_without_blank_line() -> None:
    out = plain("- Last item of the list.\nA new paragraph starts here.")
    assert [b.kind for b in out.blocks] == ["list_item", "paragraph"]


def test_plain_text_headings() -> None:
    text = (
        "Confidentiality Policy\n\n"
        "3. Limits of confidentiality\n\n"
        "We may share information without consent when a person is at risk.\n\n"
        "3.1 Recording decisions\n\n"
        "Record every decision to share.\n\n"
        "WHO TO TELL\n"
        "Tell the safeguarding lead.\n\n"
        "Our staff\n\n"
        "All advocates follow this policy at all times.\n"
    )
    out = plain(text)
    assert levelled(out) == [
        ("heading", 1, "Confidentiality Policy"),
        ("heading", 1, "3. Limits of confidentiality"),
        ("paragraph", 0, "We may share information without consent when a person is at risk."),
        ("heading", 2, "3.1 Recording decisions"),
        ("paragraph", 0, "Record every decision to share."),
        ("heading", 1, "WHO TO TELL"),
        ("paragraph", 0, "Tell the safeguarding lead."),
        ("heading", 2, "Our staff"),
        ("paragraph", 0, "All advocates follow this policy at all times."),
    ]


def test_numbered_list_separated_by_blank_lines_stays_a_list() -> None:
    out = plain("Applies to:\n\n1. Staff\n\n2. Volunteers\n\n3. Trustees\n")
    assert [b.kind for b in out.blocks] == ["paragraph", "list_item", "list_item", "list_item"]


def test_short_sentence_is_not_a_heading() -> None:
    out = plain("Intro text here.\n\nCall us today.\n\nMore text follows here.")
    assert [b.kind for b in out.blocks] == ["paragraph", "paragraph", "paragraph"]


def test_underlined_plain_heading() -> None:
    out = plain("Complaints\n==========\nTell us if you are unhappy.")
    assert blocks(out) == [("heading", "Complaints"), ("paragraph", "Tell us if you are unhappy.")]


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------


def test_markdown_structure() -> None:
    text = (
        "---\ntitle: Equality Policy\nauthor: x\n---\n"
        "# Equality and **Diversity** #\n\n"
        "Intro with `code` and a [link](https://example.org) and __bold__.\n"
        "Wrapped line.\n\n"
        "## Scope\n\n"
        "- item one\n  continued\n- item *two*\n\n"
        "1. numbered\n\n"
        "| Characteristic | Covered |\n|---|:---:|\n| Age | Yes |\n| Race \\| ethnicity | Yes |\n\n"
        "Setext heading\n--------------\n\n"
        "> Quoted text\n\n"
        "***\n\n"
        "```\ncode block line\n```\n"
        "###### Deep heading\n"
    )
    out = md(text)
    assert out.title_hint == "Equality Policy"
    assert levelled(out) == [
        ("heading", 1, "Equality and Diversity"),
        ("paragraph", 0, "Intro with code and a link and bold. Wrapped line."),
        ("heading", 2, "Scope"),
        ("list_item", 1, "• item one continued"),
        ("list_item", 1, "• item *two*"),
        ("list_item", 1, "1. numbered"),
        ("table_row", 0, "Characteristic | Covered"),
        ("table_row", 0, "Age | Yes"),
        ("table_row", 0, "Race | ethnicity | Yes"),
        ("heading", 2, "Setext heading"),
        ("paragraph", 0, "Quoted text"),
        ("paragraph", 0, "code block line"),
        ("heading", 6, "Deep heading"),
    ]


def test_markdown_table_without_outer_pipes() -> None:
    out = md("Name | Role\n--- | ---\nAna | Advocate\n\nAfter.")
    assert blocks(out) == [
        ("table_row", "Name | Role"),
        ("table_row", "Ana | Advocate"),
        ("paragraph", "After."),
    ]


def test_markdown_does_not_guess_headings_from_short_lines() -> None:
    out = md("Short line\n\nBody text follows.")
    assert [b.kind for b in out.blocks] == ["paragraph", "paragraph"]


def test_markdown_bold_lines_over_body_text_are_headings_below_the_section() -> None:
    text = (
        "# Safeguarding Policy\n\n"
        "## 4.0 Policy\n\n"
        "Staff report concerns to their manager.\n"
        "**4.8 Whistleblowing**  \n"
        "Anyone can raise a concern outside the organisation.\n"
        "**4.9 Review**\n"
        "We review this policy every year.\n\n"
        "## 5.0 Roles\n\n"
        "__5.1 Safeguarding Lead__\\\n"
        "The lead is the Chief Operating Officer.\n"
    )
    out = md(text)
    assert levelled(out) == [
        ("heading", 1, "Safeguarding Policy"),
        ("heading", 2, "4.0 Policy"),
        ("paragraph", 0, "Staff report concerns to their manager."),
        ("heading", 3, "4.8 Whistleblowing"),
        ("paragraph", 0, "Anyone can raise a concern outside the organisation."),
        ("heading", 3, "4.9 Review"),
        ("paragraph", 0, "We review this policy every year."),
        ("heading", 2, "5.0 Roles"),
        ("heading", 3, "5.1 Safeguarding Lead"),
        ("paragraph", 0, "The lead is the Chief Operating Officer."),
    ]


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        # bold words in a wrapped sentence
        ("Staff must keep records\n**safe and locked**\nat all times.", ["paragraph"]),
        # a bold sentence
        ("**Staff must always keep records locked away.**\n\nMore text.", ["paragraph", "paragraph"]),
        # bold parts of a line, not a bold line
        ("**Important** read this **first**\n\nMore text.", ["paragraph", "paragraph"]),
        # two bold lines in a row: only the second is over body text
        ("**Asthma and Lung UK**\n**Safeguarding**\n\nMore text.", ["paragraph", "heading", "paragraph"]),
        # nothing follows
        ("Text first.\n\n**Last line**", ["paragraph", "paragraph"]),
    ],
)
def test_markdown_bold_that_is_not_a_heading(text: str, kinds: list[str]) -> None:
    out = md(text)
    assert [b.kind for b in out.blocks] == kinds
    assert all("*" not in out.text[b.start : b.end] for b in out.blocks)


def test_markdown_bold_line_without_text_above_starts_the_document_sections() -> None:
    out = md("**Purpose**\nThis policy explains how we keep information confidential.")
    assert [(b.kind, b.level) for b in out.blocks] == [("heading", 2), ("paragraph", 0)]


def test_pages_estimate() -> None:
    out = plain(" ".join(["word"] * 1300))
    assert out.pages == 3


# ---------------------------------------------------------------------------------------------------------------
# Property: offsets are exact and blocks never overlap, whatever the input
# ---------------------------------------------------------------------------------------------------------------

_LINE_PARTS = st.sampled_from(
    ["#", "## ", "- ", "* ", "• ", "\uf0b7 ", "1. ", "3.1 ", "(a) ", "i. ", "|", " | ", "---", "===", "**", "`",
     "Policy", "CONFIDENTIAL", "consent", "the", ".", ":", " ", "  ", "\t", "é", "’", "[x](y)", "> ", "```"]
)  # fmt: skip
_TEXTS = st.lists(st.one_of(st.lists(_LINE_PARTS, max_size=8).map("".join), st.text(max_size=20)), max_size=25).map(
    "\n".join
)


@settings(max_examples=300, deadline=None)
@given(text=_TEXTS, markdown=st.booleans())
def test_blocks_are_exact_stripped_slices_and_do_not_overlap(text: str, markdown: bool) -> None:
    try:
        out = read_text(text.encode("utf-8"), SETTINGS, markdown=markdown)
    except DocumentError:
        return  # blank or binary-looking input is refused with a typed error: fine
    previous_end = 0
    for block in out.blocks:
        chunk = out.text[block.start : block.end]
        assert chunk and chunk == chunk.strip()
        assert block.start >= previous_end and block.end <= len(out.text)
        previous_end = block.end
    assert out.text == "\n\n".join(out.text[b.start : b.end] for b in out.blocks)


def test_markdown_character_references_are_decoded() -> None:
    out = md("# Terms &amp; conditions\n\nWe store:&nbsp;&nbsp;&nbsp;&nbsp;1.1 Contact details &#8211; name and email.")
    assert blocks(out) == [
        ("heading", "Terms & conditions"),
        ("paragraph", "We store: 1.1 Contact details \u2013 name and email."),
    ]
