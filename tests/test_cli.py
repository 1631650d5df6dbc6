"""The qpm-screen CLI: exit codes, JSON shapes, and evaluation against labels."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import signal
import sys
import threading
import types

import pytest

from pipeline import cli
from pipeline.cli import main
from pipeline.config import PROJECT_ROOT, Settings

SAMPLES = PROJECT_ROOT / "sample_policies" / "docs"


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_extract_json_reports_good_and_bad_files_with_exit_code_3(tmp_path, capsys) -> None:
    (tmp_path / "policy.txt").write_text("# Confidentiality\n\nWe keep what you tell us private.\n")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage")
    (tmp_path / "empty.docx").write_bytes(b"")
    code, out, _ = _run(capsys, "extract", str(tmp_path), "--json")
    assert code == 3
    docs = {d["name"]: d for d in json.loads(out)["documents"]}
    assert docs["policy.txt"]["error"] is None
    passage = docs["policy.txt"]["passages"][0]
    assert {"text", "page", "section", "start", "end", "boxes"} <= passage.keys()
    assert passage["section"] == "Confidentiality"
    assert "empty" in docs["empty.docx"]["error"]
    assert docs["broken.pdf"]["error"]


def test_extract_on_samples_is_all_good(capsys) -> None:
    code, out, _ = _run(capsys, "extract", str(SAMPLES))
    assert code == 0
    assert "0 failed" in out


def test_usage_errors_exit_2(tmp_path, capsys) -> None:
    code, _, err = _run(capsys, "extract", str(tmp_path / "nope"))
    assert code == 2 and "no such file" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "extract", str(tmp_path / "empty"))
    assert code == 2 and "nothing to read" in err
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_indicators_commands(capsys) -> None:
    code, out, _ = _run(capsys, "indicators", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 60
    code, out, _ = _run(capsys, "indicators", "show", "CONF-02")
    assert code == 0 and "Limits of confidentiality" in out and "What to add" in out
    code, _, err = _run(capsys, "indicators", "show", "NOPE-99")
    assert code == 2 and "NOPE-99" in err
    code, out, _ = _run(capsys, "indicators", "validate")
    assert code == 0 and "60 indicators, valid" in out


def test_indicators_import_turns_a_spreadsheet_into_a_catalogue_the_tool_uses(tmp_path, capsys) -> None:
    header = "id,area,title,must_say,level,what_to_add,exemplars,key_terms,policy_types,element_1,element_2\n"
    row = (
        "CONF-01,CONF,Commitment,Information stays confidential.,essential,Say who it binds.,"
        "a;b;c;d;e;f,confidential,confidentiality,Binds staff,Breaches are disciplinary\n"
    )
    sheet = tmp_path / "team.csv"
    sheet.write_bytes((header + row.replace("Commitment", "Commitment \u2013 staff")).encode("cp1252"))
    out = tmp_path / "team.yaml"
    code, printed, _ = _run(capsys, "indicators", "import", str(sheet), "--out", str(out), "--id", "team")
    assert code == 0 and "wrote 1 indicators" in printed
    code, printed, _ = _run(capsys, "indicators", "show", "CONF-01", "--catalogue", str(out))
    assert code == 0 and "Commitment \u2013 staff" in printed  # an Excel CSV in Windows-1252 reads correctly


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("empty.csv", b"", "could not be read as a CSV file"),
        ("team.xlsx", b"not a workbook", "could not be read as an Excel workbook"),
        ("team.ods", b"x", "expects a .csv or .xlsx"),
        ("header-only.csv", b"id,area\n", "no indicators"),
    ],
)
def test_indicators_import_of_a_bad_spreadsheet_is_a_usage_error_naming_it(
    tmp_path, capsys, name, content, message
) -> None:
    sheet = tmp_path / name
    if content is not None:
        sheet.write_bytes(content)
    code, _, err = _run(capsys, "indicators", "import", str(sheet), "--out", str(tmp_path / "x.yaml"))
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.slow
def test_evaluate_prints_every_metric_and_writes_predictions(tmp_path, capsys) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    names = ["ferry-lane-volunteer-confidentiality-statement.txt", "hollins-park-community-association-complaints.pdf"]
    for name in names:
        shutil.copy(SAMPLES / name, docs / name)
    labels = tmp_path / "labels.csv"
    with open(PROJECT_ROOT / "sample_policies" / "labels.csv", newline="") as src, open(labels, "w", newline="") as dst:
        rows = [r for r in csv.DictReader(src) if r["document"] in names]
        writer = csv.DictWriter(dst, fieldnames=["document", "indicator", "expected", "evidence"])
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"document": "absent.txt", "indicator": "CONF-01", "expected": "met", "evidence": ""})
    predictions = tmp_path / "pred.csv"
    code, out, _ = _run(capsys, "evaluate", str(docs), str(labels), "--json", "--predictions", str(predictions))
    assert code == 0
    report = json.loads(out)
    for key in (
        "macro_f1_3class",
        "f1_met",
        "f1_partial",
        "f1_missing",
        "coverage_precision",
        "coverage_recall",
        "coverage_f1",
        "coverage_ap",
        "missing_as_met_rate",
        "evidence_hit_at_3",
        "n_rows",
        "confusion_matrix",
        "per_indicator",
        "keyword_baseline",
    ):
        assert key in report, key
    assert report["n_rows"] == 120
    assert report["labelled_documents_missing"] == ["absent.txt"]  # named, and its row not scored
    assert 0.0 <= report["macro_f1_3class"] <= 1.0
    # the figures say which encoder and which CPU produced them
    assert report["encoder"].startswith(Settings().embedding_model_id)
    assert report["environment"]["cpu_count"] >= 1 and report["environment"]["torch"]
    pred_rows = list(csv.DictReader(predictions.open()))
    assert len(pred_rows) == 120
    assert {r["status"] for r in pred_rows} <= {"met", "partial", "missing"}
    # the human-readable form shows the matcher beside the baseline
    code, out, _ = _run(capsys, "evaluate", str(docs), str(labels))
    assert "matcher" in out and "keywords" in out and "macro_f1_3class" in out
    assert f"encoder {report['encoder']} on " in out
    assert "NOT FOUND, rows not scored: 1 labelled document(s) not in DOCS_DIR: absent.txt" in out


def test_evaluate_refuses_labels_that_name_nothing_in_the_folder_before_screening(tmp_path, capsys) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "policy.txt").write_text("We keep information confidential.")
    labels = tmp_path / "labels.csv"
    labels.write_text("document,indicator,expected,evidence\nother.txt,CONF-01,met,\n")
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels))
    assert code == 2 and "none of the 1 documents named in labels.csv" in err
    labels.write_text("document,indicator,expected,evidence\n")
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels))
    assert code == 2 and "holds no label rows" in err
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels), "--predictions", str(tmp_path / "no" / "p.csv"))
    assert code == 2 and "must be a file in an existing folder" in err


# --- Ctrl+C and SIGTERM ---------------------------------------------------------------------------------------


@pytest.fixture
def fresh_stop():
    """Each test starts, and leaves, with no stop under way (the state is the process's)."""
    cli._reset_stop()
    yield
    cli._reset_stop()


class _TerminationSignal(BaseException):
    """Stands in for prefect.exceptions.TerminationSignal (Prefect's SIGTERM handler raises it in flow runs)."""

    def __init__(self, signal: int) -> None:
        self.signal = signal


def test_an_interrupt_is_recognised_behind_what_its_handling_raised(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "prefect.exceptions", types.SimpleNamespace(TerminationSignal=_TerminationSignal))
    assert cli.interrupt_exit_code(KeyboardInterrupt()) == 130
    assert cli.interrupt_exit_code(cli.Terminated()) == 143
    assert cli.interrupt_exit_code(_TerminationSignal(signal.SIGTERM)) == 143
    # Prefect reporting the interrupted run to a server that went with the same signal: its connection error
    # replaces the interrupt, which is still what happened.
    try:
        try:
            raise _TerminationSignal(signal.SIGTERM)
        except _TerminationSignal:
            raise ConnectionError("All connection attempts failed") from None
    except ConnectionError as exc:
        assert exc.__context__ is not None
        assert cli.interrupt_exit_code(exc) == 143
    assert cli.interrupt_exit_code(ValueError("a real failure")) is None
    assert cli.interrupt_exit_code(None) is None


def test_logs_pass_until_a_stop_and_none_after_it_from_any_thread(fresh_stop) -> None:
    quiet = cli.QuietWhileStopping()

    def record(message: str, exc_info=None) -> logging.LogRecord:
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, message, None, exc_info)

    assert quiet.filter(record("Encountered exception: a real failure"))  # before a stop every record passes
    assert logging.raiseExceptions
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        # Logged while the interrupt is handled: Prefect's crash report, the first sign of a SIGTERM in a flow run.
        assert not quiet.filter(record("Crash detected! Execution was aborted by an interrupt signal."))
    verdicts: list[bool] = []
    worker = threading.Thread(target=lambda: verdicts.append(quiet.filter(record("Service 'EventsWorker' failed"))))
    worker.start()
    worker.join()
    assert verdicts == [False]
    # Prefect's API log worker prints its delivery failures only while this is set.
    assert not logging.raiseExceptions


def test_a_record_from_another_thread_is_dropped_while_the_main_thread_handles_an_interrupt(fresh_stop) -> None:
    quiet = cli.QuietWhileStopping()
    verdicts: list[bool] = []
    logged = threading.Event()

    def log_from_a_worker() -> None:
        verdicts.append(quiet.filter(logging.LogRecord("prefect", logging.ERROR, __file__, 1, "late", None, None)))
        logged.set()

    try:
        raise cli.Terminated
    except cli.Terminated:
        worker = threading.Thread(target=log_from_a_worker)
        worker.start()
        logged.wait(10)
    worker.join()
    assert verdicts == [False]


def test_main_puts_back_the_signal_handlers_it_found(fresh_stop, capsys) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert main(["indicators", "validate"]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_an_interrupt_in_a_command_prints_the_message_alone_and_its_exit_code(fresh_stop, monkeypatch, capsys) -> None:
    def stopped(args) -> int:
        raise cli.Terminated

    monkeypatch.setattr(cli, "cmd_indicators", stopped)
    assert main(["indicators", "list"]) == 143
    assert capsys.readouterr().err == cli.INTERRUPTED_MESSAGE + "\n"
