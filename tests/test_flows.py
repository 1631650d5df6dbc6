"""Prefect flows: batch outcomes, caching and resumption, inputs untouched, artifacts, Dask, deployments.

Runs Prefect in its embedded (ephemeral) mode with a PREFECT_HOME of its own, and the fast fake matcher of
``tests/flow_support.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Prefect reads its home once, at import: give the tests their own (kept between sessions: a new one costs
# 7-25 s of database setup on the first start).
os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "qpm-test-prefect-home"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import csv
import dataclasses
import gc
import json
import zipfile
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from pipeline import flows
from pipeline.config import Settings
from pipeline.errors import CorruptDocumentError
from pipeline.ingest import IngestedDocument, ingest
from pipeline.prefect_home import SERVER_APP
from tests import flow_support
from tests.pdf_factory import build_pdf, policy_pages

pytestmark = pytest.mark.slow  # starts Prefect


@pytest.fixture(autouse=True)
def fake_matcher() -> Iterator[None]:
    flow_support.install()
    yield
    flows.use_matcher_source(None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(cache_dir=tmp_path / "cache")


@pytest.fixture
def count_ingest(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of files actually ingested (cache hits do not call ingest)."""
    calls: list[str] = []
    real = flows.ingest

    def counting(path: Path, settings: Settings, **kwargs: Any) -> Any:
        calls.append(path.name)
        return real(path, settings, **kwargs)

    monkeypatch.setattr(flows, "ingest", counting)
    return calls


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def without_times(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("started_at", "finished_at")}


def test_batch_reports_good_submissions_fully_and_every_broken_file(
    tmp_path: Path, settings: Settings, count_ingest: list[str]
) -> None:
    batch = flow_support.make_batch(tmp_path)
    (batch / "notes.txt").write_text("a loose file, not a submission", encoding="utf-8")
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    result = flows.run_batch(batch, out, settings)
    assert result.failed
    by_name = {o.name: o for o in result.outcomes}
    assert set(by_name) == {"acme-advocacy", "brook-voice", "cedar-advocacy", "delta-support", "broken", "notes"}
    for name in ("acme-advocacy", "brook-voice", "cedar-advocacy"):
        outcome = by_name[name]
        assert outcome.report is not None and not outcome.failed_files
        assert len(outcome.report["documents"]) == 3
        files = {p.name for p in (out / name).iterdir()}
        assert {"report.json", "coverage.csv", "coverage.xlsx"} <= files
        assert json.loads((out / name / "report.json").read_text(encoding="utf-8")) == outcome.report
    delta = by_name["delta-support"]
    codes = {e["name"]: e["code"] for e in delta.failed_files}
    assert codes["empty.pdf"] == "empty" and codes["garbage.pdf"] == "corrupt"
    assert all(e["message"] for e in delta.failed_files)
    assert by_name["broken"].error_code == CorruptDocumentError.code and by_name["broken"].report is None
    assert by_name["notes"].error_code == "not_a_submission"
    assert (out / "batch-summary.csv").exists() and (out / "batch-summary.xlsx").exists()
    # Output never goes into an input folder, and inputs are never modified.
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(("out/", "cache/"))} == before
    # The work folders of unpacked zips are gone.
    assert not any((settings.cache_dir / "work").glob("*/*"))


