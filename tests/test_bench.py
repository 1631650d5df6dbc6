"""The benchmark's parts measure what they say: extraction apart from encoding, and scoring without encoding.

Figures are printed by ``qpm-screen bench``, never asserted here; these tests check what each timing covers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import bench, embed
from pipeline.config import Settings
from pipeline.screen import screen
from tests import flow_support


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache")


def test_bare_cost_reads_every_file_then_encodes_every_passage_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    submission = flow_support.make_submission(tmp_path / "in")
    monkeypatch.setattr(embed, "Encoder", lambda s, cache, batch_size: flow_support.HashingEncoder(s))
    before = flow_support.HashingEncoder.calls
    cost = bench.bare_cost(settings, submission)
    docs = bench.read_folder(settings, submission)
    assert len(docs) == 3
    assert cost.pages == sum(d.document.pages for d in docs)
    assert cost.passages == sum(len(d.passages) for d in docs) > 0
    assert flow_support.HashingEncoder.calls - before == len({p.text for d in docs for p in d.passages})
    assert cost.extract_seconds > 0 and cost.encode_seconds > 0
    assert cost.seconds == cost.extract_seconds + cost.encode_seconds


def test_scoring_cost_times_matching_with_nothing_left_to_encode(settings: Settings, tmp_path: Path) -> None:
    submission = flow_support.make_submission(tmp_path / "in", variant="\nBench.\n")
    # how many texts one screening embeds (passages and headings), on a matcher that has seen none of them
    fresh = flow_support.build_fake_matcher(settings)
    before = flow_support.HashingEncoder.calls
    screen(fresh, "once", bench.read_folder(settings, submission))
    once = flow_support.HashingEncoder.calls - before
    assert once > 0

    matcher = flow_support.build_fake_matcher(settings)
    before = flow_support.HashingEncoder.calls
    seconds = bench.scoring_cost(matcher, settings, submission)
    assert seconds > 0
    # only the untimed first screening encoded; the timed repeats found every vector in memory
    assert flow_support.HashingEncoder.calls - before == once


def test_linearity_compares_seconds_per_page_of_the_two_batches() -> None:
    assert bench._linearity(20.0, 100, 10.0, 50) == pytest.approx(1.0)
    assert bench._linearity(30.0, 100, 10.0, 50) == pytest.approx(1.5)  # the bigger batch costs more per page
    assert bench._linearity(18.0, 100, 10.0, 48) == 0.86
    assert bench._linearity(18.0, 100, 0.0, 0) is None
