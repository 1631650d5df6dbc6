"""Compare screening results with gold labels: the figures everyone trusts, and a keyword baseline beside them.

Every file in the folder is screened as its own document; only rows present in the labels file are scored.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, precision_recall_fscore_support

from pipeline.coverage import STATUSES
from pipeline.errors import ConfigError
from pipeline.labels import Label, overlaps


@dataclass
class Prediction:
    """One system output row, comparable with a :class:`Label`."""

    document: str
    indicator: str
    status: str
    score: float
    evidence: list[str]  # texts of the top passages for this indicator, best first (whatever the status)


def metrics(labels: Sequence[Label], predictions: dict[tuple[str, str], Prediction]) -> dict[str, Any]:
    """All evaluation figures for the labelled rows that have a prediction."""
    rows = [
        (lab, predictions[(lab.document, lab.indicator)])
        for lab in labels
        if (lab.document, lab.indicator) in predictions
    ]
    gold = [lab.expected for lab, _ in rows]
    pred = [p.status for _, p in rows]
    if not rows:
        return {"n_rows": 0}
    per_class = f1_score(gold, pred, labels=list(STATUSES), average=None, zero_division=0)
    covered_gold = np.array([g != "missing" for g in gold])
    covered_pred = np.array([p != "missing" for p in pred])
    prec, rec, f1, _ = precision_recall_fscore_support(covered_gold, covered_pred, average="binary", zero_division=0)
    scores = np.array([p.score for _, p in rows])
    ap = float(average_precision_score(covered_gold, scores)) if covered_gold.any() else 0.0
    gold_missing = [p for g, p in zip(gold, pred, strict=True) if g == "missing"]
    hit_rows = [(lab, p) for lab, p in rows if lab.expected != "missing" and lab.evidence]
    hits = sum(1 for lab, p in hit_rows if any(overlaps(t, lab.evidence) for t in p.evidence[:3]))
    by_indicator: dict[str, dict[str, Any]] = {}
    for ind in sorted({lab.indicator for lab, _ in rows}):
        sub = [(lab.expected, p.status) for lab, p in rows if lab.indicator == ind]
        g, q = zip(*sub, strict=True)
        by_indicator[ind] = {
            "n": len(sub),
            "accuracy": round(sum(a == b for a, b in sub) / len(sub), 3),
            "gold": {s: g.count(s) for s in STATUSES},
            "predicted": {s: q.count(s) for s in STATUSES},
        }
    cm = confusion_matrix(gold, pred, labels=list(STATUSES))
    return {
        "n_rows": len(rows),
        "macro_f1_3class": round(float(np.mean(per_class)), 4),
        "f1_met": round(float(per_class[0]), 4),
        "f1_partial": round(float(per_class[1]), 4),
        "f1_missing": round(float(per_class[2]), 4),
        "coverage_precision": round(float(prec), 4),
        "coverage_recall": round(float(rec), 4),
        "coverage_f1": round(float(f1), 4),
        "coverage_ap": round(ap, 4),
        "missing_as_met_rate": round(gold_missing.count("met") / len(gold_missing), 4) if gold_missing else 0.0,
        "evidence_hit_at_3": round(hits / len(hit_rows), 4) if hit_rows else None,
        "confusion_matrix": {
            "labels": list(STATUSES),
            "rows_gold_columns_predicted": cm.tolist(),
        },
        "per_indicator": by_indicator,
    }


def keyword_baseline(text_passages: Sequence[str], key_terms: Sequence[str]) -> tuple[str, float, list[str]]:
    """The naive method the matcher must beat: count distinct key terms in the document.

    0 terms -> missing, 1 -> partial, 2 or more -> met; evidence = the passages with the most terms.
    """
    patterns = [re.compile(r"\b" + re.escape(t) + r"\b", re.IGNORECASE) for t in key_terms if t]
    found = {k for k, pat in enumerate(patterns) for t in text_passages if pat.search(t)}
    status = "missing" if not found else ("partial" if len(found) == 1 else "met")
    counts = [sum(1 for pat in patterns if pat.search(t)) for t in text_passages]
    order = sorted(range(len(text_passages)), key=lambda k: -counts[k])
    evidence = [text_passages[k] for k in order[:3] if counts[k] > 0]
    return status, min(len(found) / 3.0, 1.0), evidence


def check_predictions_path(path: Path, labels_path: Path) -> None:
    """Refuse, before any screening, a predictions file that would overwrite the labels or cannot be written.

    The check creates and removes the temporary file :func:`write_predictions` writes first.

    Raises:
        ConfigError: naming the path and what is wrong with it.
    """
    same = path.resolve() == labels_path.resolve() or (path.exists() and path.samefile(labels_path))
    if same:
        raise ConfigError(f"--predictions {path} is the labels file: it would be overwritten; name another file")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8"):
            pass
        tmp.unlink()
    except OSError as exc:
        raise ConfigError(f"--predictions {path} cannot be written: {exc.strerror or exc}") from exc


def write_predictions(path: Path, labels: Sequence[Label], predictions: dict[tuple[str, str], Prediction]) -> None:
    """CSV ``document,indicator,status,score,evidence_1,evidence_2,evidence_3`` for every labelled row.

    The evidence columns hold the three passages ranked highest for the indicator, for rows predicted missing
    too: they are what ``evidence_hit_at_3`` scores, so the figure can be recomputed from the file.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["document", "indicator", "status", "score", "evidence_1", "evidence_2", "evidence_3"])
        for lab in labels:
            p = predictions.get((lab.document, lab.indicator))
            if p is None:
                continue
            writer.writerow([p.document, p.indicator, p.status, f"{p.score:.4f}", *[*p.evidence[:3], "", "", ""][:3]])
    tmp.replace(path)
