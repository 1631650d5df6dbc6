"""Training inputs: labelled sample files and assessors' signed-off reviews."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.match import weighted_statuses
from pipeline.train import catalogue_rows, choose_coverage_weight, labelled_files, review_files


@dataclass
class Review:
    document: str
    indicator: str
    expected: str
    evidence: str
    document_sha256: str = ""
    document_path: str = ""


def test_every_sample_policy_is_labelled_for_every_indicator() -> None:
    files = labelled_files(PROJECT_ROOT / "sample_policies" / "docs", PROJECT_ROOT / "sample_policies" / "labels.csv")
    assert len(files) == len(list((PROJECT_ROOT / "sample_policies" / "docs").iterdir())) >= 12
    assert all(len(labels) == 60 for labels in files.values())


def test_reviews_become_labels_only_for_files_that_still_match(tmp_path) -> None:
    same = tmp_path / "same.txt"
    same.write_text("We keep information confidential.")
    changed = tmp_path / "changed.txt"
    changed.write_text("new content")
    digest = hashlib.sha256(same.read_bytes()).hexdigest()
    rows = [
        Review("same.txt", "CONF-01", "met", "We keep information confidential.", digest, str(same)),
        Review("same.txt", "CONF-02", "missing", "", digest, str(same)),
        Review("changed.txt", "CONF-01", "met", "x", "0" * 64, str(changed)),
        Review("gone.txt", "CONF-01", "met", "x", "", str(tmp_path / "gone.txt")),
        Review("nowhere.txt", "CONF-01", "met", "x"),
    ]
    files, skipped = review_files(rows)
    assert skipped == 3
    assert list(files) == [same]
    assert {k: v.expected for k, v in files[same].items()} == {"CONF-01": "met", "CONF-02": "missing"}


def test_catalogue_rows_never_compare_a_sentence_with_itself() -> None:
    from pipeline.catalogue import build_catalogue
    from pipeline.match import PASSAGE_FEATURES, IndicatorIndex
    from tests.fakes import BagOfWordsEncoder

    entry = {
        "id": "CONF-01",
        "area": "CONF",
        "title": "T",
        "must_say": "M",
        "elements": [{"id": "a", "text": "alpha", "exemplars": ["alpha beta"]}],
        "exemplars": ["apple banana", "cherry damson", "elder fig", "grape hazel", "iris juniper", "kiwi lemon"],
        "key_terms": ["alpha"],
        "policy_types": ["confidentiality"],
        "level": "essential",
        "what_to_add": "Add.",
    }
    cat = build_catalogue({"id": "t", "version": "1", "areas": {"CONF": "C"}}, [("t", entry)])
    X, _, _ = catalogue_rows(IndicatorIndex(cat, BagOfWordsEncoder()))
    exemplar_max = X[:, PASSAGE_FEATURES.index("exemplar_max")]
    assert exemplar_max.max() < 0.99  # a sentence identical to itself would score 1.0


def test_coverage_weight_is_learned_from_held_out_probabilities() -> None:
    # Probabilities (met, partial, missing) where "missing" narrowly wins rows that are really partial.
    probs = np.array([[0.1, 0.42, 0.48]] * 4 + [[0.05, 0.1, 0.85]] * 4 + [[0.7, 0.2, 0.1]] * 2, dtype=np.float32)
    labels = ["partial"] * 4 + ["missing"] * 4 + ["met"] * 2
    assert weighted_statuses(probs, 1.0)[:4] == ["missing"] * 4
    weight = choose_coverage_weight(probs, labels)
    assert 1.1 <= weight <= 2.0  # 0.42 * w must beat 0.48, and 0.1 * w must not beat 0.85
    assert weighted_statuses(probs, weight) == labels


def test_coverage_weight_stays_at_one_when_the_most_probable_class_is_already_right() -> None:
    probs = np.array([[0.1, 0.3, 0.6], [0.2, 0.6, 0.2], [0.8, 0.1, 0.1]], dtype=np.float32)
    assert choose_coverage_weight(probs, ["missing", "partial", "met"]) == 1.0


class _FakeModel:
    """Stands in for the sentence encoder: hashed bag of words."""

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        from tests.fakes import BagOfWordsEncoder

        return BagOfWordsEncoder().encode(list(texts))


class _RecordingTuner:
    """Records which texts each adapter was trained on."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []
        self.rank, self.epochs = 1, 1

    def fit(self, model: object, examples: list, anchors: np.ndarray) -> object:
        self.seen.append({e.text for e in examples})

        class _Adapter:
            def apply(self, model: object) -> None:
                pass

        return _Adapter()


