"""Screening without orchestration: ingested documents in, per-document and submission coverage out.

The Prefect flows, the CLI's ``evaluate`` and the web app all call these plain functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.catalogue import Catalogue, load_catalogue
from pipeline.config import Settings
from pipeline.coverage import Coverage
from pipeline.embed import Encoder
from pipeline.ingest import FailedDocument, IngestedDocument
from pipeline.match import DocumentPassages, Matcher, ScoredDocument
from pipeline.train import load_matcher


@dataclass
class SubmissionResult:
    """Everything known about one screened submission."""

    name: str
    documents: list[IngestedDocument]
    failures: list[FailedDocument]
    per_document: list[Coverage]
    submission: Coverage
    scored: list[ScoredDocument] = field(default_factory=list)
    catalogue: Catalogue | None = None  # the catalogue the decisions were made against


def build_matcher(settings: Settings, catalogue: Catalogue | None = None) -> Matcher:
    """The trained matcher over the configured catalogue, with the on-disk embedding cache."""
    catalogue = catalogue or load_catalogue(settings.catalogue_path)
    encoder = Encoder(settings, settings.cache_dir / "embeddings.sqlite", batch_size=settings.batch_size)
    return load_matcher(settings, catalogue, encoder)


def score_documents(matcher: Matcher, documents: Sequence[IngestedDocument]) -> list[ScoredDocument]:
    """Score each document's passages against every indicator (one encode call for the whole submission)."""
    return matcher.score_documents(
        [
            DocumentPassages(d.document.name, d.document.doc_id, d.document.metadata.policy_type, d.passages)
            for d in documents
        ]
    )


def decide(
    matcher: Matcher,
    name: str,
    documents: Sequence[IngestedDocument],
    failures: Sequence[FailedDocument],
    scored: Sequence[ScoredDocument],
) -> SubmissionResult:
    """Decide coverage for each scored document alone and for the submission as a whole."""
    *per_document, submission = matcher.decide_many([([s], s.name) for s in scored] + [(scored, "submission")])
    return SubmissionResult(
        name=name,
        documents=list(documents),
        failures=list(failures),
        per_document=per_document,
        submission=submission,
        scored=list(scored),
        catalogue=matcher.catalogue,
    )


def screen(
    matcher: Matcher,
    name: str,
    documents: Sequence[IngestedDocument],
    failures: Sequence[FailedDocument] = (),
) -> SubmissionResult:
    """Score and decide a submission in one go (no orchestration)."""
    return decide(matcher, name, documents, failures, score_documents(matcher, documents))
