"""Prefect 3 flows: thin orchestration over the plain pipeline functions.

``screen_submission`` screens one submission (a folder, a .zip, or a list of files): one task per document
(extraction and segmentation), one task that scores every document of the submission, then the decision over
the whole submission, report writing and two Prefect artifacts (a coverage table and a markdown summary).
``screen_batch`` runs one ``screen_submission`` per entry of a batch folder (sub-folders and zips) with bounded
concurrency; a submission that fails is recorded and the others go on.

Why it is shaped like this:

- Prefect's per-task overhead is real, so tasks are per document, never per passage; and scoring is one task
  per submission, with one encode call over all its passages (why, measured: :func:`score_task`).
- Document results (the extracted, segmented document) are cached and persisted under ``Settings.cache_dir``
  with keys built from the file's content hash, the ingestion code's version, the settings that change
  extraction and the run date (because "out of date" is judged against today). Passage vectors are cached by
  model and text, so re-running after a crash, or after one provider adds a document, extracts and encodes only
  the new documents; a new model re-scores without re-extracting.
- A submission whose ``report.json`` already carries the same input key is not screened again (its outputs are
  complete: ``report.json`` is always written last). That makes a re-run of an unchanged batch cost little more
  than hashing its files.
- Retries are for transient errors only (a file locked by another program, a workbook open in Excel): a bad
  file is never retried, it comes back from :func:`pipeline.ingest.ingest` as a ``FailedDocument``.
- Loading the trained matcher costs seconds, so it is built once per process (:func:`get_matcher`).

Prefect runs embedded by default (its ephemeral mode: no server to start). ``PREFECT_HOME`` defaults to a folder
under ``Settings.cache_dir`` so runs never touch a user's other Prefect projects. Both must be decided before
Prefect is imported, which is why this module sets them at the top.
"""

from __future__ import annotations

import os

from pipeline.config import Settings
from pipeline.prefect_home import detach_embedded_server, use_default_home

# Decided before the first import of prefect, which reads its settings once at import time. (The check repeats
# use_default_home's own, but as an `if` it keeps the imports below from counting as misplaced.)
if "PREFECT_HOME" not in os.environ:
    use_default_home(Settings.from_env())
# Prefect creates its home without parents and then fails to open its database: create the whole path.
if not os.path.isdir(os.path.expanduser(os.environ["PREFECT_HOME"])):
    os.makedirs(os.path.expanduser(os.environ["PREFECT_HOME"]), exist_ok=True)
# The first start of the embedded server in a new PREFECT_HOME was measured at 7-25 s here (migrations).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import contextlib
import contextvars
import dataclasses
import functools
import gc
import hashlib
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any, Generic, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import SyncClientContext, TaskRunContext
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline import __version__
from pipeline.catalogue import Catalogue
from pipeline.errors import DocumentError, ModelUnavailableError
from pipeline.ingest import FailedDocument, IngestedDocument, ingest
from pipeline.inputs import HIDDEN_CODE, batch_entries, hidden_message, readable_name, walk_inputs
from pipeline.match import Matcher, ScoredDocument
from pipeline.report import (
    REPORT_FILE,
    BatchEntry,
    RunInfo,
    build_report,
    read_report,
    set_aside_earlier_outputs,
    utc_now,
    write_batch_summary,
    write_submission_reports,
)
from pipeline.screen import SubmissionResult, build_matcher, decide, score_documents
from pipeline.train import MODEL_FILE
from pipeline.unpack import SAME_CONTENT_CODE, RefusedMember, is_zip_submission, unpack_zip

# Settings that change what ingestion produces, and those that change what matching produces.
INGEST_FIELDS = (
    "max_file_mb",
    "max_pages",
    "max_document_words",
    "max_uncompressed_mb",
    "max_pdf_page_content_mb",
    "max_pdf_content_mb",
    "convert_timeout_s",
    "max_passage_words",
    "window_sentences",
    "spacy_model",
)
MATCH_FIELDS = ("embedding_model_id", "encoder_int8", "evidence_per_indicator")
# Members not screened on purpose with nothing lost (a copy of a file that is screened): report.json's
# ``skipped``. Every other refused member is an error the provider should see (report.json's ``errors``, the
# command's FAILED lines and exit code 3, the coverage and batch errors sheets).
SKIPPED_CODES = frozenset({SAME_CONTENT_CODE})

# --- fingerprints -------------------------------------------------------------------------------------------


