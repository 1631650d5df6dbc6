"""``qpm-screen bench``: performance figures for the whole screening path and for extraction alone.

A benchmark prints figures; it is not a timed test. What is measured, and why that way:

- The submission: four policies (confidentiality, safeguarding, complaints, equality) of ten PDF pages each,
  rendered from the text of the sample policies. Text is never repeated verbatim (a repeat carries a copy
  marker), because the embedding cache would otherwise make repeated passages free and flatter the figures.
- ``prefect_start_seconds``: starting Prefect's embedded server (one trivial flow run).
- ``cold_seconds``: the first screening in this process: empty caches, the embedding model and the matcher
  loaded on the way.
- ``warm_seconds``: the same submission again in the same process with all the work redone (no result cache,
  no embedding cache) but the model already loaded: the steady cost of screening new documents.
- ``bare_seconds``: the same work without Prefect: extraction and segmentation of each file
  (``extract_seconds``), then one encode call over all passages (``encode_seconds``). ``overhead_ratio`` =
  warm / bare. Warm and bare are each the median of ``TIMING_REPEATS`` runs, alternated, because a shared
  2-core machine drifts by a third between single runs.
- ``scoring_seconds``: matching alone (passage features, evidence probabilities, decisions per document and
  for the submission) with every vector already embedded: what the matcher adds to the encoder's time.
- ``rerun_seconds``: the same submission once more, unchanged (everything cached).
- ``batch_seconds`` / ``batch_rerun_seconds``: a batch of distinct submissions, then the same batch re-run.
- ``batch_half_seconds``: a batch of half as many other submissions (new content), run after the full one.
  ``batch_linearity`` = seconds per page of the full batch / seconds per page of the half one: 1.0 when cost
  grows linearly with pages, above 1 when a bigger batch costs more per page.
- ``peak_rss_mb``: the peak resident memory of this process.
- ``encoder`` and ``environment``: which vectors were computed, on which CPU and torch build (speed differs
  between CPUs by more than the changes worth measuring).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.ingest import FailedDocument, IngestedDocument, ingest
from pipeline.inputs import collect_files

if TYPE_CHECKING:
    from pipeline.match import Matcher

SAMPLES = PROJECT_ROOT / "sample_policies" / "docs"
POLICY_TYPES = ("confidentiality", "safeguarding", "complaints", "equality")
PAGES_PER_POLICY = 10
TIMING_REPEATS = 5  # single runs on this shared 2-core machine differ by a third; five give a steadier median


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024, 1)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def read_folder(settings: Settings, folder: Path) -> list[IngestedDocument]:
    """Every readable document in ``folder`` (the bench builds its own inputs, so a failure is simply left out)."""
    return [d for d in (ingest(p, settings) for p in collect_files([folder])) if isinstance(d, IngestedDocument)]


# --- bench extract ------------------------------------------------------------------------------------------


def bench_extract(settings: Settings, folder: Path = SAMPLES) -> dict[str, Any]:
    """Pages/s and passages/s of extraction + segmentation over the sample policies, overall and by format."""
    files = collect_files([folder])
    if not files:
        return {"error": f"no sample policies in {folder}"}
    ingest(files[0], settings)  # load spaCy once, outside the timing
    by_format: dict[str, dict[str, float]] = {}
    total = {"files": 0.0, "pages": 0.0, "passages": 0.0, "seconds": 0.0}
    failed = 0
    for path in files:
        start = time.perf_counter()
        got = ingest(path, settings)
        seconds = time.perf_counter() - start
        if isinstance(got, FailedDocument):
            failed += 1
            continue
        fmt = got.document.source_format
        row = by_format.setdefault(fmt, {"files": 0.0, "pages": 0.0, "passages": 0.0, "seconds": 0.0})
        for bucket in (row, total):
            bucket["files"] += 1
            bucket["pages"] += got.document.pages
            bucket["passages"] += len(got.passages)
            bucket["seconds"] += seconds
    return {
        "files": int(total["files"]),
        "failed": failed,
        "pages": int(total["pages"]),
        "passages": int(total["passages"]),
        "seconds": round(total["seconds"], 3),
        "pages_per_second": round(total["pages"] / max(total["seconds"], 1e-9), 1),
        "passages_per_second": round(total["passages"] / max(total["seconds"], 1e-9), 1),
        "by_format": {
            fmt: {
                "files": int(r["files"]),
                "pages": int(r["pages"]),
                "pages_per_second": round(r["pages"] / max(r["seconds"], 1e-9), 1),
                "passages_per_second": round(r["passages"] / max(r["seconds"], 1e-9), 1),
            }
            for fmt, r in sorted(by_format.items())
        },
        "peak_rss_mb": peak_rss_mb(),
    }


# --- building the benchmark submissions ---------------------------------------------------------------------


def _sample_texts(settings: Settings) -> dict[str, list[list[tuple[str, str]]]]:
    """Per policy type, each readable sample as ``(kind, text)`` blocks (kind: heading or paragraph)."""
    out: dict[str, list[list[tuple[str, str]]]] = {t: [] for t in POLICY_TYPES}
    for got in read_folder(settings, SAMPLES):
        doc = got.document
        kind = doc.metadata.policy_type if doc.metadata.policy_type in out else "confidentiality"
        blocks = [("heading" if b.kind == "heading" else "paragraph", doc.text[b.start : b.end]) for b in doc.blocks]
        out[kind].append([(k, re.sub(r"\s+", " ", t).strip()) for k, t in blocks if t.strip()])
    return out


def render_pdf(path: Path, blocks: Sequence[tuple[str, str]], pages: int) -> int:
    """Render blocks into a PDF of at least ``pages`` pages, repeating them (each repeat marked, so no passage is
    identical); returns the page count. Needs reportlab (a dev dependency)."""
    words_per_page = 420  # about 45 lines of 10 pt body text per A4 page; corrected below if it falls short
    for _attempt in range(4):
        got = _render_pdf(path, blocks, pages * words_per_page)
        if got >= pages:
            return got
        words_per_page = int(words_per_page * pages / max(got, 1) * 1.02) + 1
    return got


def _render_pdf(path: Path, blocks: Sequence[tuple[str, str]], budget: int) -> int:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    story: list[Any] = []
    words = 0
    copy = 1
    while words < budget:
        for kind, text in blocks:
            marked = text if copy == 1 else f"{text} (copy {copy})"
            style = styles["Heading2"] if kind == "heading" else styles["BodyText"]
            story.append(Paragraph(escape(marked), style))
            words += len(marked.split())
            if words >= budget:
                break
        copy += 1
    counter = {"pages": 0}

    def count(canvas: Any, doc: Any) -> None:
        counter["pages"] = doc.page

    SimpleDocTemplate(str(path), pagesize=A4).build(story, onFirstPage=count, onLaterPages=count)
    return counter["pages"]


def build_submission(folder: Path, texts: dict[str, list[list[tuple[str, str]]]], *, pages: int, tag: str) -> int:
    """Write one PDF per policy type into ``folder``; ``tag`` makes the content unique. Returns total pages."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for kind in POLICY_TYPES:
        samples = texts.get(kind) or next(v for v in texts.values() if v)
        blocks = [b for sample in samples for b in sample]
        if tag:
            blocks = [(k, f"{t} [{tag}]") if k == "paragraph" else (k, t) for k, t in blocks]
        total += render_pdf(folder / f"{kind}-policy.pdf", blocks, pages)
    return total


