"""Report writers: report.json schema, coverage CSV/XLSX, batch summary ranking, atomic writes, extras seam."""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline import report as rp
from pipeline.config import Settings
from pipeline.ingest import FailedDocument, IngestedDocument, ingest
from pipeline.inputs import collect_files
from pipeline.screen import SubmissionResult, screen
from tests.flow_support import build_fake_matcher, make_submission


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> tuple[SubmissionResult, Any, dict[str, Any]]:
    root = tmp_path_factory.mktemp("report")
    settings = Settings.from_env(cache_dir=root / "cache")
    folder = make_submission(root / "acme")
    (folder / "=cmd.txt").write_text("", encoding="utf-8")  # an empty file with a formula-like name
    matcher = build_fake_matcher(settings)
    got = [ingest(p, settings) for p in collect_files([folder])]
    docs = [g for g in got if isinstance(g, IngestedDocument)]
    failures = [g for g in got if isinstance(g, FailedDocument)]
    result = screen(matcher, "acme", docs, failures)
    run = rp.RunInfo(
        submission="acme",
        source=str(folder),
        model_id="test-model",
        input_key="k1",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
        refused=(("bundle.zip/inner.7z", "nested_archive", "an archive inside the zip is not opened"),),
    )
    return result, matcher.catalogue, rp.build_report(result, matcher.catalogue, run)


def test_report_json_has_the_documented_schema(screened: tuple[SubmissionResult, Any, dict[str, Any]]) -> None:
    _, catalogue, report = screened
    assert report["schema_version"] == rp.SCHEMA_VERSION
    assert {"tool", "submission", "catalogue", "model", "started_at", "finished_at"} <= set(report)
    assert report["catalogue"]["fingerprint"] == catalogue.fingerprint()
    assert len(report["indicators"]) == len(catalogue.indicators)
    doc = report["documents"][0]
    for key in ("name", "sha256", "doc_id", "detected_type", "detected_type_confidence", "pages", "words"):
        assert key in doc
    for key in ("review_date", "out_of_date", "language", "warnings"):
        assert key in doc
    assert {e["name"] for e in report["errors"]} == {"=cmd.txt", "bundle.zip/inner.7z"}
    for ind in report["indicators"]:
        assert ind["status"] in ("met", "partial", "missing")
        assert set(ind["probabilities"]) == {"met", "partial", "missing"}
        assert (ind["what_to_add"] is None) == (ind["status"] == "met")
        assert len(ind["per_document"]) == len(report["documents"])
        for ev in ind["evidence"]:
            assert {"document", "pages", "section", "start", "end", "boxes", "score", "reference"} <= set(ev)
    summary = report["summary"]
    assert sum(summary["counts"].values()) == len(catalogue.indicators)
    assert sum(a["total"] for a in summary["by_area"]) == len(catalogue.indicators)
    essential_missing = [
        i["id"] for i in report["indicators"] if i["level"] == "essential" and i["status"] == "missing"
    ]
    assert summary["essential_missing"] == essential_missing
    json.dumps(report)  # serialisable as is


def test_schema_document_names_every_top_level_field(screened: tuple[SubmissionResult, Any, dict[str, Any]]) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "report-schema.md").read_text(encoding="utf-8")
    _, _, report = screened
    for key in [*report, *report["documents"][0], *report["indicators"][0], *report["summary"]]:
        assert f"`{key}`" in doc, f"docs/report-schema.md does not describe {key}"