# The source files each kind of result depends on. Hashing only these (not the whole package) keeps, say, a web
# page edit from invalidating every cached extraction.
INGEST_SOURCES = ("config.py", "errors.py", "document.py", "extract", "segment.py", "ingest.py")
OUTPUT_SOURCES = (
    *INGEST_SOURCES,
    "catalogue.py",
    "coverage.py",
    "adapt.py",
    "embed.py",
    "quantized_encoder.py",
    "match.py",
    "screen.py",
    "train.py",
    "report.py",
    "flows.py",
    "unpack.py",
    "evidence_map.py",
    "highlight.py",
    "templates",
)


@functools.cache
def code_version(sources: tuple[str, ...] = OUTPUT_SOURCES) -> str:
    """The package version plus a hash of the named source files and folders (relative to the package), so a
    code change invalidates exactly the cached results it can affect."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in sources:
        target = root / name
        files = sorted(target.rglob("*")) if target.is_dir() else [target]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_fingerprint(settings: Settings, names: Sequence[str]) -> str:
    """A short hash of the named settings."""
    payload = "|".join(f"{n}={getattr(settings, n)!r}" for n in names)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


@functools.cache
def _file_id(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(Path(path))[:12]


def trained_model_id(settings: Settings) -> str:
    """``<embedding model>@<hash of the trained matcher file>``; changes whenever the matcher is retrained."""
    path = settings.models_dir / MODEL_FILE
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelUnavailableError(f"no trained matcher at {path}: run `qpm-screen train` (or `make train`)") from exc
    return f"{settings.embedding_model_id}@{_file_id(str(path), st.st_mtime_ns, st.st_size)}"


# --- the matcher, once per process --------------------------------------------------------------------------


@dataclass(frozen=True)
class MatcherSource:
    """How to build the matcher and name its model. Tests swap in a small one with :func:`use_matcher_source`."""

    build: Callable[[Settings], Matcher]
    model_id: Callable[[Settings], str]


DEFAULT_MATCHER_SOURCE = MatcherSource(build=lambda s: build_matcher(s), model_id=trained_model_id)
_source = DEFAULT_MATCHER_SOURCE
_matchers: dict[tuple[Settings, str], tuple[Matcher, threading.Lock]] = {}
_matchers_lock = threading.Lock()


def use_matcher_source(source: MatcherSource | None) -> None:
    """Replace (or with None restore) how matchers are built; clears the per-process cache."""
    global _source
    with _matchers_lock:
        _source = source or DEFAULT_MATCHER_SOURCE
        _matchers.clear()


def model_id(settings: Settings) -> str:
    """The id of the model that will score documents under ``settings``."""
    return _source.model_id(settings)


def get_matcher(settings: Settings) -> tuple[Matcher, threading.Lock]:
    """The matcher for ``settings``, built on first use in this process, and a lock to use it under.

    The lock serialises scoring in one process: the encoder's SQLite cache is one connection, and torch already
    spreads a single encode over every core, so running two at once would gain nothing.
    """
    key = (settings, model_id(settings))
    with _matchers_lock:
        if key not in _matchers:
            _matchers[key] = (_source.build(settings), threading.Lock())
            # The model, the libraries and the catalogue are some 800,000 objects that live as long as the
            # process; a full garbage collection walked them all: 0.36 and 0.53 s, twice in eight timed
            # screenings. Frozen, they are left out of collections (a full one then cost 0.002-0.03 s).
            gc.freeze()
        return _matchers[key]


# --- settings as flow parameters ----------------------------------------------------------------------------


def settings_to_params(settings: Settings) -> dict[str, str]:
    """Settings as plain strings, so flow parameters stay JSON (they are shown and editable in the Prefect UI)."""
    return {f.name: str(getattr(settings, f.name)) for f in fields(settings)}


def settings_from_params(params: dict[str, Any] | None) -> Settings:
    """The inverse of :func:`settings_to_params`; missing keys fall back to the environment and defaults."""
    # Read as QPM_* variables over the environment's, so each field is parsed as the environment's would be
    # (bool("False") is True: a parameter "False" used to turn a setting on).
    known = {f.name for f in fields(Settings)}
    given = {f"QPM_{k.upper()}": str(v) for k, v in (params or {}).items() if k in known and v is not None}
    return Settings.from_env({**os.environ, **given})


# --- progress events (in-process listeners, e.g. the CLI's progress bar) -------------------------------------

ProgressListener = Callable[[str, dict[str, Any]], None]
_listeners: list[ProgressListener] = []


@contextlib.contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Receive ``(event, details)`` while the block runs: ``documents`` (total), ``document``, ``submission``."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def _emit(event: str, **details: Any) -> None:
    for listener in list(_listeners):
        with contextlib.suppress(Exception):  # a display problem must never stop screening
            listener(event, details)


# --- tasks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentJob:
    """One file to read and everything its cache key needs (computed once, in the flow)."""

    path: str
    name: str
    sha256: str
    settings: Settings
    code: str  # code_version(INGEST_SOURCES)
    today: date


T = TypeVar("T")


class Opaque(Generic[T]):
    """A box Prefect does not look inside.

    Prefect walks every task argument that is a list, dict or dataclass looking for futures; a document's
    thousands of word boxes made that cost seconds a run. Unlike ``prefect.quote`` this survives pickling to
    Dask workers unchanged.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __getstate__(self) -> T:
        return self.value

    def __setstate__(self, value: T) -> None:
        self.value = value


