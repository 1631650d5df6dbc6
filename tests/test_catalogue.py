"""The shipped catalogue is complete and valid; broken catalogues fail with specific messages."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.catalogue import (
    MAX_CELL_CHARS,
    MAX_COLUMNS,
    MAX_IMPORT_CHARS,
    MAX_IMPORT_FILE_MB,
    MAX_IMPORT_ROWS,
    MAX_WORKBOOK_UNPACKED_MB,
    import_spreadsheet,
    load_catalogue,
    write_catalogue_file,
)
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
        _row(
            key_terms="confidential; need to know",
            element_1_exemplars="All staff follow it; Volunteers too",
            element_2="Breaches are disciplinary",
        )
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
    pd.DataFrame([_row(), _row(id="X-1", area="NOPE", must_say="")]).to_csv(sheet, index=False)
    with pytest.raises(CatalogueError, match=r"bad\.csv row 3: X-1: missing field\(s\) must_say"):
        import_spreadsheet(sheet, {"id": "t", "version": "1", "areas": {"CONF": "C"}})


# --- wrong types, encodings and YAML constructs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"area": ["CONF"]}, "CONF-01: 'area' must be a text, not a list"),
        ({"exemplars": 12345}, "CONF-01: 'exemplars' must be a list of texts"),
        ({"exemplars": "eight characters"}, "CONF-01: 'exemplars' must be a list of texts"),
        ({"key_terms": "confidential"}, "CONF-01: 'key_terms' must be a list of texts"),
        ({"near_misses": "not the same"}, "CONF-01: 'near_misses' must be a list of texts"),
        ({"policy_types": "confidentiality"}, "CONF-01: 'policy_types' must be a list of texts"),
        ({"exemplars": [None] * 6}, "CONF-01: 'exemplars' must hold only non-empty texts, not null"),
        ({"exemplars": [{"a": k} for k in range(6)]}, "CONF-01: 'exemplars' must hold only non-empty texts"),
        ({"condition": ["when it applies"]}, "CONF-01: 'condition' must be a text, not a list"),
        ({"title": {"en": "T"}}, "CONF-01: 'title' must be a text, not a mapping"),
        ({"elements": [{"id": "a", "text": ["A"]}]}, "CONF-01: element 1: every element needs an id and a text"),
        ({"elements": [{"id": "a", "text": "A", "exemplars": "x"}]}, "element 1: 'exemplars' must be a list"),
    ],
)
def test_fields_of_the_wrong_type_are_refused_naming_indicator_and_field(tmp_path, changes, message) -> None:
    with pytest.raises(CatalogueError) as err:
        load_catalogue(_write(tmp_path, [_entry(**changes)]))
    assert message in str(err.value)
    assert "c, o, n" not in str(err.value)  # a string is not iterated as its characters


def test_a_numeric_indicator_id_is_still_accepted_as_text(tmp_path) -> None:
    assert load_catalogue(_write(tmp_path, [_entry(101)])).ids == ["101"]


@pytest.mark.parametrize("areas", [None, "CONF", ["CONF", "SAFE"], {}])
def test_areas_that_are_not_a_mapping_are_refused(tmp_path, areas) -> None:
    path = _write(tmp_path, [_entry()])
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "areas": areas}))
    with pytest.raises(CatalogueError, match="'areas' must be a mapping of area code to name"):
        load_catalogue(path)


@pytest.mark.parametrize(
    "content",
    [
        b"id: caf\xe9\nversion: 1\n",  # Windows-1252 / Latin-1
        "id: x\nversion: 1\n".encode("utf-16"),
        bytes(range(256)) * 4,  # not text at all
    ],
    ids=["latin-1", "utf-16", "binary"],
)
def test_a_file_that_is_not_utf8_is_refused_naming_it(tmp_path, content) -> None:
    folder = _folder(tmp_path)
    (folder / "conf.yaml").write_bytes(content)
    with pytest.raises(CatalogueError, match=r"conf\.yaml is not UTF-8 text"):
        load_catalogue(folder)


def _bomb(levels: int) -> str:
    """A "billion laughs": each level is a list of nine aliases of the one before."""
    lines = ['lol0: &a0 "lol"']
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\ntitle: *a{levels}\n"


@pytest.mark.parametrize(
    "yaml_text",
    [
        _bomb(6),  # the report's had 9 levels (8 GB); 6 keeps the unfixed code's failure quick
        "title: &t Quality\nnotice: *t\n",
        "title: &t Quality\n",
    ],
    ids=["alias-bomb", "alias", "anchor"],
)
def test_anchors_and_aliases_are_refused_before_anything_expands(tmp_path, yaml_text) -> None:
    path = _write(tmp_path, [_entry()])
    path.write_text(yaml_text + path.read_text().replace("title:", "old_title:", 1))
    with pytest.raises(CatalogueError, match="anchors and aliases"):
        load_catalogue(path)


def test_a_repeated_key_is_refused_naming_it(tmp_path) -> None:
    path = _write(tmp_path, [_entry()])
    path.write_text(path.read_text().replace("  title: T\n", "  title: T\n  title: Other\n", 1))
    with pytest.raises(CatalogueError, match=r"(?s)cat\.yaml.*duplicate key 'title'.*line 38"):
        load_catalogue(path)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cat"
    folder.mkdir()
    meta = yaml.safe_load((Settings().catalogue_path / "catalogue.yaml").read_text())
    (folder / "catalogue.yaml").write_text(yaml.safe_dump(meta))
    return folder


def test_a_folder_catalogue_reads_yml_files_too_and_skips_hidden_ones(tmp_path) -> None:
    folder = _folder(tmp_path)
    (folder / "conf.yml").write_text(yaml.safe_dump({"indicators": [_entry("CONF-01")]}))
    (folder / "safe.yaml").write_text(yaml.safe_dump({"indicators": [_entry("SAFE-01", area="SAFE")]}))
    (folder / "._conf.yml").write_bytes(b"\x00\x05\x16\x07\xff")  # a macOS resource fork, not YAML
    assert load_catalogue(folder).ids == ["CONF-01", "SAFE-01"]


# --- finding an indicator a person typed --------------------------------------------------------------------


def test_find_forgives_case_and_suggests_close_ids(catalogue) -> None:
    assert catalogue.find(" conf-02 ").id == "CONF-02"
    with pytest.raises(KeyError, match="did you mean CONF-02"):
        catalogue.find("CONF-2")
    with pytest.raises(KeyError, match="give an indicator id"):
        catalogue.find("")


# --- spreadsheet import: columns, blank rows, row numbers, text that looks missing ----------------------------


def _row(**changes: str) -> dict[str, str]:
    row = {
        "id": "CONF-01",
        "area": "CONF",
        "title": "Commitment",
        "must_say": "Information is confidential to the organisation.",
        "level": "essential",
        "what_to_add": "Say who the policy binds.",
        "exemplars": ";".join(f"sentence {k}" for k in range(6)),
        "key_terms": "confidential",
        "policy_types": "confidentiality",
        "element_1": "Binds staff and volunteers",
    }
    row.update(changes)
    return row


META = {"id": "team", "version": "1", "areas": {"CONF": "Confidentiality"}}


def test_import_says_once_which_required_columns_the_sheet_lacks(tmp_path) -> None:
    sheet = tmp_path / "team.csv"
    rows = [_row(id=f"CONF-0{k}") for k in range(1, 4)]
    pd.DataFrame(rows).drop(columns=["must_say", "level"]).to_csv(sheet, index=False)
    with pytest.raises(CatalogueError) as err:
        import_spreadsheet(sheet, META)
    assert "team.csv lacks the required column(s) must_say, level" in str(err.value)
    assert str(err.value).count("must_say") == 1


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_import_matches_headers_in_any_case_skips_blank_rows_and_keeps_na_as_text(tmp_path, suffix) -> None:
    blank = dict.fromkeys(_row(), "")
    rows = [_row(title="NA", key_terms="None; nan"), blank, _row(id="CONF-02")]
    frame = pd.DataFrame(rows).rename(columns=lambda c: f" {c.upper()} ")
    sheet = tmp_path / f"team{suffix}"
    frame.to_csv(sheet, index=False) if suffix == ".csv" else frame.to_excel(sheet, index=False)
    _, entries = import_spreadsheet(sheet, META)
    assert [e["id"] for e in entries] == ["CONF-01", "CONF-02"]
    assert entries[0]["title"] == "NA"
    assert entries[0]["key_terms"] == ["None", "nan"]


# --- writing a catalogue file -------------------------------------------------------------------------------


@pytest.mark.parametrize("interruption", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_write_keeps_the_previous_catalogue_whole(tmp_path, monkeypatch, interruption) -> None:
    out = tmp_path / "team.yaml"
    out.write_text("previous: catalogue\n")

    def fail(_fd: int) -> None:
        raise interruption

    monkeypatch.setattr("pipeline.catalogue.os.fsync", fail)
    expected = CatalogueError if isinstance(interruption, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as err:
        write_catalogue_file(META, [_entry()], out)
    assert out.read_text() == "previous: catalogue\n"
    assert [p.name for p in tmp_path.iterdir()] == ["team.yaml"]  # no temporary file left behind
    if expected is CatalogueError:
        assert str(out) in str(err.value) and "No space left" in str(err.value)


# --- spreadsheet import: bounds on what is read ----------------------------------------------------------------


def _indicator_rows(count: int) -> list[dict[str, str]]:
    return [_row(id=f"CONF-{k:04d}") for k in range(1, count + 1)]


def _workbook(path: Path, rows: list[dict[str, str]], extra: list[list[object]] | None = None) -> Path:
    """An .xlsx with a header row, ``rows`` and then ``extra`` raw rows (written with openpyxl, as Excel would)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(_row()))
    for row in rows:
        sheet.append(list(row.values()))
    for row in extra or []:
        sheet.append(row)
    book.save(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_import_takes_a_thousand_indicators(tmp_path, suffix) -> None:
    sheet = tmp_path / f"team{suffix}"
    rows = _indicator_rows(MAX_IMPORT_ROWS)
    pd.DataFrame(rows).to_csv(sheet, index=False) if suffix == ".csv" else _workbook(sheet, rows)
    _, entries = import_spreadsheet(sheet, META)
    assert len(entries) == MAX_IMPORT_ROWS == 1_000


def test_import_refuses_more_rows_than_the_bound_and_reads_no_further_in_a_csv(tmp_path) -> None:
    sheet = tmp_path / "huge.csv"
    pd.DataFrame(_indicator_rows(MAX_IMPORT_ROWS + 1)).to_csv(sheet, index=False)
    with open(sheet, "a", encoding="utf-8") as handle:  # beyond the bound: text the reader would choke on
        handle.write('"a quoted cell never closed,\n' + "x" * 200_000 + "\n")
    with pytest.raises(CatalogueError) as err:
        import_spreadsheet(sheet, META)
    assert str(err.value).startswith("huge.csv has more than 1,000 rows under its header row")


def test_import_refuses_more_rows_than_the_bound_and_reads_no_further_in_a_workbook(tmp_path) -> None:
    import openpyxl

    sheet = _workbook(tmp_path / "huge.xlsx", _indicator_rows(MAX_IMPORT_ROWS + 1))
    # Rows that would be refused for another reason if they were reached: the row bound (row 1,002) stops first.
    book = openpyxl.load_workbook(sheet)
    book.active.cell(row=1_000_000, column=1, value="far below")
    book.save(sheet)
    with pytest.raises(CatalogueError, match=r"^huge\.xlsx has more than 1,000 rows under its header row"):
        import_spreadsheet(sheet, META)


def test_blank_rows_do_not_count_but_a_million_of_them_are_not_read(tmp_path) -> None:
    rows = _indicator_rows(2)
    sheet = _workbook(tmp_path / "gaps.xlsx", rows, [[None]] * 3 + [list(_row(id="CONF-9999").values())])
    _, entries = import_spreadsheet(sheet, META)
    assert [e["id"] for e in entries] == ["CONF-0001", "CONF-0002", "CONF-9999"]
    import openpyxl

    book = openpyxl.load_workbook(sheet)
    book.active.cell(row=1_000_000, column=1, value="far below")  # a small file whose rows run to a million
    book.save(sheet)
    with pytest.raises(CatalogueError, match=r"more than 100,000 rows, counting blank ones"):
        import_spreadsheet(sheet, META)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_import_refuses_a_file_over_the_size_bound_before_reading_it(tmp_path, suffix, monkeypatch) -> None:
    sheet = tmp_path / f"big{suffix}"
    with open(sheet, "wb") as handle:
        handle.truncate(MAX_IMPORT_FILE_MB * 1024 * 1024 + 1)  # sparse: no disk space, no time
    monkeypatch.setattr("builtins.open", _no_open)
    monkeypatch.setattr("zipfile.ZipFile", _no_open)
    with pytest.raises(CatalogueError) as err:
        import_spreadsheet(sheet, META)
    assert f"big{suffix} is 16.0 MB, more than the 16 MB an import reads" in str(err.value)


def _no_open(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"the file was opened: {args}")


def test_import_refuses_a_cell_longer_than_excel_allows_naming_row_and_column(tmp_path) -> None:
    # A CSV only: openpyxl itself never returns a workbook cell longer than Excel's limit.
    sheet = tmp_path / "team.csv"
    rows = [_row(id="CONF-01"), _row(id="CONF-02", must_say="x" * (MAX_CELL_CHARS + 1))]
    pd.DataFrame(rows).to_csv(sheet, index=False)
    with pytest.raises(CatalogueError) as err:
        import_spreadsheet(sheet, META)
    assert "team.csv row 3, column 4: a cell of 32,768 characters, more than the 32,767" in str(err.value)


def test_import_refuses_a_workbook_that_unpacks_over_the_bound_before_unpacking_it(tmp_path, monkeypatch) -> None:
    """A zip bomb: a small .xlsx whose sheet unpacks to more than the bound (here 33 MB of one repeated letter in
    well under 1 MB on disk). openpyxl must never be asked to open it."""
    import zipfile

    seed = _workbook(tmp_path / "seed.xlsx", _indicator_rows(1))
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(seed) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        with target.open("xl/padding.xml", "w") as padding:
            chunk = b"A" * (1024 * 1024)
            for _ in range(MAX_WORKBOOK_UNPACKED_MB + 1):
                padding.write(chunk)
    assert bomb.stat().st_size < 1024 * 1024

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("openpyxl was asked to open the workbook")

    monkeypatch.setattr("openpyxl.load_workbook", never)
    with pytest.raises(CatalogueError, match=r"^bomb\.xlsx unpacks to 33 MB, more than the 32 MB an import reads"):
        import_spreadsheet(bomb, META)


def test_import_refuses_a_header_row_wider_than_the_bound(tmp_path) -> None:
    sheet = tmp_path / "wide.csv"
    header = list(_row()) + [f"extra_{k}" for k in range(MAX_COLUMNS)]
    sheet.write_text(",".join(header) + "\n" + ",".join(_row().values()) + "\n")
    with pytest.raises(CatalogueError, match=r"wide\.csv has more than 200 columns in its header row"):
        import_spreadsheet(sheet, META)


def test_import_refuses_a_workbook_whose_cells_repeat_one_long_text_past_the_bound(tmp_path) -> None:
    """Every cell names the same shared string of 30,000 characters: a 300 KB sheet that would be 300 million
    characters once read (each stripped cell its own copy)."""
    import zipfile

    seed = _workbook(tmp_path / "seed.xlsx", [])
    sheet = tmp_path / "echo.xlsx"
    long_text = "x" * 30_000 + " "
    columns = list(_row())
    header = "".join(f'<c t="inlineStr"><is><t>{name}</t></is></c>' for name in columns)
    body = '<c t="s"><v>0</v></c>' * len(columns)
    rows = "".join(f'<row r="{r}">{body}</row>' for r in range(2, MAX_IMPORT_ROWS + 2))
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    with zipfile.ZipFile(seed) as source, zipfile.ZipFile(sheet, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = (
                    f'<worksheet xmlns="{main}"><sheetData><row r="1">{header}</row>{rows}</sheetData></worksheet>'
                ).encode()
            elif info.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
                )
            target.writestr(info.filename, data)
        target.writestr("xl/sharedStrings.xml", f'<sst xmlns="{main}"><si><t>{long_text}</t></si></sst>')
    with pytest.raises(CatalogueError) as err:
        import_spreadsheet(sheet, META)
    assert f"echo.xlsx: its cells hold more than {MAX_IMPORT_CHARS:,} characters by row" in str(err.value)
