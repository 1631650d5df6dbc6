"""Fit the matcher's two models from the catalogue and the team's labelled sample policies, reproducibly on one
machine (another CPU's float kernels give another adapter; ``metrics.json`` records the environment).

Training data, all written by the team (never the dev corpus):
- catalogue sentences as short pseudo-passages: exemplars and element exemplars are positives for their own
  indicator, near misses are negatives (each compared with the catalogue minus itself);
- passages of ``sample_policies/docs`` with ``sample_policies/labels.csv``: a passage overlapping a gold
  evidence span is a positive for that indicator; the rest are negatives (down-weighted inside documents whose
  label says the indicator is there, since a second evidence passage may simply be unlabelled).
The encoder itself is adapted first (``pipeline.adapt``: a low-rank update of MiniLM learned from the same
catalogue sentences and labelled passages). Because an adapted encoder places its own training passages
unrealistically well, every training document's features come from an adapter fitted without that document
(cross-fitting over ``ENCODER_FOLDS`` folds); the adapter fitted on everything is the one saved for screening.
The decision model is fitted on out-of-fold evidence probabilities (documents grouped into folds) so it learns
from scores like those it will see on unseen documents.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import GroupKFold, KFold

from pipeline.adapt import (
    EncoderAdapter,
    EncoderTuner,
    TuningExample,
    catalogue_examples,
    document_examples,
    initial_anchors,
)
from pipeline.catalogue import Catalogue
from pipeline.config import Settings, usable_folder
from pipeline.coverage import STATUSES
from pipeline.embed import (
    ModelEncoder,
    TextEncoder,
    adapter_path,
    current_adapter,
    inference_model,
    load_base_model,
    runtime_environment,
)
from pipeline.errors import ConfigError, ModelUnavailableError
from pipeline.ingest import IngestedDocument, ingest
from pipeline.inputs import collect_files
from pipeline.labels import Label, overlaps, read_labels
from pipeline.match import (
    DECISION_FEATURES,
    MAX_ELEMENTS,
    PASSAGE_FEATURES,
    DecisionModel,
    EvidenceModel,
    IndicatorIndex,
    Matcher,
    ScoredDocument,
    decision_features,
    document_features,
    passage_features,
    passage_texts,
    score_features,
    weighted_statuses,
)

MODEL_FILE = "matcher.joblib"
FORMAT_VERSION = 4
ENCODER_FOLDS = 3
DECISION_FOLDS = 5
MIN_TRAINING_DOCUMENTS = DECISION_FOLDS  # one document per fold at least
CATALOGUE_ROW_WEIGHT = 1.0
DOCUMENT_ROW_WEIGHT = 2.0
UNLABELLED_IN_PRESENT_WEIGHT = 0.3


@dataclass
class LabelledDocument:
    """A sample policy with its passages' features and its gold labels."""

    ingested: IngestedDocument
    labels: dict[str, Label]
    features: np.ndarray  # (P, I, F)
    elements: np.ndarray  # (P, I, E)


Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # evidence-model training rows: features, 0/1 labels, weights


def catalogue_rows(index: IndicatorIndex) -> Rows:
    """Training rows from catalogue sentences (each compared with the rest of the catalogue)."""
    groups: list[tuple[list[str], np.ndarray, str, bool]] = [
        (index.ex_texts, index.ex, "ex", True),
        (index.el_texts, index.el, "el", True),
        (index.nm_texts, index.nm, "nm", False),
    ]
    owners = {"ex": index.ex_owner, "el": index.el_owner[:, 0], "nm": index.nm_owner}
    xs, ys = [], []
    for texts, vectors, kind, positive in groups:
        zero = np.zeros_like(vectors)
        feats, _ = passage_features(
            index,
            texts,
            vectors,
            zero,
            np.zeros(len(texts), dtype=np.float32),
            "other",
            mask=[(kind, k) for k in range(len(texts))],
            sequential=False,
        )
        y = np.zeros((len(texts), index.n), dtype=np.int64)
        if positive:
            y[np.arange(len(texts)), owners[kind]] = 1
        xs.append(feats.reshape(-1, feats.shape[2]))
        ys.append(y.reshape(-1))
    X = np.vstack(xs)
    y = np.concatenate(ys)
    return X, y, np.full(len(y), CATALOGUE_ROW_WEIGHT, dtype=np.float32)