def _document_key(context: TaskRunContext, params: dict[str, Any]) -> str:
    job: DocumentJob = params["job"]
    parts = (
        job.sha256,
        job.name,
        job.code,
        settings_fingerprint(job.settings, INGEST_FIELDS),
        job.today.isoformat(),  # "out of date" review dates are judged against the run date
    )
    return "qpm-document-" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only OS-level errors (a busy or locked file), never a document problem or a bug."""
    try:
        state.result()
    except DocumentError:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(
    name="read document",
    task_run_name="read {job.name}",
    cache_key_fn=_document_key,
    persist_result=True,
    cache_result_in_memory=False,  # persisted on disk; a large batch must not hold every document in memory
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_transient,
)
def document_task(job: DocumentJob) -> IngestedDocument | FailedDocument:
    """Extract and segment one file (a bad file comes back as a ``FailedDocument``, never an exception)."""
    path = Path(job.path)
    # Opening first turns a file locked by another program into an OSError here, which is retried, rather than
    # a "could not be read" result that would be cached.
    with open(path, "rb"):
        pass
    got = ingest(path, job.settings, today=job.today)
    if isinstance(got, FailedDocument):
        return got
    # The word boxes have served segmentation (each passage keeps its own boxes). Left in, they were two thirds
    # of the pickled result Prefect persists for every document, and most of the time spent persisting it.
    return IngestedDocument(dataclasses.replace(got.document, spans=[]), got.passages)


@task(name="score documents", cache_policy=NO_CACHE)
def score_task(documents: Opaque[list[IngestedDocument]], settings: Settings) -> list[ScoredDocument]:
    """Score every document of a submission against every indicator, with one encode call for all of them.

    Not cached: passage vectors are cached by text, so re-scoring an unchanged document costs lookups and
    feature arithmetic, a small share of a run. One call per submission rather than per document: measured on the
    bench's 40-page submission, per-document scoring ran 1.3-1.7x the bare cost, mostly because each encode
    competed for the two cores with the next document's extraction; one call brought that to about 1.3x.
    """
    matcher, lock = get_matcher(settings)
    with lock:
        return score_documents(matcher, documents.value)


# Never cached: the files must be written on every run, and hashing the whole result for a key cost 0.1-0.2 s.
@task(name="write reports", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2, retry_condition_fn=_transient)
def write_task(result: Opaque[SubmissionResult], report: Opaque[dict[str, Any]], out_dir: str) -> list[str]:
    """Write the submission's files (retried when e.g. the workbook is open in Excel and cannot be replaced)."""
    return [str(p) for p in write_submission_reports(result.value, report.value, Path(out_dir))]


def _document_task(settings: Settings, refresh: bool) -> Any:
    return document_task.with_options(result_storage=settings.cache_dir / "results", refresh_cache=refresh)


# --- sources ------------------------------------------------------------------------------------------------


@dataclass
class ResolvedSource:
    """The files of one submission, ready to screen."""

    files: list[Path]
    refused: list[RefusedMember] = field(default_factory=list)
    work_dir: Path | None = None  # to delete after the run


def submission_name(sources: Sequence[str]) -> str:
    """A name for a submission: the folder or zip's name, or the folder holding the first file named."""
    first = Path(sources[0])
    if len(sources) == 1 and (first.is_dir() or first.suffix.lower() == ".zip"):
        return first.stem if first.is_file() else first.resolve().name
    return first.resolve().parent.name or "submission"


def resolve_source(sources: Sequence[str], settings: Settings) -> ResolvedSource:
    """Files to screen for ``sources`` (folders, zips, files); zips are unpacked into a fresh work folder.

    Raises ``DocumentError`` when a zip named directly is refused as a whole.
    """
    resolved = ResolvedSource(files=[])
    try:
        _resolve(sources, settings, resolved)
    except BaseException:
        if resolved.work_dir is not None:  # nobody else will: the caller only gets a result on success
            shutil.rmtree(resolved.work_dir, ignore_errors=True)
        raise
    return resolved