# --- bench (all) --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BareCost:
    """The work of one screening without Prefect, in its two parts."""

    extract_seconds: float  # reading and segmenting every file
    encode_seconds: float  # one encode call over all passages
    pages: int
    passages: int

    @property
    def seconds(self) -> float:
        """Both parts together: ``bare_seconds``."""
        return self.extract_seconds + self.encode_seconds


def bare_cost(settings: Settings, folder: Path) -> BareCost:
    """Extraction + segmentation of each file, then one encode call over all passages (no Prefect), with the
    model already loaded and no embedding cache."""
    from pipeline.embed import Encoder
    from pipeline.match import passage_texts

    extract, docs = _timed(lambda: read_folder(settings, folder))
    passages = [p for d in docs for p in d.passages]
    encoder = Encoder(settings, None, batch_size=settings.batch_size)
    encode, _ = _timed(lambda: encoder.encode(passage_texts(passages)))
    return BareCost(extract, encode, sum(d.document.pages for d in docs), len(passages))


def scoring_cost(matcher: Matcher, settings: Settings, folder: Path) -> float:
    """Median seconds to score and decide a submission whose passages are already embedded: passage features,
    evidence probabilities and decisions per document and for the submission (what matching adds to the
    encoder). ``matcher.encoder`` must remember vectors (the real encoder does)."""
    from pipeline.screen import screen

    docs = read_folder(settings, folder)
    screen(matcher, folder.name, docs)  # embeds every passage and heading: the timed runs encode nothing
    return statistics.median(_timed(lambda: screen(matcher, folder.name, docs))[0] for _ in range(TIMING_REPEATS))