def document_rows(doc: LabelledDocument, catalogue: Catalogue) -> Rows:
    """Training rows from one labelled sample policy."""
    passages = doc.ingested.passages
    n = len(catalogue.indicators)
    y = np.zeros((len(passages), n), dtype=np.int64)
    w = np.full((len(passages), n), DOCUMENT_ROW_WEIGHT, dtype=np.float32)
    for i, ind in enumerate(catalogue.indicators):
        label = doc.labels.get(ind.id)
        if label is None or label.expected == "missing":
            continue
        hits = [p for p, passage in enumerate(passages) if label.evidence and overlaps(passage.text, label.evidence)]
        y[hits, i] = 1
        # other passages may be unlabelled evidence of a present indicator: weaker negatives
        w[:, i] = np.where(y[:, i] == 1, DOCUMENT_ROW_WEIGHT, UNLABELLED_IN_PRESENT_WEIGHT)
    return doc.features.reshape(-1, doc.features.shape[2]), y.reshape(-1), w.reshape(-1)


def labelled_files(
    docs_dir: Path, labels_path: Path, indicator_ids: Sequence[str] = ()
) -> dict[Path, dict[str, Label]]:
    """The files of ``docs_dir`` that have labels, with their labels keyed by indicator id (spelt as in
    ``indicator_ids``, the catalogue's, when given: ``conf-02`` is CONF-02)."""
    by_doc: dict[str, dict[str, Label]] = defaultdict(dict)
    for label in read_labels(labels_path, indicator_ids):
        by_doc[label.document][label.indicator] = label
    return {path: by_doc[path.name] for path in collect_files([docs_dir]) if path.name in by_doc}


def review_files(labels: list[Any]) -> tuple[dict[Path, dict[str, Label]], int]:
    """Signed-off assessor decisions (``pipeline.web.workspace.ReviewLabel``) grouped by the file they judge.

    Decisions whose document can no longer be found, or whose file changed since it was screened (sha256),
    are left out; the second value counts them.
    """
    out: dict[Path, dict[str, Label]] = defaultdict(dict)
    skipped = 0
    for row in labels:
        path = Path(row.document_path) if row.document_path else None
        if (
            path is None
            or not path.is_file()
            or (row.document_sha256 and hashlib.sha256(path.read_bytes()).hexdigest() != row.document_sha256)
        ):
            skipped += 1
            continue
        out[path][row.indicator] = Label(row.document, row.indicator, row.expected, row.evidence)
    return dict(out), skipped


def read_training_files(
    files: dict[Path, dict[str, Label]], settings: Settings
) -> list[tuple[IngestedDocument, dict[str, Label]]]:
    """Ingest every labelled file (a training file that cannot be read is an error, not a skip)."""
    out = []
    for path, labels in files.items():
        result = ingest(path, settings, today=date(2026, 1, 1))
        if not isinstance(result, IngestedDocument):
            raise ModelUnavailableError(f"training document {path.name} could not be read: {result.message}")
        out.append((result, labels))
    return out


