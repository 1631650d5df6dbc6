"""Label files, evidence-span matching and the evaluation figures."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.csvfile import FIELD_SIZE_LIMIT
from pipeline.errors import ConfigError
from pipeline.evaluate import Prediction, check_predictions_path, keyword_baseline, metrics, write_predictions
from pipeline.labels import Label, overlaps, read_labels
from pipeline.train import labelled_files


def test_read_labels_validates_values(tmp_path) -> None:
    good = tmp_path / "l.csv"
    good.write_text("document,indicator,expected,evidence\na.txt,CONF-01,Met,We keep it safe.\n")
    assert read_labels(good) == [Label("a.txt", "CONF-01", "met", "We keep it safe.")]
    bad = tmp_path / "b.csv"
    bad.write_text("document,indicator,expected,evidence\na.txt,CONF-01,yes,\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_labels(bad)
    worse = tmp_path / "c.csv"
    worse.write_text("doc,ind\n")
    with pytest.raises(ConfigError, match="header"):
        read_labels(worse)


@pytest.mark.parametrize(("encoding", "prefix"), [("utf-8", b"\xef\xbb\xbf"), ("utf-8", b""), ("cp1252", b"")])
def test_read_labels_from_the_csv_files_excel_saves(tmp_path, encoding, prefix) -> None:
    evidence = "\u201cWe never share\u201d \u2013 staff"
    text = f"document,indicator,expected,evidence\r\ncaf\u00e9.txt,CONF-01,partial,{evidence}\r\n"
    path = tmp_path / "labels.csv"
    path.write_bytes(prefix + text.encode(encoding))
    assert read_labels(path) == [Label("caf\u00e9.txt", "CONF-01", "partial", evidence)]


@pytest.mark.parametrize(
    ("passage", "span", "expected"),
    [
        ("3.1 We will tell you before we share\ninformation.", "We will tell you before we share information", True),
        ("We will tell you before we share information.", "tell you before", True),
        ("Totally different words about complaints.", "We will tell you before we share information", False),
        ("short", "short", True),
        ("", "anything", False),
    ],
)
def test_overlaps_is_robust_to_wrapping_and_numbering(passage, span, expected) -> None:
    assert overlaps(passage, span) is expected


def _pred(doc, ind, status, score, evidence=()):
    return Prediction(doc, ind, status, score, list(evidence))


def test_metrics_on_a_known_confusion() -> None:
    labels = [
        Label("d", "A", "met", "alpha beta gamma delta"),
        Label("d", "B", "partial", "epsilon zeta eta theta"),
        Label("d", "C", "missing", ""),
        Label("d", "D", "missing", ""),
        Label("other", "A", "met", "not screened"),
    ]
    preds = {
        ("d", "A"): _pred("d", "A", "met", 0.9, ["alpha beta gamma delta here"]),
        ("d", "B"): _pred("d", "B", "missing", 0.2, ["nothing like it"]),
        ("d", "C"): _pred("d", "C", "met", 0.8),
        ("d", "D"): _pred("d", "D", "missing", 0.1),
    }
    m = metrics(labels, preds)
    assert m["n_rows"] == 4  # the unscreened row is not scored
    assert m["missing_as_met_rate"] == 0.5
    assert m["evidence_hit_at_3"] == 0.5
    assert m["f1_met"] == pytest.approx(2 / 3, abs=1e-3)
    assert m["f1_partial"] == 0.0
    assert m["coverage_recall"] == 0.5
    assert m["confusion_matrix"]["rows_gold_columns_predicted"] == [[1, 0, 0], [0, 0, 1], [1, 0, 1]]
    assert m["per_indicator"]["A"]["accuracy"] == 1.0


def test_keyword_baseline_counts_distinct_terms() -> None:
    texts = ["We follow the Equality Act.", "Reasonable adjustments are made.", "Nothing here."]
    assert keyword_baseline(texts, ["equality act", "reasonable adjustments"])[0] == "met"
    assert keyword_baseline(texts, ["equality act", "ombudsman"])[0] == "partial"
    status, score, evidence = keyword_baseline(texts, ["ombudsman"])
    assert (status, score, evidence) == ("missing", 0.0, [])


def test_predictions_file_has_the_documented_columns(tmp_path) -> None:
    labels = [Label("d", "A", "met", ""), Label("d", "B", "missing", "")]
    preds = {
        ("d", "A"): _pred("d", "A", "met", 0.91234, ["one", "two"]),
        ("d", "B"): _pred("d", "B", "missing", 0, ["closest", "next", "third", "fourth"]),
    }
    out = tmp_path / "p.csv"
    write_predictions(out, labels, preds)
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["document", "indicator", "status", "score", "evidence_1", "evidence_2", "evidence_3"]
    assert rows[1] == ["d", "A", "met", "0.9123", "one", "two", ""]
    # A row predicted missing still lists its top three passages: they are what evidence_hit_at_3 scores.
    assert rows[2] == ["d", "B", "missing", "0.0000", "closest", "next", "third"]


HEADER = "document,indicator,expected,evidence\n"


def _labels(tmp_path, body: str, name: str = "labels.csv"):
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def test_read_labels_reads_an_evidence_span_longer_than_the_csv_modules_default_limit(tmp_path) -> None:
    span = "We keep records safe. " * 8000  # 176,000 characters: over the csv module's 131,072
    path = _labels(tmp_path, f'a.txt,CONF-01,met,"{span}"\n')
    assert read_labels(path) == [Label("a.txt", "CONF-01", "met", span.strip())]


def test_read_labels_refuses_a_cell_over_the_bounded_limit_naming_the_line(tmp_path) -> None:
    path = _labels(tmp_path, "a.txt,CONF-01,missing,\n" + f"a.txt,CONF-02,met,{'x' * (FIELD_SIZE_LIMIT + 1)}\n")
    with pytest.raises(ConfigError, match=r"labels\.csv line 3: a cell is longer than"):
        read_labels(path)


def test_read_labels_refuses_an_unterminated_quote_naming_the_line_it_opens_on(tmp_path) -> None:
    path = _labels(
        tmp_path,
        "a.txt,CONF-01,missing,\n"
        'a.txt,CONF-02,met,"We share nothing without consent.\n'
        "a.txt,CONF-03,missing,\n"
        "b.txt,CONF-01,met,Everything is confidential.\n",
    )
    with pytest.raises(ConfigError, match=r"labels\.csv line 3: a quoted cell .* never closed"):
        read_labels(path)


def test_read_labels_refuses_text_after_a_closing_quote(tmp_path) -> None:
    path = _labels(tmp_path, 'a.txt,CONF-01,met,"We said" it\n')
    with pytest.raises(ConfigError, match=r"line 2: text follows a closing quote"):
        read_labels(path)


def test_read_labels_names_the_line_a_row_starts_on_and_the_bad_value(tmp_path) -> None:
    path = _labels(tmp_path, 'a.txt,CONF-01,met,"one\ntwo\nthree"\na.txt,CONF-02,yes,\n')
    with pytest.raises(ConfigError, match=r"line 5: expected must be met, partial or missing, not 'yes'"):
        read_labels(path)


def test_read_labels_says_a_row_is_short_of_cells(tmp_path) -> None:
    path = _labels(tmp_path, "a.txt,CONF-01\n")
    with pytest.raises(ConfigError, match=r"line 2: 2 cell\(s\) where the header has 4"):
        read_labels(path)
    # the evidence column may be left off a row, as before
    assert read_labels(_labels(tmp_path, "a.txt,CONF-01,missing\n")) == [Label("a.txt", "CONF-01", "missing", "")]


def test_read_labels_refuses_evidence_cut_by_unquoted_commas(tmp_path) -> None:
    path = _labels(tmp_path, "a.txt,CONF-01,met,We keep it safe, always\n")
    with pytest.raises(ConfigError, match=r"line 2: 5 cells where the header has 4: put the evidence in double"):
        read_labels(path)
    # empty trailing cells (a spreadsheet's blank columns) are harmless
    assert read_labels(_labels(tmp_path, "a.txt,CONF-01,met,Safe.,,\n")) == [Label("a.txt", "CONF-01", "met", "Safe.")]


def test_read_labels_refuses_a_second_row_for_the_same_document_and_indicator(tmp_path) -> None:
    path = _labels(tmp_path, "a.txt,CONF-01,met,\nb.txt,CONF-01,met,\na.txt,CONF-01,missing,\n")
    with pytest.raises(ConfigError, match=r"line 4: a second row for a\.txt CONF-01 \(the first is line 2\)"):
        read_labels(path)
    # the same id in another case is the same indicator
    path = _labels(tmp_path, "a.txt,CONF-01,met,\na.txt,conf-01,missing,\n")
    with pytest.raises(ConfigError, match="the first is line 2"):
        read_labels(path, ["CONF-01"])


def test_train_reads_labels_with_the_duplicate_rule(tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("We keep information confidential.")
    path = _labels(tmp_path, "a.txt,CONF-01,met,\na.txt,CONF-01,missing,\n")
    with pytest.raises(ConfigError, match="a second row"):
        labelled_files(docs, path)  # it used to keep the last row without a word


def test_read_labels_spells_indicator_ids_as_the_catalogue_does(tmp_path) -> None:
    path = _labels(tmp_path, "a.txt,conf-01,met,\na.txt,Xyz-99,missing,\n")
    assert [lab.indicator for lab in read_labels(path, ["CONF-01", "CONF-02"])] == ["CONF-01", "Xyz-99"]


def test_predictions_path_is_checked_before_screening(tmp_path, monkeypatch) -> None:
    labels = _labels(tmp_path, "a.txt,CONF-01,met,\n")
    original = labels.read_bytes()
    monkeypatch.chdir(tmp_path)
    for same in (labels, Path("labels.csv"), tmp_path / "." / "labels.csv"):
        with pytest.raises(ConfigError, match="is the labels file"):
            check_predictions_path(same, labels)
    (tmp_path / "link.csv").symlink_to(labels)
    with pytest.raises(ConfigError, match="is the labels file"):
        check_predictions_path(tmp_path / "link.csv", labels)
    assert labels.read_bytes() == original
    check_predictions_path(tmp_path / "p.csv", labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "link.csv"]  # the probe left nothing


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, where no one can create files")
def test_predictions_path_in_a_folder_that_cannot_be_written_is_refused(tmp_path) -> None:
    labels = _labels(tmp_path, "a.txt,CONF-01,met,\n")
    with pytest.raises(ConfigError, match=r"--predictions /proc/preds\.csv cannot be written"):
        check_predictions_path(Path("/proc/preds.csv"), labels)
