"""The 8-bit encoder gives a text the same vector whatever is encoded beside it, close to the float model's."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.embed import encode_with, load_base_model
from pipeline.errors import ConfigError
from pipeline.quantized_encoder import QuantizedEncoder

pytestmark = pytest.mark.slow

TEXTS = [
    "We will only share what you tell us without your consent if someone is at risk of serious harm.",
    "Complaints are acknowledged within five working days.",
    "Complaints are answered within twenty working days.",  # same token count as the line above
    "Safeguarding",
    "Advocates receive supervision every month and an annual appraisal against the advocacy competences.",
    "  Our equality monitoring data is reviewed by the board each year.  ",
    "We do not carry out DBS checks.",
    "The advocate acts on the person's instructions, not on what others think is best for them. " * 3,
]


@pytest.fixture(scope="module")
def float_model():
    return load_base_model(Settings())


@pytest.fixture(scope="module")
def encoder(float_model) -> QuantizedEncoder:
    return QuantizedEncoder(float_model)


def test_a_text_gets_the_same_vector_alone_and_in_any_batch(encoder, float_model) -> None:
    together = encoder.encode(TEXTS)
    order = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = encoder.encode([TEXTS[i] for i in order])
    assert np.array_equal(shuffled, together[order])
    for i, text in enumerate(TEXTS):
        assert np.array_equal(encoder.encode([text])[0], together[i])
    # among other texts too, including many of the same length, and split across forward passes
    crowd = [f"Complaint number {n} is acknowledged within five working days." for n in range(40)]
    mixed = encoder.encode(crowd + TEXTS[:3])
    assert np.array_equal(mixed[-3:], together[:3])
    assert np.array_equal(QuantizedEncoder(float_model, tokens_per_call=16).encode(TEXTS), together)


def test_vectors_are_unit_length_and_close_to_the_float_models(encoder, float_model) -> None:
    got = encoder.encode(TEXTS)
    want = encode_with(float_model, TEXTS, batch_size=4)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * want).sum(axis=1)
    assert cosine.min() > 0.98, cosine
    # and still a sentence encoder: the two complaint sentences are nearer each other than to safeguarding
    assert got[1] @ got[2] > got[1] @ got[3]


def test_long_texts_are_cut_where_the_float_model_cuts_them(encoder, float_model) -> None:
    long = " ".join(f"word{n}" for n in range(2000))
    cut = " ".join(f"word{n}" for n in range(3000))  # the same first 256 tokens
    got = encoder.encode([long, cut])
    assert np.array_equal(got[0], got[1])
    assert float(got[0] @ encode_with(float_model, [long], 1)[0]) > 0.98


def test_nothing_to_encode_gives_an_empty_matrix(encoder) -> None:
    assert encoder.encode([]).shape == (0, 384)


def test_a_model_it_cannot_reproduce_is_refused_with_the_float_setting_named(float_model) -> None:
    pooling = float_model[1]
    before = pooling.pooling_mode
    pooling.pooling_mode = "cls"
    try:
        with pytest.raises(ConfigError, match=r"cls pooling\).*QPM_ENCODER_INT8=off"):
            QuantizedEncoder(float_model)
    finally:
        pooling.pooling_mode = before
