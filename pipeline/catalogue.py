"""The indicator catalogue: what each QPM indicator asks of a written policy, validated on load.

A catalogue is a folder holding ``catalogue.yaml`` (id, version, areas, levels, policy types) and one YAML
file per area with an ``indicators:`` list, or a single YAML file holding both. In a folder every ``*.yaml`` and
``*.yml`` file is read (hidden files, whose names start with ``.``, are not). ``import_spreadsheet`` turns a
CSV/XLSX with one row per indicator into the same structure.

Catalogue YAML is plain data: anchors and aliases (``&name``, ``*name``) and repeated keys are refused, so a
crafted file cannot expand to gigabytes ("billion laughs") and a repeated key cannot silently replace another.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tempfile
from collections.abc import Hashable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.atomic import write_text_atomic
from pipeline.csvfile import read_csv_text
from pipeline.errors import CatalogueError

REQUIRED_FIELDS = (
    "id",
    "area",
    "title",
    "must_say",
    "elements",
    "exemplars",
    "key_terms",
    "policy_types",
    "level",
    "what_to_add",
)
LEVELS = ("essential", "conditional", "good_practice")
MIN_EXEMPLARS = 6
TEXT_FIELDS = ("area", "title", "must_say", "level", "what_to_add")
OPTIONAL_TEXT_FIELDS = ("condition", "basis")
LIST_FIELDS = ("exemplars", "key_terms", "policy_types")
OPTIONAL_LIST_FIELDS = ("near_misses", "sources")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Element:
    """One essential part of an indicator: all evidenced means met, some means partial."""

    id: str
    text: str
    exemplars: tuple[str, ...] = ()


@dataclass(frozen=True)
class Indicator:
    """One thing a written policy should say, with what the matcher needs to recognise it."""

    id: str
    area: str
    title: str
    must_say: str
    elements: tuple[Element, ...]
    exemplars: tuple[str, ...]
    key_terms: tuple[str, ...]
    policy_types: tuple[str, ...]
    level: str
    what_to_add: str
    near_misses: tuple[str, ...] = ()
    condition: str | None = None
    basis: str = ""
    sources: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """Title and requirement as one text, for embedding."""
        return f"{self.title}. {self.must_say}"


@dataclass(frozen=True)
class Catalogue:
    """A validated set of indicators."""

    id: str
    version: str
    title: str
    notice: str
    areas: dict[str, str]
    policy_types: tuple[str, ...]
    indicators: tuple[Indicator, ...]

    def get(self, indicator_id: str) -> Indicator:
        """The indicator with this id; ``KeyError`` with the known ids' range otherwise."""
        for ind in self.indicators:
            if ind.id == indicator_id:
                return ind
        raise KeyError(f"no indicator {indicator_id!r} in catalogue {self.id} {self.version}")

    def find(self, typed: str) -> Indicator:
        """The indicator a person typed: the exact id, else the one id equal to it ignoring case and surrounding
        spaces; ``KeyError`` suggesting close ids otherwise."""
        wanted = typed.strip()
        if not wanted:
            raise KeyError(f"give an indicator id, such as {self.ids[0]}" if self.ids else "give an indicator id")
        by_folded = {i.casefold(): i for i in self.ids}
        if wanted in self.ids or wanted.casefold() in by_folded:
            return self.get(wanted if wanted in self.ids else by_folded[wanted.casefold()])
        close = difflib.get_close_matches(wanted.casefold(), list(by_folded), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(by_folded[c] for c in close)}?" if close else ""
        raise KeyError(f"no indicator {wanted!r} in catalogue {self.id} {self.version}{hint}")

    @property
    def ids(self) -> list[str]:
        """Indicator ids in catalogue order."""
        return [ind.id for ind in self.indicators]

    def fingerprint(self) -> str:
        """A hash of the whole content: changes whenever any indicator text changes (cache keys use it)."""
        payload = json.dumps([asdict(i) for i in self.indicators], sort_keys=True).encode()
        return f"{self.version}+{hashlib.sha256(payload).hexdigest()[:12]}"