def _resolve(sources: Sequence[str], settings: Settings, resolved: ResolvedSource) -> None:
    files, hidden = walk_inputs(Path(s) for s in sources)
    # Hidden files and folders inside the folders named are not screened, but never dropped without a word.
    for name, entry in hidden:
        resolved.refused.append(RefusedMember(name, HIDDEN_CODE, hidden_message(entry.is_dir())))
    archives = 0
    for path in files:
        if not is_zip_submission(path):
            resolved.files.append(path)
            continue
        if resolved.work_dir is None:  # outside every input folder, and unique to this run
            resolved.work_dir = settings.cache_dir / "work" / uuid.uuid4().hex
        archives += 1
        dest = resolved.work_dir / str(archives)
        try:
            unpacked = unpack_zip(path, dest, settings)
        except DocumentError as exc:
            if len(sources) == 1 and Path(sources[0]) == path:
                raise
            message = exc.args[0] if exc.args else str(exc)
            resolved.refused.append(RefusedMember(readable_name(path), exc.code, message))
            continue
        resolved.files.extend(sorted(unpacked.files))
        zip_name = readable_name(path)
        for member in (*unpacked.refused, *unpacked.skipped):
            resolved.refused.append(RefusedMember(f"{zip_name}/{member.name}", member.code, member.message))


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes (what Prefect artifact keys accept)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-") or "submission"


# --- artifacts ----------------------------------------------------------------------------------------------


def _artifacts(name: str, report: dict[str, Any], out_dir: Path) -> None:
    key = slug(name)[:60]
    table = [
        {
            "indicator": i["id"],
            "area": i["area"],
            "level": i["level"],
            "status": i["status"],
            "score": i["score"],
            "title": i["title"],
            "evidence": "; ".join(e["reference"] for e in i["evidence"]),
        }
        for i in report["indicators"]
    ]
    create_table_artifact(table=table, key=f"coverage-{key}", description=f"QPM coverage for {name}")
    summary = report["summary"]
    lines = [
        f"# {name}: {summary['verdict']}",
        "",
        f"Catalogue {report['catalogue']['id']} {report['catalogue']['version']}, model {report['model']['id']}, "
        f"tool {report['tool']['version']}. Reports in `{out_dir}`.",
        "",
        "| Area | Met | Partial | Missing |",
        "|---|---:|---:|---:|",
        *(f"| {a['area_name']} | {a['met']} | {a['partial']} | {a['missing']} |" for a in summary["by_area"]),
        "",
    ]
    if summary["essential_missing"]:
        lines.append("**Essential indicators missing:** " + ", ".join(summary["essential_missing"]))
    for doc in report["documents"]:
        flags = ", ".join(doc["warnings"]) or "no warnings"
        lines.append(f"- {_md(doc['name'])}: {doc['detected_type']}, {doc['pages']} page(s); {_md(flags)}")
    for err in report["errors"]:
        lines.append(f"- **not read** {_md(err['name'])}: {_md(err['message'])}")
    create_markdown_artifact(markdown="\n".join(lines), key=f"summary-{key}", description=f"Summary for {name}")


def _md(text: str) -> str:
    """Markdown-inert text: file names and messages come from providers."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|])", r"\\\1", text)


# --- stopping a batch ---------------------------------------------------------------------------------------


class BatchStopped(KeyboardInterrupt):
    """Raised inside a submission of a batch that Ctrl+C or SIGTERM is stopping, at its next stage.

    A KeyboardInterrupt, so Prefect records that submission's flow run as crashed by an interrupt, as it does the
    batch's own, and nothing catches it as a failed submission.
    """


# The stop request of the batch a submission belongs to. Each submission runs in a copy of the batch flow's
# context (see screen_batch), so it sees the batch's Event; a submission run on its own sees None.
_batch_stop: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("qpm_batch_stop", default=None)


def stop_point(name: str) -> None:
    """Leave off here (raise :class:`BatchStopped`) if this submission's batch is being stopped.

    Python raises a signal in the main thread only, where the batch flow waits; its submissions run in worker
    threads and would otherwise each run to the end, so a stop would wait for every submission already started.
    Called between stages, never while a file is being written: what a submission has written stays complete.
    """
    stop = _batch_stop.get()
    if stop is not None and stop.is_set():
        raise BatchStopped(f"{name}: the batch is being stopped")


# --- screen_submission --------------------------------------------------------------------------------------


@dataclass
class SubmissionOutcome:
    """What happened to one submission."""

    name: str
    out_dir: str
    # Held opaque because Prefect walks a flow's return value looking for futures: a report's thousands of
    # nested values made that walk 0.12 s of a 2.9 s screening (measured), for nothing.
    held_report: Opaque[dict[str, Any] | None] = field(default_factory=lambda: Opaque(None), repr=False)
    error: str | None = None  # the whole submission could not be screened
    error_code: str | None = None
    written: list[str] = field(default_factory=list)
    reused: bool = False  # outputs from an earlier run with the same inputs were kept
    notice: str | None = None  # not screened: the NOT-SCREENED.txt in out_dir, when it held earlier outputs
    earlier_outputs: str | None = None  # not screened: where those earlier outputs were moved

    @property
    def report(self) -> dict[str, Any] | None:
        """The submission's report (what report.json holds); None when it could not be screened."""
        return self.held_report.value

    @property
    def failed_files(self) -> list[dict[str, str]]:
        """Files (or archive members) that could not be read."""
        return list(self.report["errors"]) if self.report else []