def test_rerun_of_an_unchanged_batch_does_no_new_work(
    tmp_path: Path, settings: Settings, count_ingest: list[str]
) -> None:
    batch = tmp_path / "batch"
    for name in ("one", "two"):
        flow_support.make_submission(batch / name, variant=f"\n{name}\n")
    out = tmp_path / "out"
    first = flows.run_batch(batch, out, settings)
    assert len(count_ingest) == 6
    encoded = flow_support.HashingEncoder.calls
    second = flows.run_batch(batch, out, settings)
    assert len(count_ingest) == 6 and flow_support.HashingEncoder.calls == encoded
    assert all(o.reused for o in second.outcomes)
    assert [o.report for o in second.outcomes] == [o.report for o in first.outcomes]

    # Outputs lost (e.g. killed before report.json): redone from the task cache, without ingesting again.
    (out / "one" / "report.json").unlink()
    third = flows.run_batch(batch, out, settings)
    assert len(count_ingest) == 6 and flow_support.HashingEncoder.calls == encoded
    assert not third.outcomes[0].reused and third.outcomes[1].reused
    assert third.outcomes[0].report is not None and first.outcomes[0].report is not None
    assert without_times(third.outcomes[0].report) == without_times(first.outcomes[0].report)

    # One provider adds a document: only that document is new work.
    (batch / "two" / "equality.md").write_text("# Equality\n\nWe treat everyone fairly and make adjustments.\n")
    fourth = flows.run_batch(batch, out, settings)
    assert count_ingest[6:] == ["equality.md"]
    assert fourth.outcomes[0].reused and not fourth.outcomes[1].reused
    assert fourth.outcomes[1].report is not None and len(fourth.outcomes[1].report["documents"]) == 4


def test_a_new_model_rescores_without_extracting_again(
    tmp_path: Path, settings: Settings, count_ingest: list[str]
) -> None:
    sub = flow_support.make_submission(tmp_path / "in" / "acme")
    first = flows.run_screen([str(sub)], tmp_path / "out", settings)
    assert first.report is not None and len(count_ingest) == 3
    flows.use_matcher_source(
        flows.MatcherSource(build=flow_support.build_fake_matcher, model_id=lambda s: "hashing-test-encoder@2")
    )
    second = flows.run_screen([str(sub)], tmp_path / "out", settings)
    assert not second.reused and second.report is not None
    assert second.report["model"]["id"] == "hashing-test-encoder@2"
    assert len(count_ingest) == 3  # the documents came from the task cache


def test_refresh_redoes_the_work(tmp_path: Path, settings: Settings, count_ingest: list[str]) -> None:
    sub = flow_support.make_submission(tmp_path / "in" / "acme")
    flows.run_screen([str(sub)], tmp_path / "out", settings)
    flows.run_screen([str(sub)], tmp_path / "out", settings, refresh=True)
    assert len(count_ingest) == 6


def test_a_document_result_keeps_passage_boxes_but_not_word_boxes(tmp_path: Path, settings: Settings) -> None:
    pdf = tmp_path / "policy.pdf"
    pdf.write_bytes(build_pdf(policy_pages(2)).data)
    job = flows.DocumentJob(
        path=str(pdf),
        name=pdf.name,
        sha256="0" * 64,
        settings=settings,
        code="c",
        today=date(2026, 1, 1),
    )
    direct = ingest(pdf, settings)
    assert isinstance(direct, IngestedDocument) and direct.document.spans  # extraction did find word boxes
    result = flows.document_task.fn(job)
    assert isinstance(result, IngestedDocument)
    assert result.document.spans == []
    assert [p.boxes for p in result.passages] == [p.boxes for p in direct.passages]
    assert any(p.boxes for p in result.passages)


def test_zip_and_file_list_submissions(tmp_path: Path, settings: Settings) -> None:
    src = flow_support.make_submission(tmp_path / "src")
    (tmp_path / "in").mkdir()
    archive = flow_support.zip_folder(src, tmp_path / "in" / "acme.zip")
    outcome = flows.run_screen([str(archive)], tmp_path / "out-zip", settings)
    assert outcome.name == "acme" and outcome.report is not None
    assert sorted(d["name"] for d in outcome.report["documents"]) == [
        "complaints.txt",
        "confidentiality.md",
        "safeguarding.md",
    ]
    files = [str(src / "safeguarding.md"), str(src / "complaints.txt")]
    outcome = flows.run_screen(files, tmp_path / "out-files", settings, name="Acme Ltd")
    assert outcome.report is not None and outcome.report["submission"]["name"] == "Acme Ltd"
    assert len(outcome.report["documents"]) == 2


