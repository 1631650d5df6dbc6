"""A small screened submission built by hand, for the evidence map, highlight and browser tests.

The documents are real files (a PDF drawn with reportlab, a DOCX written with python-docx, a hostile plain-text
policy) read by the real ingestion stage, so offsets, pages and boxes are genuine. Only the matcher is replaced:
evidence is assigned by key-term overlap with the real catalogue, so these tests never need the trained model.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import docx

from pipeline.catalogue import Catalogue, load_catalogue
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.coverage import Coverage, Evidence, IndicatorResult
from pipeline.document import Passage
from pipeline.ingest import FailedDocument, IngestedDocument, ingest
from pipeline.report import RunInfo, build_report
from pipeline.screen import SubmissionResult
from tests.pdf_factory import build_pdf

HOSTILE_SCRIPT = "<script>window.__pwned = 1; alert(1)</script>"
HOSTILE_IMG = '<img src=x onerror="window.__pwned = 2; alert(2)">'
HOSTILE_LINK = "[x](javascript:alert(1))"
HOSTILE_NAME = 'evil<img src=x onerror="window.__pwned=3">.txt'
HOSTILE_TEXT = f"""Confidentiality and information sharing

Advocates keep information confidential and only share it with the consent of the person, unless there is a
risk of serious harm. {HOSTILE_SCRIPT} The limits of confidentiality are explained at the first meeting.

We record every decision to share information {HOSTILE_IMG} and the reason for it, in line with data protection law.

Read more about consent {HOSTILE_LINK} and <a href="javascript:alert(3)">click here</a> for our complaints leaflet.
"""

PDF_PAGES: list[list[tuple[str, ...]]] = [
    [
        ("h", "1. Confidentiality"),
        (
            "p",
            "1.1 Advocates keep information about the people they support confidential. Information is only "
            "shared with the consent of the person, unless there is a risk of serious harm to them or to others.",
        ),
        (
            "p",
            "1.2 The limits of confidentiality are explained to every person at the first meeting, in a way they "
            "can understand, and written information is given in easy read.",
        ),
        ("h", "2. Safeguarding"),
        (
            "p",
            "2.1 Any safeguarding concern is reported to the designated safeguarding lead on the same day. The "
            "advocate records the concern and the action taken.",
        ),
    ],
    [
        ("h", "3. Complaints"),
        (
            "p",
            "3.1 Anyone can make a complaint about our service. Complaints are acknowledged within five working "
            "days and a full response is given within twenty working days.",
        ),
        ("li", "•", "If you are not satisfied you can ask the Local Government and Social Care Ombudsman."),
        ("h", "4. Review"),
        ("p", "4.1 This policy is reviewed every year by the trustees. Next review: March 2031."),
    ],
]

DOCX_PARAGRAPHS = [
    ("Heading 1", "Safeguarding policy"),
    (None, "Advocates report any safeguarding concern to the designated safeguarding lead without delay."),
    (None, "We work with the local authority under the Care Act 2014 and follow its safeguarding procedures."),
    ("Heading 1", "Equality"),
    (None, "We make reasonable adjustments so that everyone can use the service, including easy read information."),
]


def make_docx(path: Path) -> Path:
    """A DOCX whose key sentence is split over several runs (one bold), as Word often saves it."""
    document = docx.Document()
    for style, text in DOCX_PARAGRAPHS:
        if style:
            document.add_heading(text, level=1)
        elif "designated safeguarding lead" in text:
            para = document.add_paragraph()
            para.add_run("Advocates report any ")
            para.add_run("safeguarding concern").bold = True
            para.add_run(" to the designated safeguarding lead without delay.")
        else:
            document.add_paragraph(text)
    document.core_properties.title = "Safeguarding policy"
    document.save(str(path))
    return path


def make_files(folder: Path) -> dict[str, Path]:
    """Write the sample submission's files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pdf = folder / "riverside-policy.pdf"
    pdf.write_bytes(build_pdf(PDF_PAGES, title="Riverside Advocacy policy").data)
    hostile = folder / "hostile.txt"  # plain text keeps every character verbatim (Markdown would reinterpret)
    hostile.write_text(HOSTILE_TEXT, encoding="utf-8")
    return {"pdf": pdf, "docx": make_docx(folder / "kestrel-safeguarding.docx"), "hostile": hostile}