def not_screened(name: str, source: str, out: Path, error: str, code: str | None) -> SubmissionOutcome:
    """The outcome of a submission that could not be screened at all, its earlier outputs in ``out`` set aside
    so that none passes for current (see :func:`pipeline.report.set_aside_earlier_outputs`: moved, not deleted,
    with a NOT-SCREENED.txt saying why)."""
    try:
        notice = set_aside_earlier_outputs(out, name=name, source=source, error=error, code=code, when=utc_now())
    except OSError as exc:  # said with the reason rather than lost: the folder may still hold an old report
        reason = exc.strerror or type(exc).__name__
        return SubmissionOutcome(
            name=name,
            out_dir=str(out),
            error=f"{error} (the earlier outputs in {out} could not be marked as out of date: {reason})",
            error_code=code,
        )
    return SubmissionOutcome(
        name=name,
        out_dir=str(out),
        error=error,
        error_code=code,
        notice=str(notice.path) if notice else None,
        earlier_outputs=str(notice.earlier_outputs) if notice and notice.earlier_outputs else None,
    )


def input_key(
    jobs: Sequence[DocumentJob], refused: Sequence[RefusedMember], settings: Settings, model: str, catalogue: str
) -> str:
    """Fingerprint of everything a submission's outputs depend on."""
    parts = [code_version(OUTPUT_SOURCES), model, catalogue, jobs[0].today.isoformat()] if jobs else ["empty"]
    parts.append(settings_fingerprint(settings, INGEST_FIELDS + MATCH_FIELDS))
    parts.extend(f"{j.name}:{j.sha256}" for j in jobs)
    parts.extend(f"refused:{r.name}:{r.code}" for r in refused)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _catalogue(settings: Settings) -> Catalogue:
    matcher, _ = get_matcher(settings)
    return matcher.catalogue


@flow(name="screen-submission", flow_run_name="screen {name}", validate_parameters=False)
def screen_submission(
    source: str | list[str],
    out_dir: str,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
    refresh: bool = False,
    today: str | None = None,
) -> SubmissionOutcome:
    """Screen one submission (a folder, a .zip, or a list of files) and write its reports into ``out_dir``.

    A submission that cannot be screened at all (a zip named directly that is damaged or refused as a whole) gets
    no reports; reports of an earlier run in ``out_dir`` are moved aside, with a NOT-SCREENED.txt saying why
    (:func:`not_screened`).

    Args:
        source: a folder, a zip, a file, or a list of files and folders: together, one provider's submission.
        out_dir: where report.json, coverage.csv and coverage.xlsx go (created; never inside an input folder).
        name: the submission's name in reports (default: the folder or zip name).
        settings: ``Settings`` fields as strings (see :func:`settings_to_params`); the rest from the environment.
        refresh: ignore cached results and earlier outputs; do all the work again.
        today: ISO date that "out of date" review dates are judged against (default: today).
    """
    sources = [source] if isinstance(source, str) else list(source)
    cfg = settings_from_params(settings)
    name = name or submission_name(sources)
    out = Path(out_dir)
    started = utc_now()
    run_date = date.fromisoformat(today) if today else date.today()
    logger = get_run_logger()
    try:
        resolved = resolve_source(sources, cfg)
    except DocumentError as exc:
        logger.warning("%s could not be unpacked: %s", name, exc)
        return not_screened(name, ", ".join(sources), out, exc.args[0], exc.code)
    try:
        return _screen_resolved(name, sources, resolved, out, cfg, refresh, run_date, started)
    finally:
        if resolved.work_dir is not None:
            shutil.rmtree(resolved.work_dir, ignore_errors=True)


