"""Ingestion: extraction then segmentation of one file, with every failure returned rather than raised."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings
from pipeline.ingest import FailedDocument, IngestedDocument, ingest


def test_a_document_over_the_word_limit_is_refused_before_segmentation(tmp_path: Path) -> None:
    policy = tmp_path / "handbook.txt"
    policy.write_text("We keep what people tell us confidential. " * 40, encoding="utf-8")  # 280 words
    got = ingest(policy, Settings(max_document_words=200))
    assert isinstance(got, FailedDocument) and got.code == "too_large"
    assert "holds 280 words, over the limit of 200" in got.message and "QPM_MAX_DOCUMENT_WORDS" in got.message
    assert isinstance(ingest(policy, Settings(max_document_words=280)), IngestedDocument)