def load_catalogue(path: Path) -> Catalogue:
    """Load and validate a catalogue folder or single YAML file; raise ``CatalogueError`` on any problem."""
    path = Path(path)
    if not path.exists():
        raise CatalogueError(f"catalogue not found: {path}")
    if path.is_dir():
        # .yml is as common a spelling as .yaml: a conf.yml skipped without a word would drop a whole area.
        files = sorted(
            f
            for f in path.iterdir()
            if f.suffix.lower() in YAML_SUFFIXES and not f.name.startswith(".") and f.is_file()
        )
        meta_files = [f for f in files if f.stem.lower() == "catalogue"]
        if not meta_files:
            raise CatalogueError(f"{path} has no catalogue.yaml (the file with id, version and areas)")
        if len(meta_files) > 1:
            raise CatalogueError(f"{path} has {' and '.join(f.name for f in meta_files)}: keep only one")
        meta = _read_yaml(meta_files[0])
        raw: list[tuple[str, dict[str, Any]]] = []
        for area_file in files:
            if area_file in meta_files:
                continue
            raw.extend((area_file.name, entry) for entry in _entries(_read_yaml(area_file), area_file.name))
    else:
        meta = _read_yaml(path)
        raw = [(path.name, entry) for entry in _entries(meta, path.name)]
    return build_catalogue(meta, raw)


def build_catalogue(meta: dict[str, Any], raw: list[tuple[str, dict[str, Any]]]) -> Catalogue:
    """Validate catalogue metadata and raw indicator entries (``(source name, mapping)`` pairs)."""
    for key in ("id", "version", "areas"):
        if key not in meta:
            raise CatalogueError(f"catalogue metadata is missing {key!r}")
    for key in ("id", "version"):
        if not _is_scalar(meta[key]):
            raise CatalogueError(f"catalogue metadata: {key!r} must be a text or a number, not {_kind(meta[key])}")
    areas_raw = meta["areas"]
    if not isinstance(areas_raw, dict) or not areas_raw or not all(map(_is_scalar, [*areas_raw, *areas_raw.values()])):
        raise CatalogueError(
            f"catalogue metadata: 'areas' must be a mapping of area code to name (CONF: Confidentiality), "
            f"not {_kind(areas_raw)}"
        )
    areas = {str(k): str(v) for k, v in areas_raw.items()}
    meta_types = meta.get("policy_types") or []
    if not _is_text_list(meta_types):
        raise CatalogueError(f"catalogue metadata: 'policy_types' must be a list of texts, not {_kind(meta_types)}")
    policy_types = tuple(meta_types)
    problems: list[str] = []
    indicators: list[Indicator] = []
    seen: set[str] = set()
    for source, entry in raw:
        where = f"{source}: {entry.get('id', '<no id>')}"
        missing = [f for f in REQUIRED_FIELDS if not entry.get(f)]
        if missing:
            problems.append(f"{where}: missing field(s) {', '.join(missing)}")
            continue
        # Types first: str() of a list or a mapping, or iterating a string, would pass as text and be matched.
        wrong_types = _type_problems(entry)
        if wrong_types:
            problems.extend(f"{where}: {p}" for p in wrong_types)
            continue
        ind_id = str(entry["id"])
        if ind_id in seen:
            problems.append(f"{where}: duplicate id {ind_id}")
        seen.add(ind_id)
        if entry["area"] not in areas:
            problems.append(f"{where}: unknown area {entry['area']!r} (known: {', '.join(areas)})")
        if entry["level"] not in LEVELS:
            problems.append(f"{where}: level must be one of {', '.join(LEVELS)}, not {entry['level']!r}")
        if len(entry["exemplars"]) < MIN_EXEMPLARS:
            problems.append(f"{where}: needs at least {MIN_EXEMPLARS} exemplars, has {len(entry['exemplars'])}")
        unknown_types = [t for t in entry["policy_types"] if policy_types and t not in policy_types]
        if unknown_types:
            problems.append(f"{where}: unknown policy type(s) {', '.join(map(str, unknown_types))}")
        elements = tuple(
            Element(id=str(e["id"]), text=e["text"], exemplars=tuple(e.get("exemplars") or ()))
            for e in entry["elements"]
        )
        indicators.append(
            Indicator(
                id=ind_id,
                area=str(entry["area"]),
                title=str(entry["title"]).strip(),
                must_say=str(entry["must_say"]).strip(),
                elements=elements,
                exemplars=tuple(x.strip() for x in entry["exemplars"]),
                key_terms=tuple(x.lower().strip() for x in entry["key_terms"]),
                policy_types=tuple(entry["policy_types"]),
                level=entry["level"],
                what_to_add=entry["what_to_add"].strip(),
                near_misses=tuple(x.strip() for x in entry.get("near_misses") or ()),
                condition=entry.get("condition") or None,
                basis=entry.get("basis") or "",
                sources=tuple(entry.get("sources") or ()),
            )
        )
    if not raw:
        problems.append("the catalogue holds no indicators")
    if problems:
        raise CatalogueError("invalid catalogue:\n  " + "\n  ".join(problems))
    return Catalogue(
        id=str(meta["id"]),
        version=str(meta["version"]),
        title=str(meta.get("title", meta["id"])),
        notice=str(meta.get("notice", "")).strip(),
        areas=areas,
        policy_types=policy_types,
        indicators=tuple(indicators),
    )


