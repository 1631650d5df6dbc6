"""``qpm-screen indicators``: which catalogue each action reads, --json, and where an import may write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import Settings

HEADER = "id,area,title,must_say,level,what_to_add,exemplars,key_terms,policy_types,element_1\n"
ROW = "CONF-01,CONF,Commitment,Information stays confidential.,essential,Say who it binds.,a;b;c;d;e;f,confidential,"
ROW += "confidentiality,Binds staff\n"


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _catalogue(tmp_path: Path, *, valid: bool = True) -> Path:
    """A one-indicator single-file catalogue; when not ``valid`` its only indicator has no title."""
    meta = yaml.safe_load((Settings().catalogue_path / "catalogue.yaml").read_text())
    entry = {
        "id": "CONF-01",
        "area": "CONF",
        "title": "Commitment" if valid else "",
        "must_say": "M",
        "elements": [{"id": "a", "text": "A"}],
        "exemplars": [f"example {k}" for k in range(6)],
        "key_terms": ["term"],
        "policy_types": ["confidentiality"],
        "level": "essential",
        "what_to_add": "Add it.",
    }
    path = tmp_path / ("small.yaml" if valid else "broken.yaml")
    path.write_text(yaml.safe_dump({**meta, "indicators": [entry]}))
    return path


# --- validate and list read the catalogue they are given ----------------------------------------------------


@pytest.mark.parametrize("how", ["positional", "--file", "--catalogue"])
def test_validate_reads_the_catalogue_it_is_given(tmp_path, capsys, how) -> None:
    good, bad = _catalogue(tmp_path), _catalogue(tmp_path, valid=False)
    flag = [] if how == "positional" else [how]
    code, out, _ = _run(capsys, "indicators", "validate", *flag, str(good))
    assert code == 0 and "1 indicators, valid" in out
    code, out, err = _run(capsys, "indicators", "validate", *flag, str(bad))
    assert code == 2 and "missing field(s) title" in err and "valid" not in out


def test_validate_a_missing_path_is_exit_2_naming_it(tmp_path, capsys) -> None:
    code, _, err = _run(capsys, "indicators", "validate", str(tmp_path / "nowhere.yaml"))
    assert code == 2 and "nowhere.yaml" in err


def test_list_reads_the_catalogue_given_as_path_and_refuses_two(tmp_path, capsys) -> None:
    small = _catalogue(tmp_path)
    code, out, _ = _run(capsys, "indicators", "list", str(small), "--json")
    assert code == 0 and [i["id"] for i in json.loads(out)] == ["CONF-01"]
    code, _, err = _run(capsys, "indicators", "list", str(small), "--catalogue", str(Settings().catalogue_path))
    assert code == 2 and "give one catalogue" in err


def test_validate_json_prints_one_object(tmp_path, capsys) -> None:
    small = _catalogue(tmp_path)
    code, out, _ = _run(capsys, "indicators", "validate", str(small), "--json")
    assert code == 0
    assert json.loads(out) == {
        "catalogue": str(small),
        "id": "qpm-v4-prescreen",
        "version": yaml.safe_load(small.read_text())["version"],
        "indicators": 1,
        "valid": True,
    }


# --- show ---------------------------------------------------------------------------------------------------


def test_show_forgives_case_suggests_close_ids_and_asks_for_an_empty_id(capsys) -> None:
    code, out, _ = _run(capsys, "indicators", "show", "conf-02")
    assert code == 0 and out.startswith("CONF-02")
    code, _, err = _run(capsys, "indicators", "show", "CONF-2")
    assert code == 2 and "did you mean CONF-02" in err
    code, _, err = _run(capsys, "indicators", "show", "")
    assert code == 2 and "give an indicator id" in err and "no indicator ''" not in err


# --- import -------------------------------------------------------------------------------------------------


def _sheet(tmp_path: Path) -> Path:
    sheet = tmp_path / "team.csv"
    sheet.write_text(HEADER + ROW)
    return sheet


def test_import_json_prints_one_object(tmp_path, capsys) -> None:
    out = tmp_path / "team.yaml"
    code, printed, _ = _run(capsys, "indicators", "import", str(_sheet(tmp_path)), "--out", str(out), "--json")
    assert code == 0 and json.loads(printed) == {"written": str(out), "indicators": 1}


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (lambda tmp: tmp, "is a folder"),
        (lambda tmp: tmp / "missing" / "team.yaml", "does not exist"),
        (lambda tmp: Path("/proc/qpm-screen-test.yaml"), "cannot write /proc/qpm-screen-test.yaml"),
    ],
    ids=["folder", "missing-folder", "unwritable"],
)
def test_import_refuses_an_out_it_cannot_write_before_reading_the_sheet(tmp_path, capsys, out, message) -> None:
    if "proc" in message and not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc, where no file can be created")
    target = out(tmp_path)
    unreadable = tmp_path / "not-read.csv"  # does not exist: an error about it means the sheet was read first
    code, _, err = _run(capsys, "indicators", "import", str(unreadable), "--out", str(target))
    assert code == 2 and str(target) in err and message in err
    assert "not-read.csv" not in err


def test_import_refuses_to_write_over_the_spreadsheet(tmp_path, capsys) -> None:
    sheet = _sheet(tmp_path)
    code, _, err = _run(capsys, "indicators", "import", str(sheet), "--out", str(sheet))
    assert code == 2 and "is the spreadsheet being imported" in err
    assert sheet.read_text() == HEADER + ROW


def test_import_of_a_sheet_with_too_many_rows_is_a_usage_error_naming_the_bound(tmp_path, capsys) -> None:
    sheet = tmp_path / "huge.csv"
    rows = (ROW.replace("CONF-01", f"CONF-{k:05d}") for k in range(50_000))
    sheet.write_text(HEADER + "".join(rows))
    out = tmp_path / "team.yaml"
    code, printed, err = _run(capsys, "indicators", "import", str(sheet), "--out", str(out))
    assert code == 2 and printed == ""
    assert "huge.csv has more than 1,000 rows under its header row" in err and "Traceback" not in err
    assert not out.exists()