def tuning_examples(ingested: IngestedDocument, labels: dict[str, Label], catalogue: Catalogue) -> list[TuningExample]:
    """A labelled document's passages as encoder-training examples."""
    passages = ingested.passages
    n = len(catalogue.indicators)
    evidence = np.zeros((len(passages), n), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    for i, ind in enumerate(catalogue.indicators):
        label = labels.get(ind.id)
        if label is None or label.expected == "missing":
            continue
        present[i] = True
        for p, passage in enumerate(passages):
            if label.evidence and overlaps(passage.text, label.evidence):
                evidence[p, i] = 1.0
    return document_examples(passage_texts(passages), evidence, present)


def cross_fitted_documents(
    settings: Settings,
    catalogue: Catalogue,
    training: list[tuple[IngestedDocument, dict[str, Label]]],
    tuner: EncoderTuner,
    *,
    folds: int = ENCODER_FOLDS,
) -> tuple[list[LabelledDocument], EncoderAdapter, ModelEncoder]:
    """Adapt the encoder; return each document's features from an adapter that never saw it, the adapter fitted
    on everything, and an encoder that uses that adapter."""
    # the anchors start where the unquantised base model puts each indicator's exemplars (training is in float)
    base = ModelEncoder(load_base_model(settings), batch_size=settings.batch_size)
    anchors = initial_anchors(catalogue, base.encode)
    from_catalogue = catalogue_examples(catalogue)
    per_document = [tuning_examples(ingested, labels, catalogue) for ingested, labels in training]

    def adapted(keep: Sequence[int]) -> tuple[EncoderAdapter, ModelEncoder]:
        examples = from_catalogue + [e for k in keep for e in per_document[k]]
        adapter = tuner.fit(load_base_model(settings), examples, anchors)
        model = inference_model(load_base_model(settings), settings, adapter)
        return adapter, ModelEncoder(model, batch_size=settings.batch_size)

    n = len(training)
    features: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    folds = max(2, min(folds, n))
    for fold in range(folds):
        held = [k for k in range(n) if k % folds == fold]
        _, encoder = adapted([k for k in range(n) if k % folds != fold])
        index = IndicatorIndex(catalogue, encoder)
        for k in held:
            ingested = training[k][0]
            features[k] = document_features(index, encoder, ingested.document.metadata.policy_type, ingested.passages)
    adapter, encoder = adapted(range(n))
    docs = [LabelledDocument(ingested, labels, *features[k]) for k, (ingested, labels) in enumerate(training)]
    return docs, adapter, encoder


def _scored(doc: LabelledDocument, model: EvidenceModel, index: IndicatorIndex) -> ScoredDocument:
    d = doc.ingested.document
    return score_features(
        index, model, d.name, d.doc_id, d.metadata.policy_type, doc.ingested.passages, doc.features, doc.elements
    )


COVERAGE_WEIGHTS = tuple(round(1.0 + 0.1 * k, 1) for k in range(11))  # 1.0 .. 2.0
# Cross-validation is repeated over this many random document splits and metrics.json reports each, so a change
# to the models can be told apart from the luck of one split (in experiments, splits differed by up to 0.016).
CV_REPEATS = 4


def _macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return float(f1_score(truth, predicted, labels=list(STATUSES), average="macro", zero_division=0))


def choose_coverage_weight(held_out: np.ndarray, labels: Sequence[str]) -> float:
    """The ``DecisionModel.coverage_weight`` with the best macro-F1 on held-out probabilities (smallest on ties).

    The most probable class maximises accuracy, which with "missing" the majority leans towards it; a
    pre-screen wants met and partial found (macro-F1 weighs the three equally). Learned only from predictions on
    sample documents the models did not see (measured: cross-validated macro-F1 0.772 -> 0.781).
    """
    best_weight, best_f1 = 1.0, -1.0
    for weight in COVERAGE_WEIGHTS:
        f1 = _macro_f1(labels, weighted_statuses(held_out, weight))
        if f1 > best_f1 + 1e-9:
            best_weight, best_f1 = weight, f1
    return best_weight


@dataclass
class OutOfFold:
    """Decision-stage rows of every training document, each scored by an evidence model fitted without it."""

    features: np.ndarray  # (documents x indicators, DECISION_FEATURES)
    labels: list[str]
    areas: list[str]
    groups: np.ndarray  # the document each row comes from
    passage_truth: np.ndarray
    passage_pred: np.ndarray


def fit_evidence(parts: Sequence[Rows]) -> EvidenceModel:
    """The evidence model fitted on catalogue and/or document rows."""
    return EvidenceModel().fit(
        np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
    )


def out_of_fold(
    docs: list[LabelledDocument],
    catalogue: Catalogue,
    index: IndicatorIndex,
    rows: tuple[Rows, list[Rows]],
    doc_folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> OutOfFold:
    """Fit the evidence model once per fold of documents and score the held-out documents with it.

    ``rows`` are the catalogue's training rows and each document's (:func:`catalogue_rows`, :func:`document_rows`).
    """
    catalogue_part, doc_rows = rows
    areas = [ind.area for ind in catalogue.indicators]
    feats: list[np.ndarray] = []
    labels: list[str] = []
    row_areas: list[str] = []
    groups: list[int] = []
    truth, pred = [], []
    for train_idx, test_idx in doc_folds:
        model = fit_evidence([catalogue_part, *[doc_rows[k] for k in train_idx]])
        for k in test_idx:
            scored = _scored(docs[k], model, index)
            truth.append(doc_rows[k][1])
            pred.append(scored.evidence.reshape(-1))
            feats.append(decision_features(index, [scored]))
            labels.extend(
                docs[k].labels[ind.id].expected if ind.id in docs[k].labels else "missing"
                for ind in catalogue.indicators
            )
            row_areas.extend(areas)
            groups.extend([int(k)] * len(areas))
    return OutOfFold(np.vstack(feats), labels, row_areas, np.array(groups), np.concatenate(truth), np.concatenate(pred))


def held_out_decisions(
    oof: OutOfFold, area_names: Sequence[str], doc_folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """(rows, 3) decision-model probabilities, each row from a model fitted without its document.

    The decision stage holds out the same documents as the evidence stage did (``doc_folds``).
    """
    held = np.zeros((len(oof.labels), len(STATUSES)), dtype=np.float32)
    for train_docs, test_docs in doc_folds:
        tr, te = np.flatnonzero(np.isin(oof.groups, train_docs)), np.flatnonzero(np.isin(oof.groups, test_docs))
        model = DecisionModel(area_names).fit(oof.features[tr], [oof.areas[j] for j in tr], [oof.labels[j] for j in tr])
        held[te] = model.predict_proba(oof.features[te], [oof.areas[j] for j in te])
    return held


def random_split_macro_f1(
    docs: list[LabelledDocument],
    catalogue: Catalogue,
    index: IndicatorIndex,
    rows: tuple[Rows, list[Rows]],
    *,
    folds: int,
    seed: int,
) -> float:
    """Cross-validated macro-F1 of the whole matcher over one random split of the documents into folds.

    The coverage weight is chosen on the held-out rows, as in training.
    """
    doc_folds = list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(len(docs))))
    oof = out_of_fold(docs, catalogue, index, rows, doc_folds)
    held = held_out_decisions(oof, sorted(catalogue.areas), doc_folds)
    return _macro_f1(oof.labels, weighted_statuses(held, choose_coverage_weight(held, oof.labels)))


def fit(
    catalogue: Catalogue,
    docs: list[LabelledDocument],
    index: IndicatorIndex,
    *,
    folds: int = DECISION_FOLDS,
    cv_repeats: int = CV_REPEATS,
) -> tuple[EvidenceModel, DecisionModel, dict[str, Any]]:
    """Fit both models; returns them and cross-validated metrics on the sample policies.

    ``cv_repeats`` random document splits are cross-validated as well, for metrics only: the fitted models are
    the same whatever its value.
    """
    folds = max(2, min(folds, len(docs)))
    rows = (catalogue_rows(index), [document_rows(d, catalogue) for d in docs])
    doc_folds = list(GroupKFold(n_splits=folds).split(np.arange(len(docs)), groups=np.arange(len(docs))))
    oof = out_of_fold(docs, catalogue, index, rows, doc_folds)
    area_names = sorted(catalogue.areas)
    held_out = held_out_decisions(oof, area_names, doc_folds)
    decision = DecisionModel(area_names).fit(oof.features, oof.areas, oof.labels)
    decision.coverage_weight = choose_coverage_weight(held_out, oof.labels)
    evidence = fit_evidence([rows[0], *rows[1]])
    splits = [random_split_macro_f1(docs, catalogue, index, rows, folds=folds, seed=s) for s in range(cv_repeats)]
    metrics = {
        "cv_folds": folds,
        "documents": len(docs),
        "passages": int(sum(len(d.ingested.passages) for d in docs)),
        "passage_rows": len(oof.passage_truth),
        "passage_positives": int(oof.passage_truth.sum()),
        "catalogue_rows": len(rows[0][1]),
        "cv_passage_auc": round(float(roc_auc_score(oof.passage_truth, oof.passage_pred)), 4),
        "cv_macro_f1_3class": round(_macro_f1(oof.labels, decision.statuses(held_out)), 4),
        "cv_macro_f1_3class_unweighted": round(_macro_f1(oof.labels, weighted_statuses(held_out, 1.0)), 4),
        "cv_macro_f1_3class_random_splits": [round(f, 4) for f in splits],
        "decision_coverage_weight": decision.coverage_weight,
        "label_counts": {s: oof.labels.count(s) for s in STATUSES},
    }
    return evidence, decision, metrics


def train(
    settings: Settings,
    docs_dir: Path,
    labels_path: Path,
    out_dir: Path,
    *,
    reviews: list[Any] | None = None,
    tuner: EncoderTuner | None = None,
) -> dict[str, Any]:
    """Rebuild ``out_dir/encoder_adapter.npz``, ``out_dir/matcher.joblib`` and ``metrics.json``; returns the metrics.

    ``reviews`` (signed-off assessor decisions) are added to the sample policies as further labelled documents.
    ``tuner`` sets how the encoder is adapted (default :class:`EncoderTuner` parameters).
    """
    from pipeline.catalogue import load_catalogue

    catalogue = load_catalogue(settings.catalogue_path)
    files = labelled_files(docs_dir, labels_path, catalogue.ids)
    review_docs, skipped = review_files(reviews or [])
    files.update(review_docs)
    if len(files) < MIN_TRAINING_DOCUMENTS:
        # refused now rather than after the encoder has been adapted on next to nothing
        raise ConfigError(
            f"training needs at least {MIN_TRAINING_DOCUMENTS} labelled documents (the models are cross-validated "
            f"by document); {len(files)} of the files in {docs_dir} have rows in {labels_path.name}"
        )
    usable_folder(out_dir, "models folder", "QPM_MODELS_DIR (or --models-dir)")  # now, not after the training
    tuner = tuner or EncoderTuner()
    docs, adapter, encoder = cross_fitted_documents(settings, catalogue, read_training_files(files, settings), tuner)
    index = IndicatorIndex(catalogue, encoder)
    evidence, decision, metrics = fit(catalogue, docs, index)
    metrics["encoder_adapter"] = {
        "fingerprint": adapter.fingerprint(),
        "int8": settings.encoder_int8,
        "rank": tuner.rank,
        "epochs": tuner.epochs,
        "cross_fitting_folds": ENCODER_FOLDS,
    }
    metrics["review_documents"] = len(review_docs)
    metrics["review_labels_skipped"] = skipped
    metrics["trained_on"] = date.today().isoformat()
    metrics["environment"] = runtime_environment()
    metrics["catalogue"] = catalogue.fingerprint()
    bundle = {
        "format": FORMAT_VERSION,
        "evidence": evidence,
        "decision": decision,
        "passage_features": PASSAGE_FEATURES,
        "decision_features": DECISION_FEATURES,
        "max_elements": MAX_ELEMENTS,
        "model_id": settings.embedding_model_id,
        "adapter": adapter.fingerprint(),
        "encoder_int8": settings.encoder_int8,
        "catalogue": catalogue.fingerprint(),
        "metrics": metrics,
    }
    # the adapter first: a matcher file is only ever beside the adapter it was trained with, or beside none
    adapter.save(out_dir / adapter_path(settings).name)
    tmp = out_dir / (MODEL_FILE + ".tmp")
    joblib.dump(bundle, tmp, compress=3)
    tmp.replace(out_dir / MODEL_FILE)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def load_matcher(settings: Settings, catalogue: Catalogue, encoder: TextEncoder) -> Matcher:
    """The trained matcher from ``settings.models_dir``; a clear error when it is missing or incompatible."""
    path = settings.models_dir / MODEL_FILE
    if not path.exists():
        raise ModelUnavailableError(f"no trained matcher at {path}: run `qpm-screen train` (or `make train`)")
    bundle = joblib.load(path)
    if (
        bundle.get("format") != FORMAT_VERSION
        or tuple(bundle.get("passage_features", ())) != PASSAGE_FEATURES
        or tuple(bundle.get("decision_features", ())) != DECISION_FEATURES
    ):
        raise ModelUnavailableError(f"{path} was built by another version of the tool: run `qpm-screen train`")
    adapter = current_adapter(settings)
    if bundle.get("adapter") != (adapter.fingerprint() if adapter else None):
        raise ModelUnavailableError(
            f"{path} was trained with another encoder adapter than {adapter_path(settings)}: run `qpm-screen train`"
        )
    if bundle.get("encoder_int8") != settings.encoder_int8:
        raise ModelUnavailableError(
            f"{path} was trained with encoder_int8={bundle.get('encoder_int8')}: set QPM_ENCODER_INT8 to match, "
            "or run `qpm-screen train`"
        )
    return Matcher(
        catalogue,
        encoder,
        bundle["evidence"],
        bundle["decision"],
        evidence_per_indicator=settings.evidence_per_indicator,
    )
