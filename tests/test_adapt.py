"""The encoder adapter: training moves sentences towards their indicator, saving is lossless, ids follow it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.adapt import (
    ADAPTER_FILE,
    EncoderAdapter,
    EncoderTuner,
    TuningExample,
    catalogue_examples,
    document_examples,
    initial_anchors,
)
from pipeline.catalogue import load_catalogue
from pipeline.config import Settings
from pipeline.embed import ModelEncoder, encoder_id, inference_model, load_base_model
from pipeline.errors import ConfigError, ModelUnavailableError
from pipeline.quantized_encoder import QuantizedEncoder


def _adapter(
    seed: int = 0, names: tuple[str, ...] = ("0.model.encoder.layer.0.attention.self.query",)
) -> EncoderAdapter:
    rng = np.random.default_rng(seed)
    return EncoderAdapter(
        rank=2,
        scale=2.0,
        layers={
            n: (rng.normal(size=(2, 384)).astype(np.float32), rng.normal(size=(384, 2)).astype(np.float32))
            for n in names
        },
    )


def test_adapter_saves_and_loads_exactly_and_its_fingerprint_follows_the_weights(tmp_path) -> None:
    adapter = _adapter()
    adapter.save(tmp_path / ADAPTER_FILE)
    loaded = EncoderAdapter.load(tmp_path / ADAPTER_FILE)
    assert loaded.fingerprint() == adapter.fingerprint()
    for name, (a, b) in adapter.layers.items():
        assert np.array_equal(loaded.layers[name][0], a) and np.array_equal(loaded.layers[name][1], b)
    assert _adapter(seed=1).fingerprint() != adapter.fingerprint()
    assert not list(tmp_path.glob("*.tmp"))


def test_an_unreadable_adapter_file_gives_a_clear_error(tmp_path) -> None:
    path = tmp_path / ADAPTER_FILE
    path.write_bytes(b"not an npz file")
    with pytest.raises(ModelUnavailableError, match="qpm-screen train"):
        EncoderAdapter.load(path)


def test_an_adapter_for_other_layers_is_refused() -> None:
    model = torch.nn.ModuleDict({"dense": torch.nn.Linear(4, 4)})
    with pytest.raises(ModelUnavailableError, match="does not fit"):
        _adapter(names=("0.model.encoder.layer.9.missing",)).apply(model)  # type: ignore[arg-type]


def test_encoder_id_names_the_adapter_and_quantisation_in_use(tmp_path) -> None:
    settings = Settings(models_dir=tmp_path, encoder_int8=False)
    assert encoder_id(settings) == settings.embedding_model_id
    adapter = _adapter()
    adapter.save(tmp_path / ADAPTER_FILE)
    assert encoder_id(settings) == f"{settings.embedding_model_id}+lora:{adapter.fingerprint()}"
    quantised = Settings.from_env({"QPM_ENCODER_INT8": "yes"}, models_dir=tmp_path)
    assert encoder_id(quantised) == f"{settings.embedding_model_id}+lora:{adapter.fingerprint()}+int8token"
    assert Settings.from_env({"QPM_ENCODER_INT8": "off"}).encoder_int8 is False
    with pytest.raises(ConfigError, match="QPM_ENCODER_INT8"):
        Settings.from_env({"QPM_ENCODER_INT8": "maybe"})


def test_catalogue_examples_mark_own_indicator_and_near_misses() -> None:
    catalogue = load_catalogue(Settings().catalogue_path)
    examples = catalogue_examples(catalogue)
    first = catalogue.indicators[0]
    own = next(e for e in examples if e.text == first.exemplars[0])
    assert own.targets[0] == 1.0 and own.targets[1:].sum() == 0.0
    assert own.weights[0] == 1.0 and 0.0 < own.weights[1] < 1.0
    near = next(e for e in examples if e.text == first.near_misses[0])
    assert near.targets.sum() == 0.0 and near.weights[0] == 1.0 and near.weights[1:].sum() == 0.0


def test_document_examples_weaken_unlabelled_passages_of_present_indicators() -> None:
    evidence = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    present = np.array([True, False])
    first, second = document_examples(["evidence of A", "other text"], evidence, present, unlabelled_weight=0.3)
    assert first.targets.tolist() == [1.0, 0.0] and first.weights.tolist() == [1.0, 1.0]
    # A is covered somewhere, so this passage is only a weak negative for A; B is absent, a firm negative
    assert second.targets.tolist() == [0.0, 0.0] and second.weights.tolist() == pytest.approx([0.3, 1.0])


@pytest.mark.slow
def test_tuning_pulls_each_indicators_sentences_together_and_starts_from_the_base_model() -> None:
    settings = Settings()
    groups = {
        0: [
            "Complaints are acknowledged within five working days.",
            "We reply to your complaint in full within twenty working days.",
            "If you are unhappy with our answer you can ask for a review by a trustee.",
            "Stage two complaints are looked at by someone who was not involved.",
        ],
        1: [
            "Information may be shared without consent if someone is at risk of serious harm.",
            "We must pass on concerns about a child to children's services.",
            "A court order can require us to disclose your records.",
            "Only the manager can decide to break confidentiality, except in an emergency.",
        ],
    }
    examples = []
    for owner, texts in groups.items():
        for text in texts:
            targets = np.zeros(2, dtype=np.float32)
            targets[owner] = 1.0
            examples.append(TuningExample(text, targets, np.ones(2, dtype=np.float32)))
    texts = [t for group in groups.values() for t in group]
    base = ModelEncoder(load_base_model(settings))
    anchors = np.vstack([base.encode(groups[0]).mean(0), base.encode(groups[1]).mean(0)])
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)

    def separation(vectors: np.ndarray) -> float:
        sim = vectors @ vectors.T
        same = np.add.outer(np.arange(8) < 4, np.arange(8) < 4) != 1  # both in the same group
        np.fill_diagonal(same, False)
        other = np.add.outer(np.arange(8) < 4, np.arange(8) < 4) == 1
        return float(sim[same].mean() - sim[other].mean())

    before = base.encode(texts)
    tuner = EncoderTuner(epochs=4, batch_size=4, learning_rate=2e-3, seed=3)
    adapter = tuner.fit(load_base_model(settings), examples, anchors)
    assert tuner.fit(load_base_model(settings), examples, anchors).fingerprint() == adapter.fingerprint()
    tuned_model = load_base_model(settings)
    adapter.apply(tuned_model)
    after = ModelEncoder(tuned_model).encode(texts)
    assert separation(after) > separation(before) + 0.05
    # an update whose second factor is zero is the base model exactly
    zero = EncoderAdapter(
        adapter.rank, adapter.scale, {n: (a, np.zeros_like(b)) for n, (a, b) in adapter.layers.items()}
    )
    untouched = load_base_model(settings)
    zero.apply(untouched)
    assert np.allclose(ModelEncoder(untouched).encode(texts), before, atol=1e-6)
    assert initial_anchors(load_catalogue(settings.catalogue_path), base.encode).shape == (60, 384)


def test_the_quantised_encoder_carries_the_adapter_and_stays_close_to_the_float_one() -> None:
    texts = [
        "We will only share what you tell us without your consent if someone is at risk of serious harm.",
        "Complaints are acknowledged within five working days.",
    ]
    name = "0.model.encoder.layer.0.attention.self.query"
    rng = np.random.default_rng(1)
    adapter = EncoderAdapter(
        8,
        2.0,
        {name: (rng.normal(0, 0.2, (8, 384)).astype(np.float32), rng.normal(0, 0.2, (384, 8)).astype(np.float32))},
    )
    plain = ModelEncoder(inference_model(load_base_model(Settings()), Settings(encoder_int8=False), None))
    adapted = ModelEncoder(inference_model(load_base_model(Settings()), Settings(encoder_int8=False), adapter))
    quantised = inference_model(load_base_model(Settings()), Settings(encoder_int8=True), adapter)
    assert isinstance(quantised, QuantizedEncoder)
    got, want = ModelEncoder(quantised).encode(texts), adapted.encode(texts)
    assert (got * want).sum(axis=1).min() > 0.95  # close to the float encoder with the same adapter...
    # ...and closer to it than to the float encoder without the adapter, so the update survived quantisation
    assert (got * want).sum(axis=1).mean() > (got * plain.encode(texts)).sum(axis=1).mean()