def _is_scalar(value: Any) -> bool:
    """A YAML text or number (a bool is a YAML ``yes``/``no``, never meant as an id or a name)."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x.strip() for x in value)


def _kind(value: Any) -> str:
    """How a wrong value reads in a message: 'a string', 'a list', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a yes/no value"
    if isinstance(value, (int, float)):
        return "a number"
    names: dict[type, str] = {str: "a string", dict: "a mapping", list: "a list"}
    return names.get(type(value), f"a {type(value).__name__}")


def _type_problems(entry: dict[str, Any]) -> list[str]:
    """What is of the wrong type in one indicator entry whose required fields are all present and non-empty."""
    found: list[str] = []
    if not _is_scalar(entry["id"]):
        found.append(f"'id' must be a text or a number, not {_kind(entry['id'])}")
    for field in (*TEXT_FIELDS, *OPTIONAL_TEXT_FIELDS):
        value = entry.get(field)
        if not (value is None and field in OPTIONAL_TEXT_FIELDS) and not isinstance(value, str):
            found.append(f"{field!r} must be a text, not {_kind(value)}")
    for field in (*LIST_FIELDS, *OPTIONAL_LIST_FIELDS):
        value = entry.get(field)
        if field in OPTIONAL_LIST_FIELDS and value in (None, [], ""):
            continue
        if not isinstance(value, list):
            found.append(f"{field!r} must be a list of texts (one per line, starting '- '), not {_kind(value)}")
        elif not _is_text_list(value):
            bad = next(x for x in value if not (isinstance(x, str) and x.strip()))
            what = "an empty one" if isinstance(bad, str) else _kind(bad)
            found.append(f"{field!r} must hold only non-empty texts, not {what}")
    elements = entry["elements"]
    if not isinstance(elements, list):
        found.append(f"'elements' must be a list of mappings with an id and a text, not {_kind(elements)}")
        return found
    for n, element in enumerate(elements, start=1):
        if not (
            isinstance(element, dict)
            and _is_scalar(element.get("id"))
            and isinstance(element.get("text"), str)
            and element["text"].strip()
        ):
            found.append(f"element {n}: every element needs an id and a text")
        elif element.get("exemplars") not in (None, []) and not _is_text_list(element["exemplars"]):
            found.append(f"element {n}: 'exemplars' must be a list of non-empty texts")
    return found


