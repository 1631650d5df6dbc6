"""Label files, evidence-span matching and the evaluation figures."""

from __future__ import annotations

import csv

import pytest

from pipeline.errors import ConfigError
from pipeline.evaluate import Prediction, keyword_baseline, metrics, write_predictions
from pipeline.labels import Label, overlaps, read_labels


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
