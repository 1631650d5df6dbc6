"""Metadata analysis: title, policy type, review dates, version and language, on reader outputs built in code."""

from __future__ import annotations

import datetime

import pytest

from pipeline.document import BlockKind
from pipeline.extract.base import ReaderOutput, TextBuilder
from pipeline.extract.metadata import analyse, count_words, parse_date, score_policy_types

TODAY = datetime.date(2025, 6, 1)


def output(*blocks: tuple[BlockKind, str], headers: list[str] | None = None, title_hint: str = "") -> ReaderOutput:
    builder = TextBuilder()
    for kind, text in blocks:
        builder.add_block(text, kind, level=1 if kind == "heading" else 0)
    return ReaderOutput(
        text=builder.text(), blocks=builder.blocks, pages=1, headers=headers or [], title_hint=title_hint
    )


ENGLISH_BODY = (
    "This policy explains how the service works and what we expect of our staff. It applies to all of the "
    "people who work with us and to the volunteers who support them in the community."
)

CONFIDENTIALITY = output(
    ("heading", "Confidentiality Policy"),
    ("heading", "Limits of confidentiality"),
    ("paragraph", "Everything you tell your advocate is confidential. We will not disclose information without "
     "your consent unless someone is at risk of serious harm. " + ENGLISH_BODY),
    ("heading", "Information sharing"),
    ("paragraph", "We follow data protection law and share personal information on a need to know basis."),
)  # fmt: skip
SAFEGUARDING = output(
    ("heading", "Safeguarding Adults Policy"),
    ("paragraph", "Abuse and neglect can happen anywhere. If an adult is at risk of abuse we raise a safeguarding "
     "concern with the local authority. All staff have an enhanced DBS check. " + ENGLISH_BODY),
)  # fmt: skip
COMPLAINTS = output(
    ("heading", "Complaints Procedure"),
    ("paragraph", "If you want to complain, tell us. Stage one is an informal resolution. At stage two the "
     "complaint is investigated by a manager. You can appeal, and then go to the Ombudsman. " + ENGLISH_BODY),
)  # fmt: skip
EQUALITY = output(
    ("heading", "Equality, Diversity and Inclusion"),
    ("paragraph", "We will not tolerate discrimination. The Equality Act 2010 lists nine protected "
     "characteristics. We make reasonable adjustments and value diversity. " + ENGLISH_BODY),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Title
# ---------------------------------------------------------------------------------------------------------------


def test_title_prefers_declared_title_then_heading_then_short_line() -> None:
    assert analyse(output(("heading", "Heading"), title_hint="Declared"), today=TODAY).title == "Declared"
    assert analyse(output(("paragraph", "Intro"), ("heading", "Heading")), today=TODAY).title == "Heading"
    long = " ".join(["word"] * 30)
    assert analyse(output(("paragraph", long), ("paragraph", "Short line")), today=TODAY).title == "Short line"


def test_noisy_declared_title_is_cleaned_or_ignored() -> None:
    hinted = output(("heading", "Heading"), title_hint="Microsoft Word - Complaints Policy.docx")
    assert analyse(hinted, today=TODAY).title == "Complaints Policy"
    assert analyse(output(("heading", "Heading"), title_hint="Untitled"), today=TODAY).title == "Heading"


# ---------------------------------------------------------------------------------------------------------------
# Policy type
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (CONFIDENTIALITY, "confidentiality"),
        (SAFEGUARDING, "safeguarding"),
        (COMPLAINTS, "complaints"),
        (EQUALITY, "equality"),
    ],
)
def test_policy_type(doc: ReaderOutput, expected: str) -> None:
    meta = analyse(doc, today=TODAY)
    assert meta.policy_type == expected
    assert 0.5 <= meta.policy_type_confidence <= 1.0


def test_weak_evidence_is_other() -> None:
    meta = analyse(output(("heading", "Lone Working"), ("paragraph", ENGLISH_BODY)), today=TODAY)
    assert meta.policy_type == "other"
    assert 0.0 <= meta.policy_type_confidence <= 1.0


def test_title_outweighs_body_mentions() -> None:
    body = "Complaints about abuse are handled under this policy. " * 3 + ENGLISH_BODY
    scores = score_policy_types("Safeguarding Policy", [], body)
    assert max(scores, key=lambda t: scores[t]) == "safeguarding"


# ---------------------------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "iso", "precision"),
    [
        ("12 March 2025", "2025-03-12", "day"),
        ("12th of March, 2025", "2025-03-12", "day"),
        ("March 2025", "2025-03-01", "month"),
        ("Mar 2025", "2025-03-01", "month"),
        ("Sept. 2025", "2025-09-01", "month"),
        ("12/03/2025", "2025-03-12", "day"),
        ("12.03.25", "2025-03-12", "day"),
        ("2025-03-12", "2025-03-12", "day"),
        ("March 12, 2025", "2025-03-12", "day"),
    ],
)
def test_parse_date_formats(text: str, iso: str, precision: str) -> None:
    parsed = parse_date(f"due on {text} or so")
    assert parsed is not None
    assert (parsed[0].isoformat(), parsed[1]) == (iso, precision)


@pytest.mark.parametrize("text", ["31/02/2025", "no date here", "13/13/2025", "3 Smarch 2025"])
def test_parse_date_rejects_non_dates(text: str) -> None:
    assert parse_date(text) is None


def test_review_date_from_footer() -> None:
    doc = output(("heading", "Complaints Policy"), ("paragraph", ENGLISH_BODY),
                 headers=["Version 2 | Review due: March 2024"])  # fmt: skip
    meta = analyse(doc, today=TODAY)
    assert (meta.review_date, meta.review_date_kind, meta.out_of_date) == ("2024-03-01", "review", True)
    assert meta.version == "2"
    assert "review date March 2024 is in the past: the policy may be out of date" in doc.warnings