@dataclass
class Plan:
    """The documents of a submission with their cache-key inputs, and the submission's input key."""

    jobs: list[DocumentJob]
    refused: list[RefusedMember]
    failures: list[FailedDocument]
    key: str


def plan_jobs(resolved: ResolvedSource, cfg: Settings, run_date: date) -> Plan:
    """Hash every file once; drop exact duplicates (their evidence would count twice); compute the input key."""
    code = code_version(INGEST_SOURCES)
    jobs: list[DocumentJob] = []
    refused = list(resolved.refused)
    failures: list[FailedDocument] = []
    seen: dict[str, str] = {}
    for path in resolved.files:
        name = readable_name(path)
        try:
            if not stat.S_ISREG(path.stat().st_mode):  # a pipe would block the hashing below for ever
                failures.append(
                    FailedDocument(name, str(path), "unsupported_format", "not a regular file (a pipe or device)")
                )
                continue
            digest = sha256_file(path)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            failures.append(FailedDocument(name, str(path), "unreadable", f"could not be opened ({reason})"))
            continue
        if digest in seen:
            refused.append(RefusedMember(name, SAME_CONTENT_CODE, f"same content as {seen[digest]}; screened once"))
            continue
        seen[digest] = name
        jobs.append(DocumentJob(str(path), name, digest, cfg, code, run_date))
    catalogue = get_matcher(cfg)[0].catalogue.fingerprint()
    return Plan(jobs, refused, failures, input_key(jobs, refused, cfg, model_id(cfg), catalogue))


def reusable_report(plan: Plan, out: Path) -> dict[str, Any] | None:
    """The complete report already in ``out`` if it was made from exactly these inputs, else None."""
    previous = read_report(out / REPORT_FILE)
    if previous is not None and previous.get("submission", {}).get("input_key") == plan.key and not plan.failures:
        return previous
    return None


def unchanged_outcome(name: str, source: Path, out: Path, cfg: Settings, run_date: date) -> SubmissionOutcome | None:
    """For a batch: the kept outcome of a submission whose inputs have not changed, without starting a subflow.

    Saves the fixed cost of a flow run per submission when an unchanged batch is re-run.
    """
    if not (out / REPORT_FILE).exists():
        return None
    try:
        resolved = resolve_source([str(source)], cfg)
    except DocumentError:
        return None  # the subflow reports it
    try:
        previous = reusable_report(plan_jobs(resolved, cfg, run_date), out)
    finally:
        if resolved.work_dir is not None:
            shutil.rmtree(resolved.work_dir, ignore_errors=True)
    if previous is None:
        return None
    _emit("submission", name=name, reused=True, documents=len(previous.get("documents", [])))
    return SubmissionOutcome(name=name, out_dir=str(out), held_report=Opaque(previous), reused=True)


def _screen_resolved(
    name: str,
    sources: Sequence[str],
    resolved: ResolvedSource,
    out: Path,
    cfg: Settings,
    refresh: bool,
    run_date: date,
    started: Any,
) -> SubmissionOutcome:
    logger = get_run_logger()
    matcher, _ = get_matcher(cfg)
    stop_point(name)
    plan = plan_jobs(resolved, cfg, run_date)
    jobs, refused, failures, key = plan.jobs, plan.refused, plan.failures, plan.key
    previous = None if refresh else reusable_report(plan, out)
    if previous is not None:
        logger.info("%s: unchanged since the last run, outputs kept", name)
        _emit("submission", name=name, reused=True, documents=len(jobs))
        return SubmissionOutcome(name=name, out_dir=str(out), held_report=Opaque(previous), reused=True)

    screen_t = _document_task(cfg, refresh)
    _emit("documents", name=name, total=len(jobs))
    futures = [screen_t.submit(job) for job in jobs]
    documents: list[IngestedDocument] = []
    for job, fut in zip(jobs, futures, strict=True):
        stop_point(name)  # leaving the flow cancels the document tasks not started
        got = fut.result()
        if isinstance(got, FailedDocument):
            failures.append(dataclasses.replace(got, path=job.path))
            _emit("document", name=job.name, ok=False)
            continue
        # A cached result remembers where the file was last time (a zip's work folder is new on every run);
        # later writers (highlighted originals) need where it is now.
        document = dataclasses.replace(got.document, path=job.path)
        documents.append(IngestedDocument(document=document, passages=got.passages))
        _emit("document", name=job.name, ok=True)
    stop_point(name)
    _emit("scoring", name=name, documents=len(documents))
    scored = score_task(Opaque(documents), cfg) if documents else []
    # Deciding is cheap and needs every document of the submission at once: it runs here, not as a task.
    result = decide(matcher, name, documents, failures, scored)
    run = RunInfo(
        submission=name,
        source=", ".join(sources),
        model_id=model_id(cfg),
        input_key=key,
        started_at=started,
        finished_at=utc_now(),
        refused=tuple((r.name, r.code, r.message) for r in refused if r.code not in SKIPPED_CODES),
    )
    report = build_report(result, matcher.catalogue, run)
    report["skipped"] = [{"name": r.name, "reason": r.message} for r in refused if r.code in SKIPPED_CODES]
    stop_point(name)
    written = write_task(Opaque(result), Opaque(report), str(out))
    stop_point(name)  # the outputs are complete; the artifacts are only a convenience in Prefect's UI
    try:
        _artifacts(name, report, out)
    except Exception as exc:  # the UI summary is a convenience; never lose a finished report over it
        logger.warning("could not create Prefect artifacts for %s: %s", name, exc)
    _emit("submission", name=name, reused=False, documents=len(jobs))
    return SubmissionOutcome(name=name, out_dir=str(out), held_report=Opaque(report), written=written)