class _CatalogueLoader(yaml.SafeLoader):
    """``SafeLoader`` for plain data: refuses anchors and aliases and repeated mapping keys.

    Anchors are refused while composing, before any object is built, so an alias bomb costs nothing.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors and aliases (&name, *name) are not allowed in a catalogue: write the text out in full",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, Hashable) and key in seen:  # an unhashable key is refused by the base class
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                    )
                if isinstance(key, Hashable):
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueError(
            f"{path.name} is not UTF-8 text (byte {exc.start}): save it as UTF-8 (it may be UTF-16, a Windows code "
            "page, or not a text file at all)"
        ) from exc
    except OSError as exc:
        raise CatalogueError(f"{path.name} could not be read: {exc.strerror or exc}") from exc
    loader = _CatalogueLoader(text)
    loader.name = path.name  # positions in messages then say "in conf.yaml, line 3" rather than "<unicode string>"
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path.name} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise CatalogueError(f"{path.name} must hold a mapping at the top level")
    return data


def _entries(data: dict[str, Any], source: str) -> list[dict[str, Any]]:
    entries = data.get("indicators", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CatalogueError(f"{source}: 'indicators' must be a list of mappings")
    return entries


# --- spreadsheet import -------------------------------------------------------------------------------------

LIST_SEPARATOR = ";"
# The columns without which no row can be valid (README "Your own indicator catalogue"); the rest are optional.
REQUIRED_COLUMNS = (
    "id",
    "area",
    "title",
    "must_say",
    "level",
    "what_to_add",
    "exemplars",
    "key_terms",
    "policy_types",
    "element_1",
)


#: Bounds on what an import reads. A catalogue holds tens to a few hundred indicators (ours: 60, about 100 KB as
#: a workbook), so these are far above any real one, and low enough that a hostile or mistaken file (millions of
#: rows, one enormous cell, a workbook that unpacks to gigabytes) is refused in seconds and megabytes.
MAX_IMPORT_ROWS = 1_000  # rows with content under the header row
MAX_IMPORT_FILE_MB = 16  # the file on disk, CSV or workbook
MAX_WORKBOOK_UNPACKED_MB = 32  # an .xlsx is a zip: its members' sizes once unpacked (openpyxl reads the strings whole)
MAX_CELL_CHARS = 32_767  # Excel's own limit for a cell
MAX_COLUMNS = 200
MAX_SCANNED_ROWS = 100_000  # rows read at all, blank ones included (a workbook can claim a million empty rows)
# Characters kept in all: a workbook can name one long shared string from every cell, a few bytes each.
MAX_IMPORT_CHARS = MAX_IMPORT_FILE_MB * 1024 * 1024
_MB = 1024 * 1024


@dataclass(frozen=True)
class _Sheet:
    """The header row (names stripped and lower-cased) and the rows with content, each with its sheet row number."""

    header: list[str]
    rows: list[tuple[int, list[str]]]


def _read_sheet(path: Path) -> _Sheet:
    """Read the spreadsheet row by row within the import bounds; ``CatalogueError`` naming the file and the bound
    when it is over one, or when it cannot be read.

    Reading stops at the first row over a bound: neither file is ever read whole, and a workbook's unpacked size
    is checked from its zip directory before anything is unpacked.
    """
    import zipfile

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx", ".xlsm"):
        raise CatalogueError(f"{path.name}: import expects a .csv or .xlsx file")
    if not path.is_file():
        raise CatalogueError(f"{path}: no such file")
    kind = _kind_of(path)
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_FILE_MB * _MB:
            raise CatalogueError(
                f"{path.name} is {size / _MB:.1f} MB, more than the {MAX_IMPORT_FILE_MB} MB an import reads "
                "(a catalogue of a few hundred indicators is well under 1 MB)"
            )
        if suffix == ".csv":
            return _read_csv(path)
        return _read_workbook(path)
    except CatalogueError:
        raise
    # OSError: unreadable; BadZipFile: a workbook that is not one (or is encrypted, which Excel stores in another
    # container). Anything else is openpyxl failing on a malformed part (missing sheet, bad XML, bad numbers): a
    # file we cannot read, whatever the library's exception.
    except (OSError, zipfile.BadZipFile) as exc:
        raise CatalogueError(f"{path.name} could not be read as {kind}: {exc}") from exc
    except Exception as exc:
        raise CatalogueError(f"{path.name} could not be read as {kind} ({type(exc).__name__}: {exc})") from exc


def _read_csv(path: Path) -> _Sheet:
    """The CSV's rows, decoded as :func:`pipeline.csvfile.read_csv_text` decides (the file is within
    ``MAX_IMPORT_FILE_MB``), parsed row by row until a bound stops it."""
    import csv
    import io

    # strict: a quote never closed would otherwise swallow the rest of the file into one cell.
    reader = csv.reader(io.StringIO(read_csv_text(path), newline=""), strict=True)
    try:
        return _collect(path, reader)
    except csv.Error as exc:
        raise CatalogueError(
            f"{path.name} could not be read as a CSV file: line {reader.line_num}: {_csv_problem(exc)}"
        ) from exc


def _csv_problem(exc: Exception) -> str:
    message = str(exc)
    if "unexpected end of data" in message:
        return 'a quoted cell is never closed (a missing ")'
    if "field larger than field limit" in message:
        return f"a cell is longer than {MAX_CELL_CHARS:,} characters"
    return message


def _read_workbook(path: Path) -> _Sheet:
    """The first sheet's rows, from openpyxl in read-only mode (rows parsed as they are iterated).

    The zip directory is checked first: Python's zipfile never unpacks more than a member's recorded size, so the
    recorded sizes bound what openpyxl can unpack (the shared strings are read whole; the sheet is streamed).
    """
    import zipfile

    import openpyxl

    with zipfile.ZipFile(path) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_WORKBOOK_UNPACKED_MB * _MB:
        raise CatalogueError(
            f"{path.name} unpacks to {unpacked / _MB:,.0f} MB, more than the {MAX_WORKBOOK_UNPACKED_MB} MB an "
            "import reads: it is not a plain indicator spreadsheet (save the indicators alone in a new workbook)"
        )
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
    try:
        if not workbook.worksheets:
            raise CatalogueError(f"{path.name} has no worksheet")
        sheet = workbook.worksheets[0]  # the first sheet, as Excel lists them (not whichever was last active)
        # Bounded ranges: a sheet's own dimension (which a file can set to a million rows by 16,384 columns)
        # would otherwise decide how many empty cells are made.
        rows = sheet.iter_rows(max_row=MAX_SCANNED_ROWS + 1, max_col=MAX_COLUMNS + 1, values_only=True)
        # A blank row (padded to MAX_COLUMNS + 1 cells) is passed on as [] without converting each of its cells.
        return _collect(path, ([] if row.count(None) == len(row) else [_cell_text(v) for v in row] for row in rows))
    finally:
        workbook.close()


def _cell_text(value: Any) -> str:
    """A workbook cell as the text a person sees: empty for none, 12 rather than 12.0 for a whole number."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _collect(path: Path, rows: Iterable[list[str]]) -> _Sheet:
    """The header and the rows with content, refusing at the first row over a bound (nothing further is read)."""
    header: list[str] | None = None
    kept: list[tuple[int, list[str]]] = []
    chars = 0
    for number, cells in enumerate(rows, start=1):
        if number > MAX_SCANNED_ROWS:
            raise CatalogueError(
                f"{path.name} has more than {MAX_SCANNED_ROWS:,} rows, counting blank ones: keep the indicators "
                "in the first rows of the first sheet"
            )
        for column, cell in enumerate(cells, start=1):
            if len(cell) > MAX_CELL_CHARS:
                raise CatalogueError(
                    f"{path.name} row {number}, column {column}: a cell of {len(cell):,} characters, more than the "
                    f"{MAX_CELL_CHARS:,} an import reads (Excel's own limit for a cell)"
                )
        if header is None:
            while cells and not cells[-1].strip():  # trailing empty header cells are no columns
                cells = cells[:-1]
            if len(cells) > MAX_COLUMNS:
                raise CatalogueError(
                    f"{path.name} has more than {MAX_COLUMNS} columns in its header row (a catalogue needs about 20)"
                )
            header = [cell.strip().lower() for cell in cells]
            continue
        cells = [cell.strip() for cell in cells[: len(header)]]  # cells under no column name are never read
        if not any(cells):
            continue
        if len(kept) == MAX_IMPORT_ROWS:
            raise CatalogueError(
                f"{path.name} has more than {MAX_IMPORT_ROWS:,} rows under its header row, the most an import "
                "reads (a catalogue holds tens to a few hundred indicators)"
            )
        chars += sum(map(len, cells))
        if chars > MAX_IMPORT_CHARS:
            raise CatalogueError(
                f"{path.name}: its cells hold more than {MAX_IMPORT_CHARS:,} characters by row {number}, more than "
                "an import reads (a catalogue of a few hundred indicators holds well under a million)"
            )
        kept.append((number, cells))
    if header is None:
        raise CatalogueError(f"{path.name} could not be read as {_kind_of(path)}: it is empty (no header row)")
    return _Sheet(header=header, rows=kept)


