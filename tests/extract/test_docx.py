"""DOCX reader: structure in document order, merged cells, numbering, headers, and hostile or broken packages.

Every fixture is generated here: python-docx for realistic documents, zipfile for packages Word would never
write (entity expansion, zip bombs, missing parts).
"""

from __future__ import annotations

import io
import zipfile

import docx
import pytest
from docx.shared import Pt

from pipeline.config import Settings
from pipeline.errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    HostileDocumentError,
    UnsupportedFormatError,
)
from pipeline.extract.base import ReaderOutput
from pipeline.extract.docx import MACRO_WARNING, read_docx

SETTINGS = Settings()
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


# ---------------------------------------------------------------------------------------------------------------
# Fixture builders
# ---------------------------------------------------------------------------------------------------------------


def _save(document: object) -> bytes:
    buf = io.BytesIO()
    document.save(buf)  # type: ignore[attr-defined]
    return buf.getvalue()


def policy_docx() -> bytes:
    """A realistic policy: title, headings, bullets, numbers, a merged-cell table, header and footer."""
    d = docx.Document()
    d.core_properties.title = "Confidentiality Policy"
    d.add_heading("Confidentiality Policy", 0)
    d.add_heading("Purpose", 1)
    d.add_paragraph("We keep what people tell us confidential unless they consent to us sharing it.")
    d.add_heading("Who this applies to", 2)
    d.add_paragraph("Advocates", style="List Bullet")
    d.add_paragraph("Volunteers", style="List Bullet")
    d.add_paragraph("Record the concern.", style="List Number")
    d.add_paragraph("Tell your manager.", style="List Number")
    table = d.add_table(rows=3, cols=3)
    for r in range(3):
        for c in range(3):
            table.cell(r, c).text = f"r{r}c{c}"
    table.cell(0, 0).merge(table.cell(0, 1)).text = "Information type"
    table.cell(1, 2).merge(table.cell(2, 2)).text = "Kept for six years"
    d.add_paragraph("Text after the table.")
    section = d.sections[0]
    section.header.paragraphs[0].text = "Acme Advocacy"
    section.footer.paragraphs[0].text = "Version 2 | Review due: March 2024"
    return _save(d)


def block_texts(out: ReaderOutput) -> list[tuple[str, str]]:
    return [(b.kind, out.text[b.start : b.end]) for b in out.blocks]


CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="{main}"/>'
    "{extra}</Types>"
)
DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="word/document.xml"/></Relationships>'
)


def document_xml(body: str, prolog: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{prolog}'
        f'<w:document xmlns:w="{W}" '
        'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
        'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
        'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
        f"><w:body>{body}</w:body></w:document>"
    )