# --- screen_batch -------------------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    """Every submission of a batch and the summary files."""

    outcomes: list[SubmissionOutcome]
    summary_files: list[str]

    @property
    def failed(self) -> bool:
        """True when any submission or file could not be screened."""
        return any(o.error or o.failed_files for o in self.outcomes)


@flow(name="screen-batch", flow_run_name="batch {batch_dir}", validate_parameters=False)
def screen_batch(
    batch_dir: str,
    out_dir: str,
    concurrency: int = 2,
    settings: dict[str, Any] | None = None,
    refresh: bool = False,
    dask_address: str | None = None,
    today: str | None = None,
) -> BatchOutcome:
    """Screen every submission in ``batch_dir`` (sub-folders and zips) into ``out_dir/<name>/``, then write
    ``batch-summary.csv`` and ``batch-summary.xlsx`` into ``out_dir``.

    At most ``concurrency`` submissions run at once; one failing never stops the others. Ctrl+C or SIGTERM stops
    the batch promptly: submissions not started are dropped, running ones leave off at their next stage
    (:func:`stop_point`), no summary is written, and a re-run does the rest.
    ``dask_address`` sends document tasks to a Dask cluster (``tcp://host:8786``).
    """
    cfg = settings_from_params(settings)
    out = Path(out_dir)
    logger = get_run_logger()
    entries = batch_entries(Path(batch_dir))
    sub = screen_submission.with_options(task_runner=make_task_runner(dask_address))

    run_date = date.fromisoformat(today) if today else date.today()

    def run_one(name: str, path: Path) -> SubmissionOutcome:
        stop_point(name)
        try:
            kept = None if refresh else unchanged_outcome(name, path, out / name, cfg, run_date)
            if kept is not None:
                return kept
            return sub(
                source=str(path),
                out_dir=str(out / name),
                name=name,
                settings=settings,
                refresh=refresh,
                today=today,
            )
        except Exception as exc:  # a bug or a broken environment in one submission must not stop the batch
            logger.error("submission %s failed: %s: %s", name, type(exc).__name__, exc)
            return not_screened(name, str(path), out / name, f"internal error: {type(exc).__name__}: {exc}", "internal")

    outcomes: dict[str, SubmissionOutcome] = {}
    _emit("submissions", total=len(entries))
    stop = threading.Event()
    # Set before the contexts are copied for the submissions below; reset after, so that a flow run later in this
    # thread (a test, the web app) never sees this batch's stop.
    token = _batch_stop.set(stop)
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="qpm-submission") as pool:
            # Each thread runs its subflow in a copy of this flow's context, so Prefect links it as a child run.
            futures = {
                item.name: pool.submit(contextvars.copy_context().run, run_one, item.name, item.path)
                for item in entries
                if item.path is not None and item.problem is None
            }
            for item in entries:
                if item.problem is not None:
                    # Not screened (a loose file, an empty or hidden folder): a row of its own in the summary and its
                    # errors sheet, and exit code 3, like a submission that could not be read. A folder of that name
                    # from an earlier batch is set aside like any other submission's that could not be screened.
                    source = str(item.path or Path(batch_dir) / item.name)
                    kept = not_screened(item.name, source, out / item.name, item.problem, item.code)
                    outcomes[item.name] = dataclasses.replace(kept, out_dir=kept.out_dir if kept.notice else "")
            try:
                for name, fut in futures.items():
                    outcomes[name] = fut.result()
            except BaseException:
                # Only Ctrl+C or SIGTERM gets here (run_one turns every error into an outcome). Submissions not started
                # are dropped and running ones leave off at their next stage (stop_point): the stop does not wait for
                # the rest of the batch. Whatever a submission finished is complete; a re-run does the rest.
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        _batch_stop.reset(token)
    ordered = [outcomes[item.name] for item in entries]
    catalogue = _catalogue(cfg)
    summary = write_batch_summary(
        [
            BatchEntry(
                name=o.name,
                report=o.report,
                out_dir=Path(o.out_dir) if o.report else None,
                error=o.error,
                error_code=o.error_code,
                notice=Path(o.notice) if o.notice else None,
            )
            for o in ordered
        ],
        catalogue,
        out,
    )
    return BatchOutcome(outcomes=ordered, summary_files=[str(p) for p in summary])