def test_writes_all_files_with_report_json_last(
    screened: tuple[SubmissionResult, Any, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _, report = screened
    monkeypatch.setattr(rp, "OPTIONAL_WRITERS", ())
    written = rp.write_submission_reports(result, report, tmp_path / "out")
    assert [p.name for p in written] == ["coverage.csv", "coverage.xlsx", "report.json"]
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8")) == report
    assert not list((tmp_path / "out").glob(".*tmp"))
    with open(tmp_path / "out" / "coverage.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["indicators"])
    assert list(rows[0]) == list(rp.COVERAGE_COLUMNS)
    with_evidence = [r for r in rows if r["evidence"]]
    assert with_evidence and all(".md" in r["evidence"] or ".txt" in r["evidence"] for r in with_evidence)

    from openpyxl import load_workbook

    book = load_workbook(tmp_path / "out" / "coverage.xlsx")
    assert book.sheetnames == ["coverage", "summary by area", "documents", "errors"]
    names = [c.value for c in book["errors"]["A"][1:]]
    assert "'=cmd.txt" in names  # formula-like text is neutralised, not executed


def test_evidence_reference_format(screened: tuple[SubmissionResult, Any, dict[str, Any]]) -> None:
    _, _, report = screened
    refs = [e["reference"] for i in report["indicators"] for e in i["evidence"]]
    assert refs
    assert all(r.split(" ")[0].endswith((".md", ".txt")) for r in refs)
    assert any(", s." in r or " s." in r for r in refs)


def test_extra_writers_are_called_before_report_json(
    screened: tuple[SubmissionResult, Any, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _, report = screened
    calls: list[bool] = []

    def extra(res: SubmissionResult, rep: dict[str, Any], out: Path) -> list[Path]:
        calls.append((out / "report.json").exists())
        return [rp.write_text_atomic(out / "extra.txt", rep["submission"]["name"])]

    monkeypatch.setattr(rp, "OPTIONAL_WRITERS", ())
    monkeypatch.setattr(rp, "OUTPUT_WRITERS", [extra])
    written = rp.write_submission_reports(result, report, tmp_path)
    assert calls == [False]
    assert [p.name for p in written][-2:] == ["extra.txt", "report.json"]


def test_missing_optional_writer_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rp, "OPTIONAL_WRITERS", (("pipeline.no_such_module_here", "write"),))
    assert rp._optional_writers() == []


def test_atomic_write_failure_leaves_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    rp.write_json_atomic(target, {"v": 1})

    class Boom(Exception):
        pass

    with pytest.raises(Boom), rp.atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half', encoding="utf-8")  # half written when the failure strikes
        raise Boom
    assert json.loads(target.read_text(encoding="utf-8")) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_atomic_xlsx_failure_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    def broken_to_excel(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_excel", broken_to_excel)
    # openpyxl may replace the error while closing the half-built workbook; either way nothing may remain.
    with pytest.raises((OSError, IndexError)):
        rp.write_xlsx_atomic(tmp_path / "coverage.xlsx", [("s", ["a"], [{"a": 1}])])
    assert list(tmp_path.iterdir()) == []


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = rp.write_text_atomic(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def _entry_report(name: str, statuses: list[tuple[str, str, str]], errors: int = 0) -> dict[str, Any]:
    indicators = [
        {"id": i, "area": area, "area_name": area, "level": level, "status": status}
        for i, (area, level, status) in enumerate(statuses)
    ]
    for n, ind in enumerate(indicators):
        ind["id"] = f"{ind['area']}-{n:02d}"
    missing = [i["id"] for i in indicators if i["level"] == "essential" and i["status"] == "missing"]
    counts = {s: sum(1 for i in indicators if i["status"] == s) for s in ("met", "partial", "missing")}
    return {
        "documents": [{"name": "a.pdf"}],
        "errors": [{"name": f"bad{k}.pdf", "code": "corrupt", "message": "damaged"} for k in range(errors)],
        "summary": {
            "counts": counts,
            "by_area": [
                {"area": "CONF", "met": counts["met"], "partial": counts["partial"], "missing": counts["missing"]}
            ],
            "essential_missing": missing,
            "verdict": f"{len(missing)} essential missing",
        },
    }


def test_batch_summary_ranks_riskiest_first_and_lists_errors(
    screened: tuple[SubmissionResult, Any, dict[str, Any]], tmp_path: Path
) -> None:
    _, catalogue, _ = screened
    entries = [
        rp.BatchEntry("safe-co", _entry_report("safe-co", [("CONF", "essential", "met")] * 3), tmp_path / "safe-co"),
        rp.BatchEntry(
            "risky-co",
            _entry_report("risky-co", [("CONF", "essential", "missing")] * 2 + [("CONF", "good_practice", "met")]),
            tmp_path / "risky-co",
            None,
        ),
        rp.BatchEntry(
            "gappy-co",
            _entry_report("gappy-co", [("CONF", "essential", "missing"), ("CONF", "good_practice", "missing")], 2),
            tmp_path / "gappy-co",
        ),
        rp.BatchEntry("broken-co", None, None, error="the zip file is damaged", error_code="corrupt"),
    ]
    columns, rows = rp.batch_rows(entries, catalogue)
    assert [r["provider"] for r in rows] == ["broken-co", "risky-co", "gappy-co", "safe-co"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert "CONF missing" in columns and "SUP met" in columns
    written = rp.write_batch_summary(entries, catalogue, tmp_path)
    assert [p.name for p in written] == ["batch-summary.csv", "batch-summary.xlsx"]
    from openpyxl import load_workbook

    book = load_workbook(tmp_path / "batch-summary.xlsx")
    assert book.sheetnames == ["summary", "errors"]
    errors = [[c.value for c in row] for row in book["errors"].iter_rows(min_row=2)]
    assert ["broken-co", "(whole submission)", "corrupt", "the zip file is damaged"] in errors
    assert sum(1 for e in errors if e[0] == "gappy-co") == 2


def test_read_report_rejects_other_major_versions(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"schema_version": "9.0"}), encoding="utf-8")
    assert rp.read_report(path) is None
    path.write_text("{ half", encoding="utf-8")
    assert rp.read_report(path) is None
    path.write_text(json.dumps({"schema_version": rp.SCHEMA_VERSION, "x": 1}), encoding="utf-8")
    assert rp.read_report(path) == {"schema_version": rp.SCHEMA_VERSION, "x": 1}


# --- a submission that could not be screened: earlier outputs set aside, never passing for current ----------


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_earlier_outputs_are_set_aside_unchanged_with_a_notice_when_a_submission_cannot_be_screened(
    screened: tuple[SubmissionResult, Any, dict[str, Any]], tmp_path: Path
) -> None:
    result, _, report = screened
    out = tmp_path / "acme"
    rp.write_submission_reports(result, report, out)  # with the evidence map and highlighted copies, if any
    (out / "my-notes.txt").write_text("the assessor's own file", encoding="utf-8")
    before = _files(out)
    when = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)

    notice = rp.set_aside_earlier_outputs(
        out, name="acme", source="in/acme.zip", error="the zip file is damaged", code="corrupt", when=when
    )
    assert notice is not None and notice.path == out / rp.NOT_SCREENED_FILE
    # Named after when the earlier run finished (its report's finished_at), so runs set aside stay apart.
    assert notice.earlier_outputs == out / rp.EARLIER_RUNS_DIR / "2026-01-01T00-00-05Z"
    # Nothing at the top passes for a report; every earlier file is kept, byte for byte; the user's file stays.
    assert sorted(p.name for p in out.iterdir()) == sorted([rp.NOT_SCREENED_FILE, rp.EARLIER_RUNS_DIR, "my-notes.txt"])
    moved = _files(notice.earlier_outputs)
    assert moved == {k: v for k, v in before.items() if k != "my-notes.txt"} and "report.json" in moved
    text = notice.path.read_text(encoding="utf-8")
    for phrase in ("NOT SCREENED: acme", "2026-03-04 05:06 UTC", "the zip file is damaged [corrupt]", "in/acme.zip"):
        assert phrase in text
    assert "Nothing in this folder is a current report" in text and "earlier-runs/2026-01-01T00-00-05Z/" in text

    # Failing again: nothing more to move; the notice gives the new reason and still names the earlier run.
    again = rp.set_aside_earlier_outputs(out, name="acme", source="in/acme.zip", error="refused", code=None, when=when)
    assert again is not None and again.earlier_outputs is None
    assert "  refused\n" in again.path.read_text(encoding="utf-8")
    assert "earlier-runs/2026-01-01T00-00-05Z/" in again.path.read_text(encoding="utf-8")
    assert len(list((out / rp.EARLIER_RUNS_DIR).iterdir())) == 1

    # Screened again: new reports, the notice gone, the earlier run still kept.
    rp.write_submission_reports(result, report, out)
    assert (out / "report.json").exists() and not (out / rp.NOT_SCREENED_FILE).exists()
    assert _files(out / rp.EARLIER_RUNS_DIR / "2026-01-01T00-00-05Z") == moved


def test_nothing_is_written_for_a_failed_submission_when_there_is_nothing_to_mistake(tmp_path: Path) -> None:
    when = datetime(2026, 3, 4, tzinfo=UTC)
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        assert rp.set_aside_earlier_outputs(folder, name="x", source="x", error="e", code="c", when=when) is None
    assert list((tmp_path / "empty").iterdir()) == [] and not (tmp_path / "missing").exists()


def test_an_unfinished_earlier_run_is_set_aside_under_the_time_of_its_newest_file(tmp_path: Path) -> None:
    # A run stopped before report.json: its coverage.csv must not pass for current either.
    (tmp_path / "coverage.csv").write_text("indicator\n", encoding="utf-8")
    os.utime(tmp_path / "coverage.csv", (1767225600, 1767225600))  # 2026-01-01 00:00:00 UTC
    notice = rp.set_aside_earlier_outputs(tmp_path, name="x", source="x", error="e", code="c", when=datetime.now(UTC))
    assert notice is not None and notice.earlier_outputs == tmp_path / rp.EARLIER_RUNS_DIR / "2026-01-01T00-00-00Z"
    assert (notice.earlier_outputs / "coverage.csv").exists() and not (tmp_path / "coverage.csv").exists()


def test_rewriting_outputs_removes_the_earlier_report_json_first(
    screened: tuple[SubmissionResult, Any, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run stopped after coverage.csv and before report.json must not leave the earlier report.json beside
    # the new coverage.csv, passing for a complete set.
    result, _, report = screened
    monkeypatch.setattr(rp, "OPTIONAL_WRITERS", ())
    rp.write_submission_reports(result, report, tmp_path)

    def stopped(*args: Any, **kwargs: Any) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(rp, "write_xlsx_atomic", stopped)
    with pytest.raises(KeyboardInterrupt):
        rp.write_submission_reports(result, report, tmp_path)
    assert not (tmp_path / "report.json").exists() and (tmp_path / "coverage.csv").exists()


def test_submission_outputs_name_every_file_the_writers_make() -> None:
    from pipeline.evidence_map import MAP_FILE
    from pipeline.highlight import HIGHLIGHT_DIR

    assert rp.SUBMISSION_OUTPUTS[0] == rp.REPORT_FILE  # set aside first: it marks a complete set
    assert {rp.COVERAGE_CSV, rp.COVERAGE_XLSX, MAP_FILE, HIGHLIGHT_DIR} <= set(rp.SUBMISSION_OUTPUTS)


def test_the_batch_summary_points_a_submission_not_screened_to_its_notice(tmp_path: Path) -> None:
    from pipeline.catalogue import load_catalogue

    catalogue = load_catalogue(Settings.from_env().catalogue_path)
    notice = tmp_path / "acme" / rp.NOT_SCREENED_FILE
    entries = [
        rp.BatchEntry("acme", None, None, error="damaged", error_code="corrupt", notice=notice),
        rp.BatchEntry("brook", None, None, error="empty folder", error_code="empty"),
    ]
    _, rows = rp.batch_rows(entries, catalogue)
    assert {r["provider"]: r["report"] for r in rows} == {"acme": str(notice), "brook": ""}