def hand_docx(
    body: str = "<w:p><w:r><w:t>Hello</w:t></w:r></w:p>",
    *,
    prolog: str = "",
    main: str = DOCX_MAIN,
    extra_types: str = "",
    parts: dict[str, bytes | str] | None = None,
    document_rels: str = "",
    skip_document: bool = False,
) -> bytes:
    """A minimal package written with zipfile, so tests control every byte."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES.format(main=main, extra=extra_types))
        zf.writestr("_rels/.rels", ROOT_RELS)
        if not skip_document:
            zf.writestr("word/document.xml", document_xml(body, prolog))
        if document_rels:
            zf.writestr(
                "word/_rels/document.xml.rels",
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                f"{document_rels}</Relationships>",
            )
        for name, blob in (parts or {}).items():
            zf.writestr(name, blob)
    return buf.getvalue()


def p(text: str, ppr: str = "", rpr: str = "") -> str:
    return f"<w:p>{ppr}<w:r>{rpr}<w:t xml:space='preserve'>{text}</w:t></w:r></w:p>"


# ---------------------------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------------------------


def test_policy_structure_in_document_order() -> None:
    out = read_docx(policy_docx(), SETTINGS)
    assert block_texts(out) == [
        ("heading", "Confidentiality Policy"),
        ("heading", "Purpose"),
        ("paragraph", "We keep what people tell us confidential unless they consent to us sharing it."),
        ("heading", "Who this applies to"),
        ("list_item", "• Advocates"),
        ("list_item", "• Volunteers"),
        ("list_item", "1. Record the concern."),
        ("list_item", "2. Tell your manager."),
        ("table_row", "Information type | r0c2"),
        ("table_row", "r1c0 | r1c1 | Kept for six years"),
        ("table_row", "r2c0 | r2c1"),
        ("paragraph", "Text after the table."),
    ]
    levels = [(b.kind, b.level, b.label) for b in out.blocks[:8]]
    assert levels[0] == ("heading", 1, "") and levels[1] == ("heading", 1, "") and levels[3] == ("heading", 2, "")
    assert levels[4] == ("list_item", 1, "•")
    assert levels[6] == ("list_item", 1, "1.")
    assert out.text.count("Kept for six years") == 1 and out.text.count("Information type") == 1
    assert out.title_hint == "Confidentiality Policy"
    assert out.headers == ["Acme Advocacy", "Version 2 | Review due: March 2024"]
    assert out.pages == 1 and out.page_starts == [] and all(b.page is None for b in out.blocks)
    assert out.warnings == []


def test_blocks_are_exact_slices_separated_by_blank_lines() -> None:
    out = read_docx(policy_docx(), SETTINGS)
    for before, after in zip(out.blocks, out.blocks[1:], strict=False):
        assert out.text[before.end : after.start] == "\n\n"
    for block in out.blocks:
        chunk = out.text[block.start : block.end]
        assert chunk == chunk.strip() and "\n" not in chunk


def test_page_estimate_uses_500_words_per_page() -> None:
    d = docx.Document()
    for _ in range(30):
        d.add_paragraph(" ".join(["word"] * 100))  # 3,000 words: 6 pages
    out = read_docx(_save(d), SETTINGS)
    assert out.pages == 6


def test_outline_level_in_paragraph_and_style_makes_headings() -> None:
    styles = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:styles xmlns:w="{W}">'
        '<w:style w:type="paragraph" w:styleId="PolicySection"><w:name w:val="Policy Section"/>'
        '<w:pPr><w:outlineLvl w:val="0"/></w:pPr></w:style>'
        '<w:style w:type="paragraph" w:styleId="PolicySub"><w:name w:val="Policy Sub"/>'
        '<w:basedOn w:val="PolicySection"/><w:pPr><w:outlineLvl w:val="1"/></w:pPr></w:style>'
        '<w:style w:type="paragraph" w:styleId="Inherits"><w:name w:val="Inherits"/>'
        '<w:basedOn w:val="PolicySection"/></w:style>'
        "</w:styles>"
    )
    body = (
        p("Scope", "<w:pPr><w:pStyle w:val='PolicySection'/></w:pPr>")
        + p("Sub scope", "<w:pPr><w:pStyle w:val='PolicySub'/></w:pPr>")
        + p("Inherited", "<w:pPr><w:pStyle w:val='Inherits'/></w:pPr>")
        + p("Direct outline", "<w:pPr><w:outlineLvl w:val='2'/></w:pPr>")
        + p("Body text", "<w:pPr><w:pStyle w:val='PolicySection'/><w:outlineLvl w:val='9'/></w:pPr>")
    )
    data = hand_docx(
        body,
        extra_types='<Override PartName="/word/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>',
        document_rels='<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/styles" Target="styles.xml"/>',
        parts={"word/styles.xml": styles},
    )
    out = read_docx(data, SETTINGS)
    assert [(b.kind, b.level) for b in out.blocks] == [
        ("heading", 1),
        ("heading", 2),
        ("heading", 1),
        ("heading", 3),
        ("paragraph", 0),
    ]


def test_bold_lines_become_headings_only_without_heading_styles() -> None:
    d = docx.Document()
    d.add_paragraph().add_run("Limits of confidentiality").bold = True
    d.add_paragraph("We may share information without consent when someone is at risk of serious harm.")
    d.add_paragraph().add_run("Bold sentence that ends with a full stop.").bold = True
    d.add_paragraph("More body text.")
    out = read_docx(_save(d), SETTINGS)
    assert [(b.kind, b.level) for b in out.blocks] == [
        ("heading", 2),
        ("paragraph", 0),
        ("paragraph", 0),
        ("paragraph", 0),
    ]

    broken = d.add_paragraph().add_run("Two bold lines")
    broken.bold = True
    broken.add_break()
    broken.add_text("in one paragraph")
    d.add_paragraph("Body.")
    out = read_docx(_save(d), SETTINGS)
    assert block_texts(out)[-2:] == [("paragraph", "Two bold lines in one paragraph"), ("paragraph", "Body.")]

    d.add_heading("A real heading", 1)  # once heading styles are used, bold lines are only emphasis
    out = read_docx(_save(d), SETTINGS)
    assert [b.kind for b in out.blocks] == ["paragraph"] * 6 + ["heading"]


def test_multilevel_numbering_is_computed() -> None:
    numbering = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:numbering xmlns:w="{W}">'
        '<w:abstractNum w:abstractNumId="0">'
        '<w:lvl w:ilvl="0"><w:start w:val="1"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1."/></w:lvl>'
        '<w:lvl w:ilvl="1"><w:start w:val="1"/><w:numFmt w:val="lowerLetter"/><w:lvlText w:val="(%2)"/></w:lvl>'
        '<w:lvl w:ilvl="2"><w:start w:val="1"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1.%3"/></w:lvl>'
        "</w:abstractNum>"
        '<w:abstractNum w:abstractNumId="1"><w:lvl w:ilvl="0"><w:numFmt w:val="bullet"/>'
        '<w:lvlText w:val="\uf0b7"/></w:lvl></w:abstractNum>'
        '<w:num w:numId="1"><w:abstractNumId w:val="0"/></w:num>'
        '<w:num w:numId="2"><w:abstractNumId w:val="1"/></w:num>'
        '<w:num w:numId="3"><w:abstractNumId w:val="0"/>'
        '<w:lvlOverride w:ilvl="0"><w:startOverride w:val="1"/></w:lvlOverride></w:num>'
        "</w:numbering>"
    )

    def item(text: str, num: int, ilvl: int) -> str:
        return p(text, f"<w:pPr><w:numPr><w:ilvl w:val='{ilvl}'/><w:numId w:val='{num}'/></w:numPr></w:pPr>")

    body = (
        item("Record", 1, 0)
        + item("what was said", 1, 1)
        + item("who said it", 1, 1)
        + item("Report", 1, 0)
        + item("detail", 1, 2)
        + item("A bullet", 2, 0)
        + item("Restarted", 3, 0)
        + p("Not numbered", "<w:pPr><w:numPr><w:ilvl w:val='0'/><w:numId w:val='0'/></w:numPr></w:pPr>")
    )
    data = hand_docx(
        body,
        extra_types='<Override PartName="/word/numbering.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.numbering+xml"/>',
        document_rels='<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/numbering" Target="numbering.xml"/>',
        parts={"word/numbering.xml": numbering},
    )
    out = read_docx(data, SETTINGS)
    assert block_texts(out) == [
        ("list_item", "1. Record"),
        ("list_item", "(a) what was said"),
        ("list_item", "(b) who said it"),
        ("list_item", "2. Report"),
        ("list_item", "2.1 detail"),
        ("list_item", "• A bullet"),
        ("list_item", "1. Restarted"),
        ("paragraph", "Not numbered"),
    ]
    assert [b.level for b in out.blocks[:3]] == [1, 2, 2]
    assert [b.label for b in out.blocks[:3]] == ["1.", "(a)", "(b)"]


def test_tracked_changes_content_controls_fields_and_text_boxes() -> None:
    body = (
        "<w:p><w:r><w:t xml:space='preserve'>We </w:t></w:r>"
        "<w:del w:id='1' w:author='x'><w:r><w:delText>never </w:delText></w:r></w:del>"
        "<w:ins w:id='2' w:author='x'><w:r><w:t xml:space='preserve'>always </w:t></w:r></w:ins>"
        "<w:hyperlink><w:r><w:t>record</w:t></w:r></w:hyperlink>"
        "<w:r><w:fldChar w:fldCharType='begin'/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r>"
        "<w:r><w:fldChar w:fldCharType='separate'/></w:r><w:r><w:t xml:space='preserve'> consent</w:t></w:r>"
        "<w:r><w:fldChar w:fldCharType='end'/></w:r></w:p>"
        "<w:sdt><w:sdtPr/><w:sdtContent>" + p("Inside a content control") + "</w:sdtContent></w:sdt>"
        "<w:p><w:r><mc:AlternateContent><mc:Choice Requires='wps'><w:drawing><wps:txbx><w:txbxContent>"
        + p("Text box line")
        + "</w:txbxContent></wps:txbx></w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent>"
        + p("Text box line")
        + "</w:txbxContent></w:pict></mc:Fallback></mc:AlternateContent></w:r>"
        "<w:r><w:t>Anchor paragraph</w:t></w:r></w:p>"
    )
    out = read_docx(hand_docx(body), SETTINGS)
    assert [t for _, t in block_texts(out)] == [
        "We always record consent",
        "Inside a content control",
        "Anchor paragraph",
        "Text box line",
    ]


def test_nested_and_layout_tables_are_flattened() -> None:
    d = docx.Document()
    outer = d.add_table(rows=1, cols=2)
    outer.cell(0, 0).text = "Role"
    inner = outer.cell(0, 1).add_table(rows=2, cols=2)
    for r in range(2):
        for c in range(2):
            inner.cell(r, c).text = f"in{r}{c}"
    box = d.add_table(rows=1, cols=1)  # a one-cell "box" around ordinary text
    box.cell(0, 0).paragraphs[0].text = "Boxed first paragraph."
    box.cell(0, 0).add_paragraph("Boxed second paragraph.")
    out = read_docx(_save(d), SETTINGS)
    assert block_texts(out) == [
        ("table_row", "Role"),
        ("table_row", "in00 | in01"),
        ("table_row", "in10 | in11"),
        ("paragraph", "Boxed first paragraph."),
        ("paragraph", "Boxed second paragraph."),
    ]


def test_headers_and_footers_of_all_sections_deduplicated() -> None:
    d = docx.Document()
    d.add_paragraph("Section one text.")
    d.sections[0].header.paragraphs[0].text = "Acme Advocacy"
    d.sections[0].footer.paragraphs[0].text = "Approved: 1 May 2024"
    new = d.add_section()
    new.header.is_linked_to_previous = False
    new.header.paragraphs[0].text = "Acme Advocacy"
    new.header.add_paragraph("Appendix")
    new.first_page_footer.paragraphs[0].text = "Page 1"
    d.add_paragraph("Section two text.")
    out = read_docx(_save(d), SETTINGS)
    assert out.headers == ["Acme Advocacy", "Appendix", "Approved: 1 May 2024", "Page 1"]
    assert "Acme Advocacy" not in out.text


def test_docm_reads_text_and_warns_about_macros() -> None:
    # Turn a generated .docx into a .docm the way Word does: main content type, a VBA project and its relationship.
    source = zipfile.ZipFile(io.BytesIO(policy_docx()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in source.infolist():
            blob = source.read(info)
            if info.filename == "[Content_Types].xml":
                blob = blob.replace(
                    DOCX_MAIN.encode(), b"application/vnd.ms-word.document.macroEnabled.main+xml"
                ).replace(
                    b"</Types>",
                    b'<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>',
                )
            if info.filename == "word/_rels/document.xml.rels":
                blob = blob.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/relationships/'
                    b'vbaProject" Target="vbaProject.bin"/></Relationships>',
                )
            zf.writestr(info, blob)
        zf.writestr("word/vbaProject.bin", b'\xd0\xcf\x11\xe0 Sub AutoOpen() Shell "calc" End Sub')
    data = buf.getvalue()

    out = read_docx(data, SETTINGS, macro_enabled=True)
    assert MACRO_WARNING in out.warnings
    assert out.text.startswith("Confidentiality Policy")
    # Even when the caller did not say so, the content reveals the macros.
    assert MACRO_WARNING in read_docx(data, SETTINGS).warnings


def test_macro_flag_warns_on_docx_too() -> None:
    assert read_docx(policy_docx(), SETTINGS, macro_enabled=True).warnings == [MACRO_WARNING]


def test_font_size_and_styling_do_not_change_text() -> None:
    d = docx.Document()
    run = d.add_paragraph().add_run("Tabs\tand\u00a0spaces   collapse\u00adhere")
    run.font.size = Pt(8)
    out = read_docx(_save(d), SETTINGS)
    assert out.text == "Tabs and spaces collapsehere"


# ---------------------------------------------------------------------------------------------------------------
# Hostile, broken and empty packages
# ---------------------------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
)


def test_entity_expansion_is_refused() -> None:
    data = hand_docx("<w:p><w:r><w:t>&lol3;</w:t></w:r></w:p>", prolog=BILLION_LAUGHS)
    with pytest.raises(HostileDocumentError, match="DTD or entity"):
        read_docx(data, SETTINGS)


def test_external_entity_in_any_part_is_refused() -> None:
    xxe = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    data = hand_docx(parts={"customXml/item1.xml": xxe})
    with pytest.raises(HostileDocumentError, match=r"customXml/item1\.xml"):
        read_docx(data, SETTINGS)


def test_utf16_encoded_doctype_is_refused() -> None:
    xml = document_xml("<w:p><w:r><w:t>x</w:t></w:r></w:p>", BILLION_LAUGHS).replace("UTF-8", "UTF-16")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES.format(main=DOCX_MAIN, extra=""))
        zf.writestr("_rels/.rels", ROOT_RELS)
        zf.writestr("word/document.xml", xml.encode("utf-16"))
    with pytest.raises(HostileDocumentError, match="DTD or entity"):
        read_docx(buf.getvalue(), SETTINGS)


def test_zip_bomb_is_refused_before_reading() -> None:
    data = hand_docx(parts={"word/media/padding.bin": b"\0" * (3 * 1024 * 1024)})
    assert len(data) < 100_000  # compresses to almost nothing, expands to 3 MB
    with pytest.raises(DocumentTooLargeError, match="zip bomb"):
        read_docx(data, Settings(max_uncompressed_mb=2))


def test_too_many_members_is_refused() -> None:
    data = hand_docx(parts={f"word/media/p{i}.bin": b"x" for i in range(20)})
    with pytest.raises(DocumentTooLargeError, match="internal parts"):
        read_docx(data, Settings(max_zip_members=10))


def test_missing_document_part() -> None:
    with pytest.raises(CorruptDocumentError, match=r"not a complete Word document: word/document\.xml is missing"):
        read_docx(hand_docx(skip_document=True), SETTINGS)


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04 this is not really a zip", b"random bytes, not a document", b""],
    ids=["bad-zip", "not-zip", "empty"],
)
def test_corrupt_zip(data: bytes) -> None:
    with pytest.raises(CorruptDocumentError, match="damaged or truncated"):
        read_docx(data, SETTINGS)


def test_truncated_docx_is_corrupt() -> None:
    with pytest.raises(CorruptDocumentError, match="damaged"):
        read_docx(policy_docx()[:-200], SETTINGS)


def test_malformed_document_xml_is_corrupt() -> None:
    data = hand_docx("<w:p><w:r><w:t>unclosed</w:r></w:p>")
    with pytest.raises(CorruptDocumentError, match="save it again"):
        read_docx(data, SETTINGS)


def test_other_office_zip_is_unsupported() -> None:
    data = hand_docx(main="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml")
    with pytest.raises(UnsupportedFormatError, match="not a Word document"):
        read_docx(data, SETTINGS)


def test_old_doc_and_encrypted_office_files() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600
    with pytest.raises(UnsupportedFormatError, match=r"Word 97-2003"):
        read_docx(ole, SETTINGS)
    with pytest.raises(EncryptedDocumentError, match="password"):
        read_docx(ole + "EncryptedPackage".encode("utf-16-le"), SETTINGS)


def test_document_without_text_is_empty() -> None:
    d = docx.Document()
    d.add_paragraph("   ")
    with pytest.raises(EmptyDocumentError, match="contains no text"):
        read_docx(_save(d), SETTINGS)


def test_image_only_document_suggests_ocr() -> None:
    body = "<w:p><w:r><w:drawing/></w:r></w:p>"
    with pytest.raises(EmptyDocumentError, match="only images"):
        read_docx(hand_docx(body), SETTINGS)


def test_horizontally_merged_cell_appears_once_although_python_docx_repeats_it() -> None:
    d = docx.Document()
    table = d.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 2)).text = "Spans three columns"
    for c in range(3):
        table.cell(1, c).text = f"c{c}"
    assert len(table.rows[0].cells) == 3  # python-docx repeats the merged cell once per grid column
    out = read_docx(_save(d), SETTINGS)
    assert block_texts(out) == [("table_row", "Spans three columns"), ("table_row", "c0 | c1 | c2")]
