"""The shipped catalogue is complete and valid; broken catalogues fail with specific messages."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.catalogue import import_spreadsheet, load_catalogue, write_catalogue_file
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.errors import CatalogueError

DOMAIN = PROJECT_ROOT.parent / "shared" / "domain" / "qpm-indicators.md"
EXPECTED = {"CONF": 10, "SAFE": 13, "COMP": 10, "EQD": 9, "IND": 3, "PUR": 3, "EMP": 4, "ACC": 3, "SUP": 5}


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(Settings().catalogue_path)


def test_shipped_catalogue_has_every_indicator_of_the_domain_reference(catalogue) -> None:
    expected_ids = {f"{area}-{n:02d}" for area, count in EXPECTED.items() for n in range(1, count + 1)}
    assert set(catalogue.ids) == expected_ids
    assert len(catalogue.ids) == 60
    if DOMAIN.exists():  # the shared reference sits beside the repository in development and CI
        domain_ids = set(re.findall(r"^#### ([A-Z]+-\d\d):", DOMAIN.read_text(encoding="utf-8"), flags=re.M))
        assert domain_ids == set(catalogue.ids)


def test_every_indicator_is_rich_enough_to_match(catalogue) -> None:
    for ind in catalogue.indicators:
        assert len(ind.exemplars) >= 6, ind.id
        assert 2 <= len(ind.elements) <= 4, ind.id
        assert all(e.exemplars for e in ind.elements), ind.id
        assert ind.key_terms and ind.policy_types and ind.what_to_add, ind.id
        assert ind.level in {"essential", "conditional", "good_practice"}
        assert (ind.condition is not None) == (ind.level == "conditional"), ind.id


def test_notice_says_it_is_not_the_official_text(catalogue) -> None:
    assert "not NDTi's official" in catalogue.notice


def _write(tmp_path: Path, entries: list[dict]) -> Path:
    meta = yaml.safe_load((Settings().catalogue_path / "catalogue.yaml").read_text())
    path = tmp_path / "cat.yaml"
    path.write_text(yaml.safe_dump({**meta, "indicators": entries}))
    return path


def _entry(ind_id: str = "CONF-01", **changes):
    base = {
        "id": ind_id,
        "area": "CONF",
        "title": "T",
        "must_say": "M",
        "elements": [{"id": "a", "text": "A", "exemplars": ["x"]}, {"id": "b", "text": "B", "exemplars": ["y"]}],
        "exemplars": [f"example {k}" for k in range(6)],
        "key_terms": ["term"],
        "policy_types": ["confidentiality"],
        "level": "essential",
        "what_to_add": "Add it.",
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_entry(), _entry()], "duplicate id CONF-01"),
        ([_entry(title="")], "missing field(s) title"),
        ([_entry(area="XYZ")], "unknown area 'XYZ'"),
        ([_entry(level="vital")], "level must be one of"),
        ([_entry(exemplars=["one"])], "at least 6 exemplars"),
        ([_entry(policy_types=["astrology"])], "unknown policy type(s) astrology"),
    ],
)
def test_invalid_catalogues_are_refused_with_the_reason(tmp_path, entries, message) -> None:
    with pytest.raises(CatalogueError) as err:
        load_catalogue(_write(tmp_path, entries))
    assert message in str(err.value)


def test_a_single_file_catalogue_loads(tmp_path) -> None:
    cat = load_catalogue(_write(tmp_path, [_entry(), _entry("CONF-02")]))
    assert cat.ids == ["CONF-01", "CONF-02"]


def test_fingerprint_changes_when_any_text_changes(tmp_path) -> None:
    a = load_catalogue(_write(tmp_path, [_entry()])).fingerprint()
    b = load_catalogue(_write(tmp_path, [_entry(must_say="Something else")])).fingerprint()
    assert a != b


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_spreadsheet_import_round_trips_to_a_valid_catalogue(tmp_path, suffix) -> None:
    rows = [
        {
            "id": "CONF-01",
            "area": "CONF",
            "title": "Commitment",
            "must_say": "Information is confidential to the organisation.",
            "level": "essential",
            "what_to_add": "Say who the policy binds.",
            "exemplars": ";".join(f"sentence {k}" for k in range(6)),
            "key_terms": "confidential; need to know",
            "policy_types": "confidentiality",
            "element_1": "Binds staff and volunteers",
            "element_1_exemplars": "All staff follow it; Volunteers too",
            "element_2": "Breaches are disciplinary",
        }
    ]
    sheet = tmp_path / f"team{suffix}"
    frame = pd.DataFrame(rows)
    frame.to_csv(sheet, index=False) if suffix == ".csv" else frame.to_excel(sheet, index=False)
    meta = {"id": "team", "version": "1", "areas": {"CONF": "Confidentiality"}}
    meta, entries = import_spreadsheet(sheet, meta)
    out = tmp_path / "team.yaml"
    write_catalogue_file(meta, entries, out)
    cat = load_catalogue(out)
    ind = cat.get("CONF-01")
    assert ind.key_terms == ("confidential", "need to know")
    assert [e.text for e in ind.elements] == ["Binds staff and volunteers", "Breaches are disciplinary"]
    assert ind.elements[0].exemplars == ("All staff follow it", "Volunteers too")


def test_spreadsheet_import_reports_bad_rows(tmp_path) -> None:
    sheet = tmp_path / "bad.csv"
    pd.DataFrame([{"id": "X-1", "area": "NOPE", "title": "t"}]).to_csv(sheet, index=False)
    with pytest.raises(CatalogueError, match="missing field"):
        import_spreadsheet(sheet, {"id": "t", "version": "1", "areas": {"CONF": "C"}})