def test_no_training_document_is_featurised_by_an_adapter_that_saw_it(monkeypatch, tmp_path) -> None:
    import pipeline.train as train_module
    from pipeline.catalogue import load_catalogue
    from pipeline.config import Settings

    settings = Settings(cache_dir=tmp_path, encoder_int8=False)  # the fake model has no layers to quantise
    monkeypatch.setattr(train_module, "load_base_model", lambda s: _FakeModel())
    featurised_by: dict[str, int] = {}
    real_features = train_module.document_features

    def spy(index, encoder, policy_type, passages):
        featurised_by[passages[0].doc_id] = len(tuner.seen) - 1
        return real_features(index, encoder, policy_type, passages)

    monkeypatch.setattr(train_module, "document_features", spy)
    files = dict(
        list(
            labelled_files(
                PROJECT_ROOT / "sample_policies" / "docs", PROJECT_ROOT / "sample_policies" / "labels.csv"
            ).items()
        )[:5]
    )
    training = train_module.read_training_files(files, settings)
    catalogue = load_catalogue(settings.catalogue_path)
    tuner = _RecordingTuner()
    docs, _, _ = train_module.cross_fitted_documents(settings, catalogue, training, tuner, folds=3)  # type: ignore[arg-type]
    assert len(tuner.seen) == 4  # three fold adapters, then the final one on everything
    assert len(docs) == 5 and all(d.features.shape[0] == len(d.ingested.passages) for d in docs)
    for ingested, _ in training:
        texts = set(train_module.passage_texts(ingested.passages))
        fold = featurised_by[ingested.document.doc_id]
        assert fold < 3 and not texts & tuner.seen[fold] - {e.text for e in train_module.catalogue_examples(catalogue)}
        assert texts <= tuner.seen[3]


def test_a_matcher_is_only_loaded_beside_the_encoder_it_was_trained_with(tmp_path) -> None:
    import joblib

    from pipeline.adapt import ADAPTER_FILE, EncoderAdapter
    from pipeline.catalogue import load_catalogue
    from pipeline.config import Settings
    from pipeline.errors import ModelUnavailableError
    from pipeline.match import DECISION_FEATURES, PASSAGE_FEATURES
    from pipeline.train import FORMAT_VERSION, MODEL_FILE, load_matcher
    from tests.fakes import BagOfWordsEncoder
    from tests.flow_support import fitted_models

    catalogue = load_catalogue(Settings().catalogue_path)
    evidence, decision = fitted_models(list(catalogue.areas))
    bundle = {
        "format": FORMAT_VERSION,
        "evidence": evidence,
        "decision": decision,
        "passage_features": PASSAGE_FEATURES,
        "decision_features": DECISION_FEATURES,
        "adapter": None,
        "encoder_int8": False,
    }
    joblib.dump(bundle, tmp_path / MODEL_FILE)
    plain = Settings(models_dir=tmp_path, encoder_int8=False)
    assert load_matcher(plain, catalogue, BagOfWordsEncoder()).catalogue is catalogue
    with pytest.raises(ModelUnavailableError, match="QPM_ENCODER_INT8"):
        load_matcher(Settings(models_dir=tmp_path, encoder_int8=True), catalogue, BagOfWordsEncoder())
    # a matcher whose decision model reads other features is refused before it could mis-score
    joblib.dump({**bundle, "decision_features": DECISION_FEATURES[:-1]}, tmp_path / MODEL_FILE)
    with pytest.raises(ModelUnavailableError, match="another version of the tool"):
        load_matcher(plain, catalogue, BagOfWordsEncoder())
    joblib.dump(bundle, tmp_path / MODEL_FILE)
    EncoderAdapter(1, 1.0, {"x": (np.zeros((1, 2), np.float32), np.zeros((2, 1), np.float32))}).save(
        tmp_path / ADAPTER_FILE
    )
    with pytest.raises(ModelUnavailableError, match="another encoder adapter"):
        load_matcher(plain, catalogue, BagOfWordsEncoder())


