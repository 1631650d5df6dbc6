"""Report writers: ``report.json``, ``coverage.csv`` / ``coverage.xlsx`` per submission, and the batch summary.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a run killed at
any moment leaves either the previous complete file or the new complete file, never half of one. ``report.json``
is written last, and an earlier one is removed before the first new file: its presence means the outputs beside
it are complete and from one run.

A submission that cannot be screened at all (a damaged zip, one refused as a whole) never leaves an earlier run's
outputs passing for current: they are moved aside, unchanged, and ``NOT-SCREENED.txt`` says why (see
:func:`set_aside_earlier_outputs`).

The JSON schema is versioned (``SCHEMA_VERSION``) and documented in ``docs/report-schema.md``; add fields
freely, but bump the major version when removing or changing one.

Spreadsheet cells are guarded against formula injection: document text, file names and headings come from
providers, and a cell starting with ``=`` would otherwise run as a formula when an assessor opens the workbook.

Extra outputs (the evidence map of the next stage) plug in through :data:`OUTPUT_WRITERS`; see
:func:`write_extras`.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.catalogue import Catalogue
from pipeline.coverage import STATUSES
from pipeline.highlight import HIGHLIGHT_DIR

if TYPE_CHECKING:
    from pipeline.screen import SubmissionResult

SCHEMA_VERSION = "1.0"
TOOL_NAME = "qpm-prescreen"
REPORT_FILE = "report.json"
COVERAGE_CSV = "coverage.csv"
COVERAGE_XLSX = "coverage.xlsx"
BATCH_CSV = "batch-summary.csv"
BATCH_XLSX = "batch-summary.xlsx"
NOT_SCREENED_FILE = "NOT-SCREENED.txt"
#: Where a submission's folder keeps the outputs of earlier runs that were set aside, one sub-folder per run. Two
#: levels down on purpose: readers of output folders (the web workspace's import, a batch re-run) look for
#: report.json in a folder and its direct sub-folders only, so a set-aside report is never taken for current.
EARLIER_RUNS_DIR = "earlier-runs"
#: Every output a screened submission's folder can hold, report.json first (set aside in this order). The evidence
#: map's file is named here rather than imported: pipeline.evidence_map imports this module.
SUBMISSION_OUTPUTS = (REPORT_FILE, COVERAGE_CSV, COVERAGE_XLSX, "evidence-map.html", HIGHLIGHT_DIR)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- atomic writing -----------------------------------------------------------------------------------------


def write_json_atomic(target: Path, data: Any) -> Path:
    """Write JSON atomically (UTF-8, indented, keys in the order given)."""
    return write_text_atomic(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def safe_cell(value: Any) -> Any:
    """A spreadsheet-safe value: text that a spreadsheet would run as a formula is prefixed with a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv_atomic(target: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows as CSV (UTF-8 with BOM so Excel opens accents correctly), cells guarded against formulas."""
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: safe_cell(row.get(k, "")) for k in columns})
    return target


def write_xlsx_atomic(target: Path, sheets: Sequence[tuple[str, Sequence[str], Sequence[dict[str, Any]]]]) -> Path:
    """Write a workbook with one sheet per ``(name, columns, rows)``, atomically, with readable column widths."""
    import pandas as pd

    # The temporary name does not end in .xlsx, so the engine is named explicitly.
    with atomic_path(target) as tmp, pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for name, columns, rows in sheets:
            frame = pd.DataFrame([{c: safe_cell(r.get(c, "")) for c in columns} for r in rows], columns=list(columns))
            frame.to_excel(writer, sheet_name=name[:31], index=False)
            sheet = writer.sheets[name[:31]]
            sheet.freeze_panes = "A2"
            for idx, column in enumerate(columns, start=1):
                longest = max([len(str(column)), *(len(str(r.get(column, ""))) for r in rows[:200])])
                sheet.column_dimensions[_column_letter(idx)].width = min(max(10, longest + 2), 80)
    return target


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(index))


# --- report.json --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """Facts about the run that the screening result itself does not know."""

    submission: str
    source: str  # what the user pointed at, as given (never a temporary work path)
    model_id: str
    input_key: str  # fingerprint of everything the outputs depend on (resume check)
    started_at: datetime
    finished_at: datetime
    refused: tuple[tuple[str, str, str], ...] = ()  # (name, code, message) of archive members not unpacked


def utc_now() -> datetime:
    """Now, in UTC, to the second (reports do not need more)."""
    return datetime.now(UTC).replace(microsecond=0)


def _document_entry(ingested: Any) -> dict[str, Any]:
    doc = ingested.document
    meta = doc.metadata
    return {
        "name": doc.name,
        "doc_id": doc.doc_id,
        "sha256": doc.sha256,
        "format": doc.source_format,
        "title": meta.title,
        "detected_type": meta.policy_type,
        "detected_type_confidence": round(float(meta.policy_type_confidence), 3),
        "pages": doc.pages,
        "words": meta.word_count,
        "passages": len(ingested.passages),
        "version": meta.version,
        "review_date": meta.review_date,
        "review_date_kind": meta.review_date_kind,
        "out_of_date": bool(meta.out_of_date),
        "language": meta.language,
        "warnings": list(doc.warnings),
    }


def build_report(result: SubmissionResult, catalogue: Catalogue, run: RunInfo) -> dict[str, Any]:
    """The ``report.json`` content for one screened submission (schema: docs/report-schema.md)."""
    per_doc = [(c.scope, c.by_id()) for c in result.per_document]
    indicators: list[dict[str, Any]] = []
    by_id = result.submission.by_id()
    for ind in catalogue.indicators:
        res = by_id.get(ind.id)
        if res is None:  # the matcher always decides every indicator; guard against a partial result anyway
            continue
        evidence = []
        for ev in res.evidence:
            item = ev.to_json()
            item["reference"] = ev.reference()
            evidence.append(item)
        indicators.append(
            {
                "id": ind.id,
                "area": ind.area,
                "area_name": catalogue.areas.get(ind.area, ind.area),
                "title": ind.title,
                "level": ind.level,
                "condition": ind.condition,
                "must_say": ind.must_say,
                "status": res.status,
                "score": round(res.score, 4),
                "probabilities": {k: round(float(v), 4) for k, v in res.probabilities.items()},
                "elements": [
                    {"id": e.id, "text": e.text, "evidenced": bool(res.elements.get(e.id, False))} for e in ind.elements
                ],
                "what_to_add": ind.what_to_add if res.status != "met" else None,
                "documents": list(res.documents),
                "evidence": evidence,
                "per_document": [
                    {"document": scope, "status": r[ind.id].status, "score": round(r[ind.id].score, 4)}
                    for scope, r in per_doc
                    if ind.id in r
                ],
            }
        )
    errors = [{"name": f.name, "code": f.code, "message": f.message} for f in result.failures]
    errors.extend({"name": name, "code": code, "message": message} for name, code, message in run.refused)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": TOOL_NAME, "version": __version__},
        "submission": {"name": run.submission, "source": run.source, "input_key": run.input_key},
        "catalogue": {
            "id": catalogue.id,
            "version": catalogue.version,
            "fingerprint": catalogue.fingerprint(),
            "title": catalogue.title,
            "notice": catalogue.notice,
        },
        "model": {"id": run.model_id},
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "documents": [_document_entry(d) for d in result.documents],
        "errors": errors,
        "indicators": indicators,
        "summary": summarise(indicators, catalogue, n_documents=len(result.documents), n_errors=len(errors)),
    }


def summarise(
    indicators: Sequence[dict[str, Any]], catalogue: Catalogue, *, n_documents: int, n_errors: int
) -> dict[str, Any]:
    """Counts overall and by area, the essential indicators missing, and a one-line verdict."""
    counts = dict.fromkeys(STATUSES, 0)
    by_area: dict[str, dict[str, Any]] = {
        code: {"area": code, "area_name": name, **dict.fromkeys(STATUSES, 0), "total": 0}
        for code, name in catalogue.areas.items()
    }
    for ind in indicators:
        counts[ind["status"]] += 1
        row = by_area.setdefault(
            ind["area"], {"area": ind["area"], "area_name": ind["area_name"], **dict.fromkeys(STATUSES, 0), "total": 0}
        )
        row[ind["status"]] += 1
        row["total"] += 1
    essential_missing = [i["id"] for i in indicators if i["level"] == "essential" and i["status"] == "missing"]
    essential_partial = [i["id"] for i in indicators if i["level"] == "essential" and i["status"] == "partial"]
    if n_documents == 0:
        verdict = "No document could be read: nothing was screened"
    elif essential_missing:
        n = len(essential_missing)
        verdict = f"{n} essential indicator{'s' if n != 1 else ''} missing"
    elif essential_partial:
        verdict = "No essential indicator missing; some only partly covered"
    else:
        verdict = "Every essential indicator is covered"
    if n_errors:
        verdict += f"; {n_errors} file{'s' if n_errors != 1 else ''} could not be read"
    return {
        "counts": counts,
        "by_area": [row for row in by_area.values() if row["total"]],
        "essential_missing": essential_missing,
        "essential_partial": essential_partial,
        "verdict": verdict,
    }


# --- coverage.csv / coverage.xlsx ---------------------------------------------------------------------------

COVERAGE_COLUMNS = (
    "indicator",
    "area",
    "area_name",
    "title",
    "level",
    "status",
    "score",
    "evidence",
    "documents",
    "elements_missing",
    "what_to_add",
)
SUMMARY_COLUMNS = ("area", "area_name", "met", "partial", "missing", "total")
DOCUMENT_COLUMNS = (
    "name",
    "detected_type",
    "detected_type_confidence",
    "pages",
    "words",
    "passages",
    "review_date",
    "out_of_date",
    "language",
    "sha256",
    "warnings",
)
ERROR_COLUMNS = ("name", "code", "message")


def coverage_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per indicator for the coverage CSV and sheet."""
    rows = []
    for ind in report["indicators"]:
        rows.append(
            {
                "indicator": ind["id"],
                "area": ind["area"],
                "area_name": ind["area_name"],
                "title": ind["title"],
                "level": ind["level"],
                "status": ind["status"],
                "score": ind["score"],
                "evidence": "; ".join(e["reference"] for e in ind["evidence"]),
                "documents": "; ".join(ind["documents"]),
                "elements_missing": "; ".join(e["text"] for e in ind["elements"] if not e["evidenced"]),
                "what_to_add": ind["what_to_add"] or "",
            }
        )
    return rows


def write_submission_reports(result: SubmissionResult, report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every output of one submission into ``out_dir``; ``report.json`` last. Returns the paths written.

    An earlier ``report.json`` (and a ``NOT-SCREENED.txt`` from a failed run) is removed first: until the new
    report.json is in place the folder reads as incomplete, so a run stopped half-way never leaves the old report
    passing for the new files beside it. The other earlier outputs are replaced one by one, each atomically.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / REPORT_FILE, out_dir / NOT_SCREENED_FILE):
        stale.unlink(missing_ok=True)
    rows = coverage_rows(report)
    documents = [{**d, "warnings": "; ".join(d["warnings"])} for d in report["documents"]]
    written = [
        write_csv_atomic(out_dir / COVERAGE_CSV, COVERAGE_COLUMNS, rows),
        write_xlsx_atomic(
            out_dir / COVERAGE_XLSX,
            [
                ("coverage", COVERAGE_COLUMNS, rows),
                ("summary by area", SUMMARY_COLUMNS, report["summary"]["by_area"]),
                ("documents", DOCUMENT_COLUMNS, documents),
                ("errors", ERROR_COLUMNS, report["errors"]),
            ],
        ),
    ]
    written.extend(write_extras(result, report, out_dir))
    written.append(write_json_atomic(out_dir / REPORT_FILE, report))
    return written


# --- a submission that could not be screened ----------------------------------------------------------------


@dataclass(frozen=True)
class NotScreenedNotice:
    """What :func:`set_aside_earlier_outputs` did: the notice written, and where earlier outputs went (if any)."""

    path: Path
    earlier_outputs: Path | None


def set_aside_earlier_outputs(
    out_dir: Path, *, name: str, source: str, error: str, code: str | None, when: datetime
) -> NotScreenedNotice | None:
    """Make sure nothing in ``out_dir`` passes for a current report of a submission that could not be screened.

    An earlier run's outputs there (``SUBMISSION_OUTPUTS``, complete or not) are moved, unchanged and never
    deleted, into ``out_dir/earlier-runs/<when that run finished>/``: report.json first, since its presence is what
    marks a folder's outputs complete. Then ``NOT-SCREENED.txt`` is written atomically, saying when the latest
    run failed, why, and where the earlier outputs are; it replaces the notice of an earlier failure, and the next
    run that screens the submission removes it (:func:`write_submission_reports`). Each move is a rename within
    the folder, so a run stopped half-way leaves every file whole, in one place or the other.

    Returns None, changing nothing, when ``out_dir`` holds neither outputs nor a notice: nothing there could be
    mistaken for a report, and the command's output and the batch summary say why the submission failed.
    """
    if not out_dir.is_dir():
        return None
    notice = out_dir / NOT_SCREENED_FILE
    present = [out_dir / n for n in SUBMISSION_OUTPUTS if (out_dir / n).exists() or (out_dir / n).is_symlink()]
    if not present and not notice.exists():
        return None
    moved = None
    if present:
        (out_dir / EARLIER_RUNS_DIR).mkdir(exist_ok=True)
        moved = _new_folder(out_dir / EARLIER_RUNS_DIR, _finished_stamp(out_dir, present))
        for path in present:
            os.replace(path, moved / path.name)
    runs = out_dir / EARLIER_RUNS_DIR
    earlier = sorted(f"{EARLIER_RUNS_DIR}/{p.name}" for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    lines = [
        f"NOT SCREENED: {name}",
        "",
        f"The latest run ({when.astimezone(UTC):%Y-%m-%d %H:%M} UTC) could not screen this submission at all:",
        f"  {error}" + (f" [{code}]" if code else ""),
        f"Source: {source}",
        "",
        "Nothing in this folder is a current report of this submission.",
    ]
    if earlier:
        lines += [
            "Outputs of earlier runs, kept unchanged (they describe the submission as it was then):",
            *(f"  {folder}/" for folder in earlier),
        ]
    lines += [
        "",
        "When the submission can be read, run qpm-screen again: it writes the new reports here and removes this file.",
    ]
    write_text_atomic(notice, "\n".join(lines) + "\n")
    return NotScreenedNotice(notice, moved)


def _finished_stamp(out_dir: Path, present: Sequence[Path]) -> str:
    """When the run that wrote these outputs finished (its report's ``finished_at``, else the newest file), as a
    name part that every file system accepts."""
    finished = (read_report(out_dir / REPORT_FILE) or {}).get("finished_at")
    try:
        moment = datetime.fromisoformat(str(finished))
    except ValueError:
        moment = datetime.fromtimestamp(max(p.lstat().st_mtime for p in present), UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H-%M-%SZ}"


def _new_folder(parent: Path, name: str) -> Path:
    """Create ``parent/name``, or ``name-2``, ``name-3``... if taken; never reuses an existing folder."""
    for n in range(1, 1000):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"no free name for {parent / name}")


# --- the seam for further outputs (evidence map) ------------------------------------------------------------

OutputWriter = Callable[["SubmissionResult", dict[str, Any], Path], Sequence[Path]]
#: Writers of extra per-submission outputs, called in order after the coverage files and before report.json.
#: Each takes ``(result, report_dict, out_dir)``, writes atomically into ``out_dir`` and returns what it wrote.
OUTPUT_WRITERS: list[OutputWriter] = []
#: Writers looked up by name when first needed, ``(module, function)``: the evidence map and highlighted
#: originals. Imported lazily because ``pipeline.evidence_map`` itself uses this module's atomic writers.
OPTIONAL_WRITERS: tuple[tuple[str, str], ...] = (("pipeline.evidence_map", "write_evidence_outputs"),)


def _optional_writers() -> list[OutputWriter]:
    found: list[OutputWriter] = []
    for module_name, function in OPTIONAL_WRITERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the module exists but one of its imports is missing: a real error
                raise
            continue
        found.append(getattr(module, function))
    return found


def write_extras(result: SubmissionResult, report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Run every registered extra output writer (evidence map, ...) and return the files they wrote."""
    written: list[Path] = []
    for writer in [*OUTPUT_WRITERS, *_optional_writers()]:
        written.extend(Path(p) for p in writer(result, report, out_dir))
    return written


# --- batch summary ------------------------------------------------------------------------------------------


@dataclass
class BatchEntry:
    """One submission of a batch as the summary sees it: its report, or why it could not be screened."""

    name: str
    report: dict[str, Any] | None
    out_dir: Path | None
    error: str | None = None  # the whole submission failed (unreadable zip, ...)
    error_code: str | None = None
    notice: Path | None = None  # its NOT-SCREENED.txt, when its folder held earlier outputs


def batch_rows(entries: Sequence[BatchEntry], catalogue: Catalogue) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the batch summary, riskiest first.

    Ranking: submissions that could not be screened at all first (nothing is known about them), then most
    essential indicators missing, then most indicators missing, then most partial, then by name.
    """
    areas = list(catalogue.areas)
    columns = [
        "rank",
        "provider",
        "status",
        "documents",
        "files_failed",
        "essential_missing_count",
        "essential_missing",
        "met",
        "partial",
        "missing",
    ]
    for area in areas:
        columns.extend(f"{area} {s}" for s in STATUSES)
    columns.extend(["verdict", "report"])
    rows = []
    for entry in entries:
        row: dict[str, Any] = {"provider": entry.name}
        if entry.report is None:
            row.update(status="not screened", verdict=entry.error or "", documents=0, files_failed=1)
            # Where an earlier run's report was, the notice that it is not current and where it went.
            row["report"] = str(entry.notice) if entry.notice else ""
            row["_sort"] = (0, 0, 0, 0)
        else:
            summary = entry.report["summary"]
            counts = summary["counts"]
            row.update(
                status="screened",
                documents=len(entry.report["documents"]),
                files_failed=len(entry.report["errors"]),
                essential_missing_count=len(summary["essential_missing"]),
                essential_missing=", ".join(summary["essential_missing"]),
                met=counts["met"],
                partial=counts["partial"],
                missing=counts["missing"],
                verdict=summary["verdict"],
                report=str(entry.out_dir / REPORT_FILE) if entry.out_dir else "",
            )
            for area_row in summary["by_area"]:
                for s in STATUSES:
                    row[f"{area_row['area']} {s}"] = area_row[s]
            row["_sort"] = (1, -len(summary["essential_missing"]), -counts["missing"], -counts["partial"])
        rows.append(row)
    rows.sort(key=lambda r: (*r["_sort"], r["provider"].casefold()))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        del row["_sort"]
    return columns, rows


def batch_error_rows(entries: Sequence[BatchEntry]) -> list[dict[str, Any]]:
    """Every file that could not be read, and every submission that could not be screened, with the reason."""
    rows = []
    for entry in sorted(entries, key=lambda e: e.name.casefold()):
        if entry.report is None:
            rows.append(
                {"provider": entry.name, "file": "(whole submission)", "code": entry.error_code, "message": entry.error}
            )
            continue
        for err in entry.report["errors"]:
            rows.append({"provider": entry.name, "file": err["name"], "code": err["code"], "message": err["message"]})
    return rows


BATCH_ERROR_COLUMNS = ("provider", "file", "code", "message")


def write_batch_summary(entries: Sequence[BatchEntry], catalogue: Catalogue, out_dir: Path) -> list[Path]:
    """Write ``batch-summary.csv`` and ``batch-summary.xlsx`` (sheets: summary, errors) into ``out_dir``."""
    columns, rows = batch_rows(entries, catalogue)
    errors = batch_error_rows(entries)
    return [
        write_csv_atomic(out_dir / BATCH_CSV, columns, rows),
        write_xlsx_atomic(out_dir / BATCH_XLSX, [("summary", columns, rows), ("errors", BATCH_ERROR_COLUMNS, errors)]),
    ]


def read_report(path: Path) -> dict[str, Any] | None:
    """A previously written report, or None when absent, unreadable or of another major schema version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or str(data.get("schema_version", "")).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        return None
    return data