# --- running the flows --------------------------------------------------------------------------------------


def make_task_runner(dask_address: str | None) -> Any:
    """A thread pool by default; a Dask runner connected to ``dask_address`` when one is given."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    # Extraction is Python holding the GIL: a second thread read no document sooner, and the two slowed each other
    # (the bench's four PDFs: 0.07-0.1 s each alone, 0.1-0.22 s each side by side, the same wall time or more).
    return ThreadPoolTaskRunner(max_workers=1)


@contextlib.contextmanager
def local_dask_cluster(workers: int | None) -> Iterator[str | None]:
    """Start a local Dask cluster of ``workers`` processes for the block and yield its address (None for 0)."""
    if not workers:
        yield None
        return
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


_IN_RUNTIME: contextvars.ContextVar[bool] = contextvars.ContextVar("qpm_in_prefect_runtime", default=False)


@contextlib.contextmanager
def prefect_runtime() -> Iterator[None]:
    """Settings for a run in this process. With the embedded server: no flow-run heartbeats, and the server runs
    apart from this process (its own session, its output in a log file: see
    :func:`pipeline.prefect_home.detach_embedded_server`), so Ctrl+C or SIGTERM stops a run without its tracebacks.

    Heartbeats let a Prefect server notice crashed runs of a worker; with the embedded server nobody listens,
    and each flow run would wait up to a second for its heartbeat thread to stop.

    One API client serves every flow run inside the block, and a nested block (the bench's runs, or a caller
    screening many submissions one by one) changes nothing: Prefect otherwise rebuilt its settings and a client
    (TLS context included) for every run, half of a run's fixed 0.14 s (measured with a trivial flow).
    """
    if PREFECT_API_URL.value() or _IN_RUNTIME.get():
        yield
        return
    detach_embedded_server()
    token = _IN_RUNTIME.set(True)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), SyncClientContext.get_or_create():
            yield
    finally:
        _IN_RUNTIME.reset(token)


def run_screen(
    sources: Sequence[str],
    out_dir: Path,
    settings: Settings,
    *,
    name: str | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    refresh: bool = False,
) -> SubmissionOutcome:
    """Screen one submission from plain Python (the CLI's ``screen``)."""
    with prefect_runtime(), local_dask_cluster(workers if not dask_address else None) as local:
        flow_fn = screen_submission.with_options(task_runner=make_task_runner(dask_address or local))
        return flow_fn(
            source=list(sources),
            out_dir=str(out_dir),
            name=name or submission_name(sources),
            settings=settings_to_params(settings),
            refresh=refresh,
        )


def run_batch(
    batch_dir: Path,
    out_dir: Path,
    settings: Settings,
    *,
    concurrency: int = 2,
    workers: int | None = None,
    dask_address: str | None = None,
    refresh: bool = False,
) -> BatchOutcome:
    """Screen a batch folder from plain Python (the CLI's ``batch``)."""
    with prefect_runtime(), local_dask_cluster(workers if not dask_address else None) as local:
        return screen_batch(
            batch_dir=str(batch_dir),
            out_dir=str(out_dir),
            concurrency=concurrency,
            settings=settings_to_params(settings),
            refresh=refresh,
            dask_address=dask_address or local,
        )


def build_deployments(out_dir: str, settings: Settings) -> list[Any]:
    """Deployments of both flows for ``flow.serve``-style serving (``qpm-screen serve``)."""
    params = settings_to_params(settings)
    return [
        screen_batch.to_deployment(
            name="qpm-batch",
            parameters={"out_dir": out_dir, "settings": params},
            description="Screen a folder of submissions (sub-folders or zips) into out_dir.",
            tags=["qpm"],
        ),
        screen_submission.to_deployment(
            name="qpm-submission",
            parameters={"out_dir": out_dir, "settings": params},
            description="Screen one submission (folder, zip or files) into out_dir.",
            tags=["qpm"],
        ),
    ]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` and its result (used by the benchmark)."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value
