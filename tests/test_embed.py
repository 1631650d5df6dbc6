"""The packaged encoder loads offline, caches vectors on disk, and fails clearly when missing."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.embed import Encoder, model_path, runtime_environment
from pipeline.errors import ModelUnavailableError


def test_hub_is_switched_off_for_the_whole_process() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_missing_model_package_gives_an_install_hint() -> None:
    with pytest.raises(ModelUnavailableError, match="make install"):
        model_path(Settings(embedding_package="no_such_model_package_xyz"))


def test_runtime_environment_names_the_cpu_and_the_extensions_that_change_kernels(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    block = "processor\t: {n}\nmodel name\t: Example CPU {n}\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    cpuinfo.write_text(block.format(n=0) + "\n" + block.format(n=1).replace("avx512f", ""))
    env = runtime_environment(cpuinfo)
    assert env["cpu"] == "Example CPU 0"
    assert env["simd"] == ["avx2", "avx512f", "avx512_vnni"]
    assert env["torch_threads"] >= 1 and env["torch"]
    # elsewhere than Linux there is no cpuinfo: the platform's name, and no flags rather than an error
    bare = runtime_environment(tmp_path / "missing")
    assert bare["simd"] == [] and bare["cpu"]


@pytest.mark.slow
def test_vectors_are_unit_length_meaningful_and_cached(tmp_path) -> None:
    settings = Settings()
    cache = tmp_path / "emb.sqlite"
    first = Encoder(settings, cache)
    texts = [
        "We will share information if someone is at risk of serious harm.",
        "Information may be disclosed without consent where a person is in danger.",
        "The car park is closed on Sundays.",
    ]
    vectors = first.encode(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert first.encoded == 3
    first.close()
    second = Encoder(settings, cache)
    again = second.encode(texts)
    assert second.encoded == 0  # all three came from the disk cache
    assert np.allclose(again, vectors)


def test_a_text_gets_the_same_vector_whatever_is_encoded_beside_it() -> None:
    # The cache keys vectors by text alone, and a resumed batch must score as an uninterrupted one: with the
    # default (float32) encoder the batch around a text must not change its vector.
    encoder = Encoder(Settings(), batch_size=16)
    text = "We will share information without consent if someone is at risk of serious harm."
    others = [
        f"Clause {k}: the committee reviews this policy every {k + 1} years and records its decision."
        for k in range(20)
    ]
    alone = encoder._run_model([text])
    among = encoder._run_model([*others[:9], text, *others[9:], "A much longer passage " * 12])
    assert np.abs(alone[0] - among[9]).max() < 1e-5
