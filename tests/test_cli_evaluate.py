"""``qpm-screen evaluate``: inputs refused before any screening, and labels that name no catalogue indicator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import evaluation_run
from pipeline.cli import main
from pipeline.config import Settings
from pipeline.match import Matcher
from tests.flow_support import CONFIDENTIALITY, build_fake_matcher

HEADER = "document,indicator,expected,evidence\n"


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def no_screening(monkeypatch) -> None:
    """Refusals must come before the matcher is built, not after minutes of screening."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("screening started")

    monkeypatch.setattr(evaluation_run, "build_matcher", refuse)


@pytest.fixture
def fake_matcher(monkeypatch) -> None:
    """A real matcher over the real catalogue, with a hashing encoder instead of the model.

    Built once for the two runs of the test: fitting its synthetic models is most of the test's time.
    """
    matchers: list[Matcher] = []

    def build(settings: Settings, catalogue: object = None) -> Matcher:
        if not matchers:
            matchers.append(build_fake_matcher(settings))
        return matchers[0]

    monkeypatch.setattr(evaluation_run, "build_matcher", build)


def _docs(tmp_path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "confidentiality.md").write_text(CONFIDENTIALITY, encoding="utf-8")
    return docs


def _labels(tmp_path, body: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def test_evaluate_says_which_argument_is_wrong(tmp_path, capsys, no_screening) -> None:
    docs, labels = _docs(tmp_path), _labels(tmp_path, "confidentiality.md,CONF-01,met,\n")
    cases = [
        ((tmp_path / "nope", labels), f"DOCS_DIR {tmp_path / 'nope'} does not exist"),
        ((labels, labels), f"DOCS_DIR {labels} is not a folder"),
        ((docs, tmp_path / "none.csv"), f"LABELS_CSV {tmp_path / 'none.csv'} does not exist"),
        ((docs, docs), f"LABELS_CSV {docs} is not a file"),
    ]
    for (d, lab), message in cases:
        code, _, err = _run(capsys, "evaluate", str(d), str(lab))
        assert code == 2 and message in err, err


def test_evaluate_reports_a_broken_labels_file_by_line_without_a_traceback(tmp_path, capsys, no_screening) -> None:
    docs = _docs(tmp_path)
    labels = _labels(tmp_path, 'confidentiality.md,CONF-01,met,"We keep it\nconfidentiality.md,CONF-02,missing,\n')
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels))
    assert code == 2 and "labels.csv line 2: a quoted cell" in err and "Traceback" not in err


def test_evaluate_refuses_labels_naming_no_catalogue_indicator(tmp_path, capsys, no_screening) -> None:
    docs = _docs(tmp_path)
    labels = _labels(tmp_path, "confidentiality.md,XYZ-99,met,\nconfidentiality.md,ABC-1,missing,\n")
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels))
    assert code == 2 and "none of the 2 indicator ids in labels.csv (ABC-1, XYZ-99) is in catalogue" in err


def test_evaluate_refuses_a_labelled_name_held_twice_in_the_folder(tmp_path, capsys, no_screening) -> None:
    docs = _docs(tmp_path)
    (docs / "old").mkdir()
    (docs / "old" / "confidentiality.md").write_text("An older version.", encoding="utf-8")
    labels = _labels(tmp_path, "confidentiality.md,CONF-01,met,\n")
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels))
    assert code == 2 and "confidentiality.md and old/confidentiality.md" in err


def test_evaluate_refuses_predictions_over_the_labels_file(tmp_path, capsys, no_screening, monkeypatch) -> None:
    docs, labels = _docs(tmp_path), _labels(tmp_path, "confidentiality.md,CONF-01,met,\n")
    original = labels.read_bytes()
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels), "--predictions", "labels.csv")
    assert code == 2 and "is the labels file" in err
    assert labels.read_bytes() == original


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, where no one can create files")
def test_evaluate_refuses_predictions_it_cannot_write(tmp_path, capsys, no_screening) -> None:
    docs, labels = _docs(tmp_path), _labels(tmp_path, "confidentiality.md,CONF-01,met,\n")
    code, _, err = _run(capsys, "evaluate", str(docs), str(labels), "--predictions", "/proc/preds.csv")
    assert code == 2 and "--predictions /proc/preds.csv cannot be written" in err


def test_evaluate_matches_ids_in_any_case_and_reports_unknown_ones(tmp_path, capsys, fake_matcher) -> None:
    docs = _docs(tmp_path)
    (docs / "old").mkdir()
    (docs / "old" / "unlabelled.md").write_text(CONFIDENTIALITY, encoding="utf-8")
    (docs / "unlabelled.md").write_text(CONFIDENTIALITY, encoding="utf-8")  # never scored: its twin is harmless
    labels = _labels(
        tmp_path,
        "confidentiality.md,conf-01,met,We keep what people tell us confidential.\n"
        "confidentiality.md,Conf-02,met,\n"
        "confidentiality.md,XYZ-99,missing,\n",
    )
    code, out, _ = _run(capsys, "evaluate", str(docs), str(labels), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["n_rows"] == 2 and sorted(report["per_indicator"]) == ["CONF-01", "CONF-02"]
    assert report["label_indicators_unknown"] == {"XYZ-99": 1}
    code, out, _ = _run(capsys, "evaluate", str(docs), str(labels))
    assert "NOT IN CATALOGUE, rows not scored: 1 indicator id(s) in LABELS_CSV: XYZ-99 (1 row)" in out