def catalogue() -> Catalogue:
    """The project's real catalogue (60 indicators, 9 areas)."""
    return load_catalogue(PROJECT_ROOT / "indicators" / "qpm_v4")


def _hits(passage: Passage, terms: tuple[str, ...]) -> int:
    low = re.sub(r"\s+", " ", passage.text.lower())
    return sum(1 for t in terms if t and t in low)


def _decide(cat: Catalogue, documents: list[IngestedDocument], scope: str) -> Coverage:
    results = []
    for n, ind in enumerate(cat.indicators):
        found: list[tuple[int, IngestedDocument, Passage]] = []
        for d in documents:
            for p in d.passages:
                hits = _hits(p, ind.key_terms)
                if hits:
                    found.append((hits, d, p))
        found.sort(key=lambda f: (-f[0], f[1].document.name, f[2].index))
        evidence = [
            Evidence(
                document=d.document.name,
                doc_id=d.document.doc_id,
                passage_index=p.index,
                text=p.text,
                score=min(0.99, 0.55 + 0.15 * hits),
                section=p.section,
                pages=p.pages,
                start=p.start,
                end=p.end,
                boxes=[b.as_list() for b in p.boxes],
                element=ind.elements[0].id,
            )
            for hits, d, p in found[:3]
        ]
        status = "met" if len(evidence) >= 2 else "partial" if evidence else "missing"
        if status == "missing" and n % 7 == 3:  # some variety among the indicators nothing matched
            status = "partial"
        elements = {e.id: (status == "met" or (status == "partial" and k == 0)) for k, e in enumerate(ind.elements)}
        score = {"met": 0.86, "partial": 0.48, "missing": 0.08}[status]
        results.append(
            IndicatorResult(
                indicator_id=ind.id,
                status=status,  # type: ignore[arg-type]
                score=score,
                probabilities={"met": score, "partial": 0.1, "missing": round(1 - score - 0.1, 2)},
                evidence=evidence,
                elements=elements,
                documents=sorted({e.document for e in evidence}),
            )
        )
    return Coverage(scope=scope, results=results)


def build_submission(folder: Path, *, hostile: bool = True) -> tuple[SubmissionResult, dict, Catalogue]:
    """Ingest the sample files for real and decide coverage by key terms; return result, report and catalogue."""
    files = make_files(folder / "in")
    settings = Settings.from_env(cache_dir=folder / "cache")
    cat = catalogue()
    documents: list[IngestedDocument] = []
    names = ["pdf", "docx", "hostile"] if hostile else ["pdf", "docx"]
    for name in names:
        got = ingest(files[name], settings, today=datetime(2026, 1, 1).date())
        assert isinstance(got, IngestedDocument), got
        if name == "hostile":  # a file name is provider input too
            got = dataclasses.replace(got, document=dataclasses.replace(got.document, name=HOSTILE_NAME))
        documents.append(got)
    if hostile:
        # Make sure the hostile passages are evidence, so they appear in indicator cards and highlighted text.
        first = cat.indicators[0]
        cat_terms = {first.id: ("confidential", "data protection", "consent", *first.key_terms)}
        cat = dataclasses.replace(
            cat,
            indicators=tuple(
                dataclasses.replace(i, key_terms=cat_terms.get(i.id, i.key_terms)) for i in cat.indicators
            ),
        )
    failures = [
        FailedDocument("scan<script>alert(9)</script>.pdf", "/x", "scanned", "has no text layer <b>(a scan?)</b>"),
        FailedDocument("broken.docx", "/y", "corrupt", "could not be read: the file is damaged"),
    ]
    per_document = [_decide(cat, [d], d.document.name) for d in documents]
    result = SubmissionResult(
        name="Riverside <Advocacy> & Co",
        documents=documents,
        failures=failures,
        per_document=per_document,
        submission=_decide(cat, documents, "submission"),
        catalogue=cat,
    )
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    run = RunInfo(
        submission=result.name,
        source=str(folder / "in"),
        model_id="test-model",
        input_key="k",
        started_at=now,
        finished_at=now,
    )
    return result, build_report(result, cat, run), cat