def test_repeated_random_splits_are_reported_and_leave_the_fitted_models_alone(monkeypatch, tmp_path) -> None:
    import pipeline.train as train_module
    from pipeline.catalogue import load_catalogue
    from pipeline.config import Settings
    from pipeline.match import DECISION_FEATURES, DecisionModel, IndicatorIndex, document_features
    from pipeline.train import LabelledDocument, fit, read_training_files
    from tests.fakes import BagOfWordsEncoder

    # a smaller decision model: this test is about how training splits the documents, not about the trees
    monkeypatch.setattr(train_module, "DecisionModel", lambda areas: DecisionModel(areas, max_iter=20, n_estimators=2))
    settings = Settings(cache_dir=tmp_path)
    catalogue = load_catalogue(settings.catalogue_path)
    encoder = BagOfWordsEncoder()
    index = IndicatorIndex(catalogue, encoder)
    files = labelled_files(PROJECT_ROOT / "sample_policies" / "docs", PROJECT_ROOT / "sample_policies" / "labels.csv")
    docs = [
        LabelledDocument(
            ingested,
            labels,
            *document_features(index, encoder, ingested.document.metadata.policy_type, ingested.passages),
        )
        for ingested, labels in read_training_files(dict(list(files.items())[:8]), settings)
    ]
    evidence0, decision0, metrics0 = fit(catalogue, docs, index, folds=3, cv_repeats=0)
    evidence2, decision2, metrics2 = fit(catalogue, docs, index, folds=3, cv_repeats=2)
    assert metrics0["cv_macro_f1_3class_random_splits"] == []
    splits = metrics2["cv_macro_f1_3class_random_splits"]
    assert len(splits) == 2 and all(0.0 <= f <= 1.0 for f in splits)
    assert metrics0["cv_macro_f1_3class"] == metrics2["cv_macro_f1_3class"]
    # the repeats are measurement only: the shipped models do not depend on them
    assert np.array_equal(evidence0.model_[-1].coef_, evidence2.model_[-1].coef_)
    rows = np.random.default_rng(0).uniform(size=(len(catalogue.ids), len(DECISION_FEATURES))).astype(np.float32)
    areas = [ind.area for ind in catalogue.indicators]
    assert np.array_equal(decision0.predict_proba(rows, areas), decision2.predict_proba(rows, areas))
    assert decision0.coverage_weight == decision2.coverage_weight


def test_training_on_too_few_labelled_documents_is_refused_before_any_work(tmp_path) -> None:
    from pipeline.config import Settings
    from pipeline.errors import ConfigError
    from pipeline.train import MIN_TRAINING_DOCUMENTS, train

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "policy.txt").write_text("We keep information confidential.")
    labels = tmp_path / "labels.csv"
    labels.write_text("document,indicator,expected,evidence\npolicy.txt,CONF-01,met,\nother.txt,CONF-01,met,\n")
    with pytest.raises(ConfigError, match=f"at least {MIN_TRAINING_DOCUMENTS} labelled documents.*1 of the files"):
        train(Settings(cache_dir=tmp_path / "cache"), docs, labels, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_a_models_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path) -> None:
    from pipeline.config import Settings
    from pipeline.errors import ConfigError
    from pipeline.train import train

    class NoTraining:  # reaching the encoder adaptation would mean the check came too late
        def __getattr__(self, name: str) -> None:
            raise AssertionError("training started")

    (tmp_path / "models").write_text("a file where the models folder should be")
    samples = PROJECT_ROOT / "sample_policies"
    with pytest.raises(ConfigError, match=r"models folder .* cannot be used"):
        train(
            Settings(cache_dir=tmp_path / "cache"),
            samples / "docs",
            samples / "labels.csv",
            tmp_path / "models",
            tuner=NoTraining(),  # type: ignore[arg-type]
        )
