"""``qpm-screen evaluate``: screen a labelled folder and compute the matcher's and the keyword baseline's figures."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pipeline.catalogue import load_catalogue
from pipeline.config import Settings
from pipeline.embed import encoder_id, runtime_environment
from pipeline.errors import ConfigError
from pipeline.evaluate import Prediction, check_predictions_path, keyword_baseline, metrics, write_predictions
from pipeline.ingest import FailedDocument, IngestedDocument, ingest
from pipeline.inputs import collect_files
from pipeline.labels import read_labels
from pipeline.screen import build_matcher


def run_evaluation(
    settings: Settings, docs_dir: Path, labels_path: Path, *, predictions_path: Path | None = None
) -> dict[str, Any]:
    """Screen every file of ``docs_dir`` as its own document; score the labelled rows.

    Raises:
        ConfigError: before any screening, for labels that cannot be scored (none naming a file of the folder or
            an indicator of the catalogue, or naming a file the folder holds twice) or an unusable predictions
            path.
    """
    catalogue = load_catalogue(settings.catalogue_path)
    labels = read_labels(labels_path, catalogue.ids)
    if not labels:
        raise ConfigError(f"{labels_path.name} holds no label rows")
    known = set(catalogue.ids)
    unknown = Counter(lab.indicator for lab in labels if lab.indicator not in known)
    if unknown.total() == len(labels):
        examples = ", ".join(sorted(unknown)[:5])
        raise ConfigError(
            f"none of the {len(unknown)} indicator ids in {labels_path.name} ({examples}"
            f"{', ...' if len(unknown) > 5 else ''}) is in catalogue {catalogue.id} {catalogue.version}: "
            "check its indicator column against qpm-screen indicators list"
        )
    files = collect_files([docs_dir])
    labelled, present = {lab.document for lab in labels}, {path.name for path in files}
    if not labelled & present:
        raise ConfigError(
            f"none of the {len(labelled)} documents named in {labels_path.name} is in {docs_dir}: "
            "check its document column against the file names"
        )
    clashes = _ambiguous_files(files, labelled)
    if clashes:
        shown = "; ".join(" and ".join(str(p.relative_to(docs_dir)) for p in paths) for paths in clashes[:5])
        raise ConfigError(
            f"{labels_path.name} names documents by file name, and {docs_dir} holds {len(clashes)} labelled "
            f"name(s) more than once: {shown}{'; ...' if len(clashes) > 5 else ''}: rename or move the copies"
        )
    if predictions_path is not None:
        check_predictions_path(predictions_path, labels_path)
    matcher = build_matcher(settings, catalogue)
    ids = matcher.catalogue.ids
    predictions: dict[tuple[str, str], Prediction] = {}
    baseline: dict[tuple[str, str], Prediction] = {}
    failures: list[FailedDocument] = []
    for path in files:
        result = ingest(path, settings)
        if not isinstance(result, IngestedDocument):
            failures.append(result)
            continue
        doc = result.document
        scored = matcher.score_document(doc.name, doc.doc_id, doc.metadata.policy_type, result.passages)
        coverage = matcher.decide([scored], scope=doc.name).by_id()
        texts = [p.text for p in result.passages]
        for i, ind_id in enumerate(ids):
            top = matcher.top_passages([scored], i, 3)
            res = coverage[ind_id]
            predictions[(doc.name, ind_id)] = Prediction(
                doc.name, ind_id, res.status, res.score, [result.passages[p].text for _, _, p in top]
            )
            status, score, evidence = keyword_baseline(texts, matcher.catalogue.indicators[i].key_terms)
            baseline[(doc.name, ind_id)] = Prediction(doc.name, ind_id, status, score, evidence)
    report = metrics(labels, predictions)
    base = metrics(labels, baseline)
    base.pop("per_indicator", None)
    report["keyword_baseline"] = base
    report["encoder"] = encoder_id(settings)
    report["environment"] = runtime_environment()
    report["failed_documents"] = [{"name": f.name, "code": f.code, "message": f.message} for f in failures]
    report["labelled_documents_missing"] = sorted(labelled - present)  # their rows are not scored
    report["label_indicators_unknown"] = dict(sorted(unknown.items()))  # id -> rows; not scored either
    if predictions_path is not None:
        write_predictions(predictions_path, labels, predictions)
    return report


def _ambiguous_files(files: list[Path], labelled: set[str]) -> list[list[Path]]:
    """Groups of files sharing a labelled name: a label could be scored against either.

    Names no label uses may repeat (two ``README.txt`` in different folders): they are screened but never
    scored, so they cannot mislead.
    """
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_name[path.name].append(path)
    return [paths for name, paths in sorted(by_name.items()) if name in labelled and len(paths) > 1]