def test_duplicate_files_are_screened_once(tmp_path: Path, settings: Settings) -> None:
    sub = flow_support.make_submission(tmp_path / "in" / "acme")
    (sub / "copy of safeguarding.md").write_bytes((sub / "safeguarding.md").read_bytes())
    outcome = flows.run_screen([str(sub)], tmp_path / "out", settings)
    assert outcome.report is not None
    assert len(outcome.report["documents"]) == 3
    assert len(outcome.report["skipped"]) == 1 and "same content" in outcome.report["skipped"][0]["reason"]
    assert not outcome.failed_files


def test_hostile_zip_submission_is_refused_and_writes_nothing_outside(tmp_path: Path, settings: Settings) -> None:
    archive = tmp_path / "in" / "evil.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("policy.txt", "We keep information confidential.")
        zf.writestr("../../escaped.txt", "payload")
    outcome = flows.run_screen([str(archive)], tmp_path / "out", settings)
    assert outcome.report is None and outcome.error_code == "hostile"
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not any((settings.cache_dir / "work").iterdir())  # the refused zip's work folder is gone too


def sheet_rows(book_path: Path, sheet: str) -> list[list[Any]]:
    """The rows of one sheet of a written workbook, without the header."""
    from openpyxl import load_workbook

    book = load_workbook(book_path, read_only=True)
    try:
        return [list(row) for row in book[sheet].iter_rows(min_row=2, values_only=True)]
    finally:
        book.close()


def test_dotted_hidden_and_duplicate_member_names_are_screened_or_reported(tmp_path: Path, settings: Settings) -> None:
    archive = tmp_path / "in" / "acme.zip"
    archive.parent.mkdir()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("..txt", flow_support.SAFEGUARDING)  # an odd but ordinary name: screened
        zf.writestr("policy..md", flow_support.CONFIDENTIALITY)
        zf.writestr("same.txt", flow_support.COMPLAINTS)
        zf.writestr("same.txt", flow_support.COMPLAINTS)  # an identical copy: nothing lost
        zf.writestr("equality.txt", "We treat everyone fairly.")
        zf.writestr("equality.txt", "We treat everyone fairly and make reasonable adjustments.")  # which one?
        zf.writestr(".draft.txt", "A hidden draft.")
        zf.writestr("__MACOSX/._same.txt", "resource fork")  # system clutter: ignored without a word
    outcome = flows.run_screen([str(archive)], tmp_path / "out", settings)
    assert outcome.report is not None
    assert sorted(d["name"] for d in outcome.report["documents"]) == ["..txt", "policy..md", "same.txt"]
    # Each refused member is an error everywhere errors are shown: report.json, the coverage workbook, exit 3.
    errors = {e["name"]: e for e in outcome.failed_files}
    assert {name: e["code"] for name, e in errors.items()} == {
        "acme.zip/equality.txt": "duplicate",
        "acme.zip/.draft.txt": "hidden",
    }
    assert "2 different files named 'equality.txt'" in errors["acme.zip/equality.txt"]["message"]
    assert "2 files could not be read" in outcome.report["summary"]["verdict"]
    assert {(row[0], row[1]) for row in sheet_rows(tmp_path / "out" / "coverage.xlsx", "errors")} == {
        ("acme.zip/equality.txt", "duplicate"),
        ("acme.zip/.draft.txt", "hidden"),
    }
    assert outcome.report["skipped"] == [
        {"name": "acme.zip/same.txt", "reason": "the zip holds this file twice with the same content; screened once"}
    ]