def test_month_precision_review_is_not_overdue_during_its_month() -> None:
    doc = output(("paragraph", "Next review: June 2025. " + ENGLISH_BODY))
    meta = analyse(doc, today=TODAY)
    assert meta.review_date == "2025-06-01" and not meta.out_of_date
    assert not any("in the past" in w for w in doc.warnings)


def test_explicit_next_review_wins_over_approval() -> None:
    doc = output(
        ("paragraph", "Date approved: 12/03/2020. Next review date: 12/03/2026. " + ENGLISH_BODY),
        ("table_row", "Last reviewed | 1 January 2023"),
    )
    meta = analyse(doc, today=TODAY)
    assert (meta.review_date, meta.review_date_kind, meta.out_of_date) == ("2026-03-12", "review", False)


def test_old_approval_without_review_is_out_of_date() -> None:
    doc = output(("paragraph", "Approved by the board on 1 May 2021. " + ENGLISH_BODY))
    meta = analyse(doc, today=TODAY)
    assert (meta.review_date, meta.review_date_kind, meta.out_of_date) == ("2021-05-01", "approved", True)
    assert any("more than 3 years ago" in w for w in doc.warnings)


def test_recent_issue_date() -> None:
    doc = output(("paragraph", "Issued: 2024-09-30. " + ENGLISH_BODY))
    meta = analyse(doc, today=TODAY)
    assert (meta.review_date, meta.review_date_kind, meta.out_of_date) == ("2024-09-30", "issued", False)


def test_review_in_prose_without_date_is_ignored() -> None:
    doc = output(("paragraph", "We review complaints within 28 days of 1 March 2020 guidance. " + ENGLISH_BODY))
    meta = analyse(doc, today=TODAY)
    assert meta.review_date is None
    assert any("no review or approval date" in w for w in doc.warnings)


def test_year_only_review_date() -> None:
    meta = analyse(output(("paragraph", "Review date: 2026. " + ENGLISH_BODY)), today=TODAY)
    assert (meta.review_date, meta.out_of_date) == ("2026-01-01", False)


# ---------------------------------------------------------------------------------------------------------------
# Version, language, counts
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [("Version 3.1", "3.1"), ("v2.0 final", "2.0"), ("Version: 4", "4"), ("Ver. 1.2", "1.2"), ("Version 2010", None)],
)
def test_version(text: str, version: str | None) -> None:
    assert analyse(output(("paragraph", f"{text}. {ENGLISH_BODY}")), today=TODAY).version == version


def test_english_language_and_counts() -> None:
    doc = output(("heading", "Policy"), ("paragraph", ENGLISH_BODY), headers=["Acme"])
    meta = analyse(doc, today=TODAY)
    assert meta.language == "en"
    assert meta.word_count == count_words(doc.text) == 1 + len(ENGLISH_BODY.split())
    assert meta.headers == ["Acme"] and meta.headers is not doc.headers


WELSH = (
    "Mae'r polisi hwn yn esbonio sut rydym yn diogelu gwybodaeth bersonol. Bydd ein gwasanaeth eiriolaeth yn "
    "cadw gwybodaeth yn gyfrinachol ac ni fydd yn ei rhannu heb eich caniatâd, oni bai bod pobl mewn perygl. "
    "Mae gan bob eiriolwr gyfrifoldeb i ddilyn y polisi hwn ac i gofnodi unrhyw bryderon gyda'r rheolwr."
)


def test_welsh_text_is_flagged() -> None:
    doc = output(("heading", "Polisi Cyfrinachedd"), ("paragraph", WELSH))
    meta = analyse(doc, today=TODAY)
    assert meta.language == "cy"
    assert any("looks Welsh: needs manual review" in w for w in doc.warnings)


def test_bilingual_text_is_english_with_a_warning() -> None:
    doc = output(("paragraph", ENGLISH_BODY + " " + ENGLISH_BODY), ("paragraph", WELSH))
    meta = analyse(doc, today=TODAY)
    assert meta.language == "en"
    assert any("part of the text looks Welsh" in w for w in doc.warnings)


def test_other_language_is_unknown() -> None:
    french = (
        "Cette politique explique comment nous protégeons les informations personnelles des personnes que nous "
        "accompagnons. Les défenseurs doivent respecter la confidentialité en toutes circonstances sauf danger "
        "grave pour une personne, et chaque décision est notée dans le dossier."
    )
    doc = output(("paragraph", french))
    meta = analyse(doc, today=TODAY)
    assert meta.language == "unknown"
    assert any("could not be recognised as English" in w for w in doc.warnings)


def test_analyse_twice_does_not_duplicate_warnings() -> None:
    doc = output(("paragraph", "Next review: 1 March 2021. " + ENGLISH_BODY))
    analyse(doc, today=TODAY)
    analyse(doc, today=TODAY)
    assert doc.warnings == ["review date 1 March 2021 is in the past: the policy may be out of date"]


def test_metadata_of_a_generated_docx() -> None:
    from pipeline.config import Settings
    from pipeline.extract.docx import read_docx
    from tests.extract.test_docx import policy_docx

    out = read_docx(policy_docx(), Settings())
    meta = analyse(out, today=TODAY)
    assert meta.title == "Confidentiality Policy"
    assert meta.policy_type == "confidentiality"
    assert (meta.review_date, meta.review_date_kind, meta.out_of_date) == ("2024-03-01", "review", True)
    assert meta.version == "2"
    assert meta.headers == ["Acme Advocacy", "Version 2 | Review due: March 2024"]
    assert "review date March 2024 is in the past: the policy may be out of date" in out.warnings