def _kind_of(path: Path) -> str:
    return "a CSV file" if path.suffix.lower() == ".csv" else "an Excel workbook (.xlsx)"


def import_spreadsheet(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read one row per indicator from CSV or XLSX into catalogue entries, validated.

    Columns: id, area, title, must_say, level, what_to_add, and optionally condition, basis, sources; list
    columns (exemplars, near_misses, key_terms, policy_types, sources) hold ``;``-separated items; elements are
    columns ``element_1`` .. ``element_4`` (text) with optional ``element_N_exemplars`` (``;``-separated).
    Headers are matched ignoring case and surrounding spaces (the first of two equal headers counts); entirely
    blank rows are skipped; problems name the spreadsheet row (the header is row 1).

    The file is read within bounds (:data:`MAX_IMPORT_ROWS` rows with content, :data:`MAX_IMPORT_FILE_MB` MB on
    disk, :data:`MAX_WORKBOOK_UNPACKED_MB` MB unpacked, :data:`MAX_CELL_CHARS` characters a cell); a file over
    one is refused with a ``CatalogueError`` naming it, without reading the rest.
    """
    sheet = _read_sheet(path)
    if not sheet.rows:  # the more basic problem of the two
        raise CatalogueError(f"{path.name} holds no indicators: there are no rows under its header row")
    lacking = [c for c in REQUIRED_COLUMNS if c not in sheet.header]
    if lacking:  # said once for the sheet, not once per row as a missing field
        named = ", ".join(name for name in sheet.header if name)
        raise CatalogueError(
            f"{path.name} lacks the required column(s) {', '.join(lacking)} (its header row has: {named or 'nothing'})"
        )
    position: dict[str, int] = {}
    for index, name in enumerate(sheet.header):
        if name:
            position.setdefault(name, index)
    entries: list[dict[str, Any]] = []
    sources: list[str] = []
    for number, row in sheet.rows:
        cells = {name: (row[index] if index < len(row) else "") for name, index in position.items()}
        sources.append(f"{path.name} row {number}")
        elements = []
        for n in range(1, 5):
            text = cells.get(f"element_{n}", "")
            if text:
                elements.append({"id": f"e{n}", "text": text, "exemplars": _split(cells.get(f"element_{n}_exemplars"))})
        entry: dict[str, Any] = {
            "id": cells.get("id", ""),
            "area": cells.get("area", ""),
            "title": cells.get("title", ""),
            "must_say": cells.get("must_say", ""),
            "elements": elements,
            "exemplars": _split(cells.get("exemplars")),
            "near_misses": _split(cells.get("near_misses")),
            "key_terms": _split(cells.get("key_terms")),
            "policy_types": _split(cells.get("policy_types")),
            "level": cells.get("level", ""),
            "condition": cells.get("condition") or None,
            "what_to_add": cells.get("what_to_add", ""),
            "basis": cells.get("basis", ""),
            "sources": _split(cells.get("sources")),
        }
        entries.append(entry)
    build_catalogue(meta, list(zip(sources, entries, strict=True)))  # raises with every problem listed
    return meta, entries


def check_output_file(out: Path, source: Path | None = None) -> None:
    """Raise ``CatalogueError`` naming ``out`` unless a catalogue file can be written there.

    Meant to run before any slow work: ``out`` must not be a folder nor the ``source`` being read, and its folder
    must exist and take a new file (tried for real, as permission bits say nothing for root or /proc).
    """
    if out.is_dir():
        raise CatalogueError(f"{out} is a folder: give the catalogue file to write, such as {out / 'catalogue.yaml'}")
    if source is not None and out.resolve() == source.resolve():
        raise CatalogueError(f"{out} is the spreadsheet being imported: give another file to write")
    folder = out.parent
    if not folder.is_dir():
        raise CatalogueError(f"cannot write {out}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CatalogueError(f"cannot write {out}: {exc.strerror or exc}") from exc


def write_catalogue_file(meta: dict[str, Any], entries: list[dict[str, Any]], out: Path) -> None:
    """Write a single-file catalogue (metadata plus ``indicators:``); ``CatalogueError`` naming ``out`` if it cannot.

    The text goes to a temporary file beside ``out`` that then replaces it in one step, so an interrupted or failed
    write leaves the previous file (or none), never half a catalogue.
    """
    data = {**meta, "indicators": entries}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
    check_output_file(out)
    try:
        write_text_atomic(out, text)
    except OSError as exc:
        raise CatalogueError(f"cannot write {out}: {exc.strerror or exc}") from exc


def _split(cell: str | None) -> list[str]:
    return [part.strip() for part in (cell or "").split(LIST_SEPARATOR) if part.strip()]