def test_hidden_files_of_a_folder_submission_are_reported(tmp_path: Path, settings: Settings) -> None:
    sub = flow_support.make_submission(tmp_path / "in" / "acme")
    (sub / ".old-safeguarding.md").write_text(flow_support.SAFEGUARDING, encoding="utf-8")
    (sub / ".git").mkdir()
    (sub / ".git" / "config").write_text("[core]", encoding="utf-8")
    (sub / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # system clutter: ignored without a word
    outcome = flows.run_screen([str(sub)], tmp_path / "out", settings)
    assert outcome.report is not None and len(outcome.report["documents"]) == 3
    assert [(e["name"], e["code"]) for e in outcome.failed_files] == [
        (".git/", "hidden"),
        (".old-safeguarding.md", "hidden"),
    ]


def test_a_hidden_provider_folder_in_a_batch_is_reported_not_lost(tmp_path: Path, settings: Settings) -> None:
    batch = tmp_path / "batch"
    flow_support.make_submission(batch / "acme", variant="\nAcme.\n")
    flow_support.make_submission(batch / ".brook", variant="\nBrook.\n")
    (batch / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    out = tmp_path / "out"
    result = flows.run_batch(batch, out, settings)
    assert result.failed  # like any submission that was not screened: exit code 3
    by_name = {o.name: o for o in result.outcomes}
    assert set(by_name) == {"acme", ".brook"}
    assert by_name["acme"].report is not None and not by_name["acme"].failed_files
    hidden = by_name[".brook"]
    assert (
        hidden.report is None and hidden.error_code == "hidden" and "rename it without the dot" in (hidden.error or "")
    )
    assert not (out / ".brook").exists()
    errors = sheet_rows(out / "batch-summary.xlsx", "errors")
    assert [row[:3] for row in errors] == [[".brook", "(whole submission)", "hidden"]]
    summary = {row[1]: row for row in sheet_rows(out / "batch-summary.xlsx", "summary")}
    assert ".brook" in summary


def test_pipes_broken_links_and_undecodable_names_are_reported_while_the_rest_is_screened(
    tmp_path: Path, settings: Settings
) -> None:
    sub = flow_support.make_submission(tmp_path / "in" / "acme")
    os.mkfifo(sub / "pipe.txt")  # hashing or reading it would block for ever
    (sub / "gone.pdf").symlink_to(tmp_path / "nowhere.pdf")
    (sub / os.fsdecode(b"caf\xe9.md")).write_text("# Review\n\nThis policy is reviewed every year by the board.\n")
    (sub / "~$safeguarding.docx").write_bytes(b"\x05owner" + b"\x00" * 100)  # Word's lock file: not a document
    outcome = flows.run_screen([str(sub)], tmp_path / "out", settings)
    assert outcome.report is not None
    failed = {f["name"]: f["message"] for f in outcome.failed_files}
    assert failed.keys() == {"pipe.txt", "gone.pdf"}
    assert "not a regular file" in failed["pipe.txt"] and "could not be opened" in failed["gone.pdf"]
    names = {d["name"] for d in outcome.report["documents"]}
    assert "caf\ufffd.md" in names and len(names) == 4  # three from make_submission, and the odd name
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["documents"]


def test_document_cache_keys_follow_content_code_extraction_settings_and_date(settings: Settings) -> None:
    job = flows.DocumentJob("/x/a.pdf", "a.pdf", "ab" * 32, settings, "1+abc", flows.date(2026, 1, 1))
    base = flows._document_key(None, {"job": job})  # type: ignore[arg-type]
    for change in (
        {"sha256": "cd" * 32},
        {"code": "1+def"},
        {"name": "b.pdf"},
        {"today": flows.date(2026, 1, 2)},  # "out of date" review dates depend on the run date
        {"settings": dataclasses.replace(settings, max_passage_words=60)},
    ):
        assert flows._document_key(None, {"job": dataclasses.replace(job, **change)}) != base  # type: ignore[arg-type]
    # where the file lies does not matter (a zip's work folder is new on every run), nor unrelated settings
    assert flows._document_key(None, {"job": dataclasses.replace(job, path="/y/a.pdf")}) == base  # type: ignore[arg-type]
    # nor what only scoring depends on: a new model re-scores without re-extracting
    for unrelated in ({"web_port": 9999}, {"encoder_int8": not settings.encoder_int8}):
        same = dataclasses.replace(job, settings=dataclasses.replace(settings, **unrelated))
        assert flows._document_key(None, {"job": same}) == base  # type: ignore[arg-type]


def test_objects_alive_once_the_matcher_is_built_are_left_out_of_garbage_collection(settings: Settings) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    flows.get_matcher(settings)
    assert gc.get_freeze_count() > 0


def test_retries_only_transient_errors() -> None:
    class State:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def result(self) -> None:
            raise self.exc

    assert flows._transient(None, None, State(PermissionError("locked")))
    assert not flows._transient(None, None, State(CorruptDocumentError("bad")))
    assert not flows._transient(None, None, State(ValueError("bug")))


def test_artifacts_are_created(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading artifacts back through Prefect 3.8's client filter API is unreliable, so the calls are captured
    # on their way to Prefect (the real functions still run and must not fail).
    made: dict[str, tuple[str, Any]] = {}
    real_table, real_markdown = flows.create_table_artifact, flows.create_markdown_artifact

    def table(*, table: Any, key: str, description: str) -> Any:
        made[key] = ("table", table)
        return real_table(table=table, key=key, description=description)

    def markdown(*, markdown: str, key: str, description: str) -> Any:
        made[key] = ("markdown", markdown)
        return real_markdown(markdown=markdown, key=key, description=description)

    monkeypatch.setattr(flows, "create_table_artifact", table)
    monkeypatch.setattr(flows, "create_markdown_artifact", markdown)
    sub = flow_support.make_submission(tmp_path / "in" / "Artifact Check Co")
    (sub / "empty.pdf").write_bytes(b"")
    outcome = flows.run_screen([str(sub)], tmp_path / "out", settings)
    assert outcome.report is not None
    assert set(made) == {"coverage-artifact-check-co", "summary-artifact-check-co"}
    kind, rows = made["coverage-artifact-check-co"]
    assert kind == "table" and len(rows) == len(outcome.report["indicators"])
    kind, text = made["summary-artifact-check-co"]
    assert kind == "markdown" and "Artifact Check Co" in text and "empty.pdf" in text


def test_dask_task_runner_with_a_local_cluster(tmp_path: Path, settings: Settings) -> None:
    from distributed import LocalCluster

    sub = flow_support.make_submission(tmp_path / "in" / "acme", variant="\ndask\n")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        outcome = flows.run_screen([str(sub)], tmp_path / "out", settings, dask_address=cluster.scheduler_address)
    assert outcome.report is not None and len(outcome.report["documents"]) == 3
    reference = flows.run_screen([str(sub)], tmp_path / "out-threads", settings, refresh=True)
    assert reference.report is not None
    assert [i["status"] for i in outcome.report["indicators"]] == [i["status"] for i in reference.report["indicators"]]


def test_flow_runs_inside_one_runtime_share_its_settings_and_api_client(tmp_path: Path, settings: Settings) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    seen: list[tuple[int, Any]] = []

    @flow(name="qpm-runtime-probe")
    def probe() -> None:
        seen.append((id(get_client(sync_client=True)), PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()))

    submission = flow_support.make_submission(tmp_path / "in" / "acme")
    with flows.prefect_runtime():
        probe()
        with flows.prefect_runtime():  # nested, as when one process screens submission after submission
            probe()
        outcome = flows.run_screen([str(submission)], tmp_path / "out", settings)
        probe()
    assert outcome.report is not None
    assert len({client for client, _ in seen}) == 1  # one client: Prefect built a new one (and TLS) for every run
    assert {heartbeat for _, heartbeat in seen} == {None}
    # the embedded server serves Prefect's app wrapped by pipeline.embedded_server
    assert any(SERVER_APP.encode() in command for command in process_commands())


def process_commands() -> list[list[bytes]]:
    """The command line of every process (Linux)."""
    commands = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            commands.append(path.read_bytes().split(b"\0"))
        except OSError:  # ended meanwhile
            continue
    return commands


def test_serve_deployments_can_be_built(tmp_path: Path, settings: Settings) -> None:
    deployments = flows.build_deployments(str(tmp_path / "out"), settings)
    assert sorted(d.name for d in deployments) == ["qpm-batch", "qpm-submission"]
    assert all(d.parameters["out_dir"] == str(tmp_path / "out") for d in deployments)


def test_settings_round_trip_through_flow_parameters(settings: Settings) -> None:
    params = flows.settings_to_params(settings)
    json.dumps(params)
    assert flows.settings_from_params(params) == settings
    for changed in (dataclasses.replace(settings, encoder_int8=not settings.encoder_int8), Settings(max_pages=7)):
        # a bool "False" once came back True, and the matcher then refused the settings it was trained for
        assert flows.settings_from_params(flows.settings_to_params(changed)) == changed


# --- a submission that can no longer be read: its earlier reports never pass for current --------------------


def test_a_resubmission_that_can_no_longer_be_read_sets_the_earlier_reports_aside(
    tmp_path: Path, settings: Settings
) -> None:
    archive = flow_support.zip_folder(flow_support.make_submission(tmp_path / "src"), tmp_path / "acme.zip")
    out = tmp_path / "out"
    first = flows.run_screen([str(archive)], out, settings)
    assert first.report is not None
    earlier = snapshot(out)

    good = archive.read_bytes()
    archive.write_bytes(b"PK\x03\x04 this zip is truncated")
    failed = flows.run_screen([str(archive)], out, settings)
    assert failed.report is None and failed.error_code == CorruptDocumentError.code
    assert failed.notice == str(out / "NOT-SCREENED.txt") and failed.earlier_outputs is not None
    # Nothing at the top of the folder passes for this run's report; the earlier outputs are kept as they were.
    assert sorted(p.name for p in out.iterdir()) == ["NOT-SCREENED.txt", "earlier-runs"]
    assert snapshot(Path(failed.earlier_outputs)) == earlier
    assert failed.error and failed.error in (out / "NOT-SCREENED.txt").read_text(encoding="utf-8")

    archive.write_bytes(good)
    again = flows.run_screen([str(archive)], out, settings)
    assert again.report is not None and (out / "report.json").exists()
    assert not (out / "NOT-SCREENED.txt").exists() and snapshot(Path(failed.earlier_outputs)) == earlier


def test_a_batch_sets_aside_the_folder_of_a_provider_it_cannot_screen_this_time(
    tmp_path: Path, settings: Settings
) -> None:
    batch, out = tmp_path / "batch", tmp_path / "out"
    batch.mkdir()
    flow_support.zip_folder(flow_support.make_submission(tmp_path / "src"), batch / "acme.zip")
    flow_support.make_submission(batch / "brook", variant="\nBrook.\n")
    flow_support.make_submission(batch / "cedar", variant="\nCedar.\n")
    assert not flows.run_batch(batch, out, settings).failed

    (batch / "acme.zip").write_bytes(b"PK\x03\x04 this zip is truncated")  # damaged: refused as a whole
    for path in (batch / "brook").iterdir():  # emptied: not a submission any more
        path.unlink()
    result = flows.run_batch(batch, out, settings)
    by_name = {o.name: o for o in result.outcomes}
    assert by_name["cedar"].report is not None
    with open(out / "batch-summary.csv", encoding="utf-8-sig", newline="") as handle:
        rows = {row["provider"]: row for row in csv.DictReader(handle)}
    for name in ("acme", "brook"):
        outcome = by_name[name]
        assert outcome.report is None and outcome.notice == str(out / name / "NOT-SCREENED.txt")
        assert not (out / name / "report.json").exists() and (out / name / "NOT-SCREENED.txt").exists()
        assert outcome.earlier_outputs and (Path(outcome.earlier_outputs) / "report.json").exists()
        # The summary says it could not be read, and points to the notice where the report was.
        assert rows[name]["status"] == "not screened" and rows[name]["report"] == outcome.notice
    assert rows["cedar"]["report"] == str(out / "cedar" / "report.json")