def bench_all(settings: Settings, *, batch_size: int = 20, progress: bool = False) -> dict[str, Any]:
    """Every figure of ``qpm-screen bench`` (see the module docstring)."""
    from pipeline import flows
    from pipeline.embed import Encoder, encoder_id, runtime_environment

    def say(message: str) -> None:
        if progress:
            print(f"bench: {message}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="qpm-bench-"))
    try:
        cfg = replace(settings, cache_dir=work / "cache")
        say("building the 40-page submission")
        texts = _sample_texts(cfg)
        submission = work / "in" / "bench-submission"
        build_submission(submission, texts, pages=PAGES_PER_POLICY, tag="")
        figures: dict[str, Any] = {}
        with flows.prefect_runtime():
            say("starting Prefect")
            figures["prefect_start_seconds"] = round(_timed(_trivial_flow)[0], 2)
            say("cold run")
            cold, outcome = _timed(lambda: flows.run_screen([str(submission)], work / "out" / "cold", cfg))
            if outcome.report is None:
                return {"error": outcome.error}
            pages = sum(d["pages"] for d in outcome.report["documents"])
            passages = sum(d["passages"] for d in outcome.report["documents"])
            say(f"warm and bare runs ({TIMING_REPEATS} each, alternated)")
            matcher, _ = flows.get_matcher(cfg)
            disk_encoder = matcher.encoder
            warm_runs: list[float] = []
            bare_runs: list[BareCost] = []
            try:
                for _ in range(TIMING_REPEATS):
                    matcher.encoder = Encoder(cfg, None, batch_size=cfg.batch_size)  # no embedding cache
                    warm_runs.append(
                        _timed(lambda: flows.run_screen([str(submission)], work / "out" / "warm", cfg, refresh=True))[0]
                    )
                    bare_runs.append(bare_cost(cfg, submission))
            finally:
                matcher.encoder = disk_encoder
            warm, bare = statistics.median(warm_runs), statistics.median(b.seconds for b in bare_runs)
            say("scoring alone")
            scoring = scoring_cost(matcher, cfg, submission)
            say("unchanged re-run")
            rerun, _ = _timed(lambda: flows.run_screen([str(submission)], work / "out" / "warm", cfg))
            say(f"building a batch of {batch_size} submissions")
            batch_dir = work / "in" / "batch"
            batch_pages = 0
            for n in range(batch_size):
                batch_pages += build_submission(batch_dir / f"provider-{n + 1:02d}", texts, pages=1, tag=f"p{n + 1}")
            say("batch run")
            batch_seconds, _ = _timed(lambda: flows.run_batch(batch_dir, work / "out" / "batch", cfg))
            say("batch re-run")
            batch_rerun, _ = _timed(lambda: flows.run_batch(batch_dir, work / "out" / "batch", cfg))
            half = max(1, batch_size // 2)
            say(f"a batch of {half} other submissions (linearity)")
            half_dir = work / "in" / "half-batch"
            half_pages = 0
            for n in range(half):  # new content: nothing of it is in any cache
                half_pages += build_submission(half_dir / f"provider-{n + 1:02d}", texts, pages=1, tag=f"h{n + 1}")
            half_seconds, _ = _timed(lambda: flows.run_batch(half_dir, work / "out" / "half-batch", cfg))
        figures.update(
            {
                "cold_seconds": round(cold, 2),
                "warm_seconds": round(warm, 2),
                "bare_seconds": round(bare, 2),
                "overhead_ratio": round(warm / bare, 2) if bare else None,
                "warm_runs": [round(x, 2) for x in warm_runs],
                "bare_runs": [round(b.seconds, 2) for b in bare_runs],
                "extract_seconds": round(statistics.median(b.extract_seconds for b in bare_runs), 2),
                "encode_seconds": round(statistics.median(b.encode_seconds for b in bare_runs), 2),
                "scoring_seconds": round(scoring, 2),
                "rerun_seconds": round(rerun, 2),
                "documents": len(outcome.report["documents"]),
                "pages": pages,
                "pages_per_second": round(pages / warm, 1),
                "passages": passages,
                "passages_per_second": round(passages / warm, 1),
                "bare_pages": bare_runs[0].pages,
                "bare_passages": bare_runs[0].passages,
                "peak_rss_mb": peak_rss_mb(),
                "batch_submissions": batch_size,
                "batch_pages": batch_pages,
                "batch_seconds": round(batch_seconds, 2),
                "batch_seconds_per_page": round(batch_seconds / max(batch_pages, 1), 3),
                "batch_rerun_seconds": round(batch_rerun, 2),
                "batch_rerun_ratio": round(batch_rerun / batch_seconds, 3) if batch_seconds else None,
                "batch_half_submissions": half,
                "batch_half_pages": half_pages,
                "batch_half_seconds": round(half_seconds, 2),
                "batch_linearity": _linearity(batch_seconds, batch_pages, half_seconds, half_pages),
                "encoder": encoder_id(cfg),
                "environment": runtime_environment(),
            }
        )
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _linearity(seconds: float, pages: int, half_seconds: float, half_pages: int) -> float | None:
    """Seconds per page of the full batch over seconds per page of the half batch (1.0: linear in pages), to two
    decimals; None when either batch measured nothing."""
    if not (seconds and pages and half_seconds and half_pages):
        return None
    return round((seconds / pages) / (half_seconds / half_pages), 2)


def _trivial_flow() -> None:
    from prefect import flow

    @flow(name="qpm-bench-start")
    def start() -> int:
        return 1

    start()
