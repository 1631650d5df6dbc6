"""Screening a provider's draft for the public self-test: private, in-process, nothing kept.

Why not the Prefect flow (``pipeline.flows.screen_submission``) that the CLI uses? Because the flow is built to
*remember*: it persists each document's extracted text as cached task results under ``cache_dir``,
names task runs after the files and stores coverage artifacts in Prefect's database, and it fills the on-disk
embedding cache. All of that is right for the QPM team's batches and wrong for a provider's confidential draft,
which must leave no trace once the page is sent. (It would also add about a second of Prefect overhead per
request.) So the self-test calls the very functions the flow's tasks call, in the same order:
:func:`pipeline.ingest.ingest` (the read task), :func:`pipeline.screen.screen` (the score task's
:func:`pipeline.screen.score_documents` plus the flow's decision step), :func:`pipeline.report.build_report`
(the report the flow writes) and :func:`pipeline.evidence_map.render_evidence_map` (the evidence-map writer),
with a matcher whose encoder keeps no vectors. Results are identical to a CLI run on the same files.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.catalogue import load_catalogue
from pipeline.config import Settings
from pipeline.embed import Encoder, encode_with, load_model
from pipeline.errors import DocumentError
from pipeline.extract.detect import sniff
from pipeline.ingest import FailedDocument, IngestedDocument, ingest
from pipeline.match import Matcher
from pipeline.report import RunInfo, build_report, utc_now
from pipeline.screen import screen
from pipeline.train import load_matcher
from pipeline.unpack import SAME_CONTENT_CODE
from pipeline.web.uploads import SavedFile

SOURCE_LABEL = "self-test upload (deleted after screening)"


class TransientEncoder:
    """Encodes texts with the shared embedding model and remembers nothing afterwards.

    The pipeline's :class:`pipeline.embed.Encoder` keeps every vector in memory and on disk so that re-screening
    is cheap; for a provider's draft that would be a copy of (a function of) their text left behind.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text (the same call the cached encoder makes)."""
        return encode_with(load_model(self.settings), list(texts), self.settings.batch_size)


def build_private_matcher(settings: Settings) -> Matcher:
    """The trained matcher for self-tests: catalogue vectors from the usual cache, document vectors never stored.

    The catalogue's own sentences are not private, so the indicator index is built with the cached encoder (fast
    start-up); the encoder is then swapped for a :class:`TransientEncoder` before any provider text is seen.
    """
    catalogue = load_catalogue(settings.catalogue_path)
    cached = Encoder(settings, settings.cache_dir / "embeddings.sqlite", batch_size=settings.batch_size)
    try:
        matcher = load_matcher(settings, catalogue, cached)
    finally:
        cached.close()
    matcher.encoder = TransientEncoder(settings)
    # Load the network and run it once now, so the first provider does not wait for it (a few seconds).
    matcher.encoder.encode(["Advocacy partners are told how their information is kept confidential."])
    return matcher


@dataclass
class SelfTestResult:
    """What the result page shows: the report (same schema as report.json) and the evidence map's HTML."""

    report: dict[str, Any]
    evidence_map_html: str
    seconds: float


class SelfTestScreener:
    """Screens uploaded drafts with one shared matcher; scoring is serialised (torch already uses every core)."""

    def __init__(self, settings: Settings, matcher: Matcher, model_id: str) -> None:
        self.settings = settings
        self.matcher = matcher
        self.model_id = model_id
        self._score_lock = threading.Lock()

    def read_files(
        self, files: Sequence[SavedFile], today: date
    ) -> tuple[list[IngestedDocument], list[FailedDocument]]:
        """Sniff and ingest each file; a bad file becomes a ``FailedDocument`` with the CLI's message."""
        documents: list[IngestedDocument] = []
        failures: list[FailedDocument] = []
        seen: dict[str, str] = {}
        for saved in files:
            data = saved.path.read_bytes()
            try:
                # The content decides the type, never the name or the browser's Content-Type: a web page renamed
                # .pdf, an image or an archive is refused here with the same words the CLI uses.
                sniff(data, saved.name)
            except DocumentError as exc:
                failures.append(FailedDocument(saved.name, "", exc.code, exc.args[0] if exc.args else str(exc)))
                saved.path.unlink(missing_ok=True)
                continue
            digest = hashlib.sha256(data).hexdigest()
            del data
            if digest in seen:  # the same file twice would count its evidence twice (as in the flow)
                failures.append(
                    FailedDocument(saved.name, "", SAME_CONTENT_CODE, f"same content as {seen[digest]}: screened once")
                )
                continue
            seen[digest] = saved.name
            got = ingest(saved.path, self.settings, today=today)
            if isinstance(got, FailedDocument):
                got = FailedDocument(got.name, "", got.code, got.message)  # no temporary path in the page
                failures.append(got)
            else:
                documents.append(got)
        return documents, failures

    def screen_files(self, files: Sequence[SavedFile], *, name: str = "Your draft policies") -> SelfTestResult:
        """Screen the uploaded files as one submission and render its evidence map (blocking; run in a thread)."""
        from pipeline.evidence_map import render_evidence_map

        started = utc_now()
        clock = time.perf_counter()
        documents, failures = self.read_files(files, date.today())
        with self._score_lock:
            result = screen(self.matcher, name, documents, failures)
        run = RunInfo(
            submission=name,
            source=SOURCE_LABEL,
            model_id=self.model_id,
            input_key="",
            started_at=started,
            finished_at=utc_now(),
        )
        report = build_report(result, self.matcher.catalogue, run)
        html = render_evidence_map(result, report, self.matcher.catalogue)
        return SelfTestResult(report=report, evidence_map_html=html, seconds=time.perf_counter() - clock)


def model_id_for(settings: Settings) -> str:
    """The trained model's id as report.json names it (``pipeline.flows.trained_model_id``)."""
    from pipeline.flows import trained_model_id

    return trained_model_id(settings)


def guidance(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The "what to add" list for the result page: indicators not met, essential first, then by area.

    Each entry: id, title, area_name, level, status, what_to_add, and the essential elements not yet evidenced.
    """
    order = {"essential": 0, "conditional": 1, "good_practice": 2}
    items = [
        {
            "id": ind["id"],
            "title": ind["title"],
            "area": ind["area"],
            "area_name": ind["area_name"],
            "level": ind["level"],
            "condition": ind.get("condition"),
            "status": ind["status"],
            "what_to_add": ind.get("what_to_add") or ind.get("must_say") or "",
            "elements_missing": [e["text"] for e in ind.get("elements", []) if not e.get("evidenced")],
        }
        for ind in report.get("indicators", [])
        if ind.get("status") != "met"
    ]
    items.sort(key=lambda i: (order.get(i["level"], 3), 0 if i["status"] == "missing" else 1, i["id"]))
    return items


def files_of(paths: Sequence[Path]) -> list[SavedFile]:
    """Saved-file records for files already on disk (for callers outside an HTTP request, e.g. benchmarks)."""
    return [SavedFile(name=p.name, path=p, size=p.stat().st_size) for p in paths]
