"""The indicator catalogue: what each QPM indicator asks of a written policy, validated on load.

A catalogue is a folder holding ``catalogue.yaml`` (id, version, areas, levels, policy types) and one YAML
file per area with an ``indicators:`` list, or a single YAML file holding both. ``import_spreadsheet`` turns a
CSV/XLSX with one row per indicator into the same structure.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

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
        meta_file = path / "catalogue.yaml"
        if not meta_file.exists():
            raise CatalogueError(f"{path} has no catalogue.yaml (the file with id, version and areas)")
        meta = _read_yaml(meta_file)
        raw: list[tuple[str, dict[str, Any]]] = []
        for area_file in sorted(path.glob("*.yaml")):
            if area_file.name == "catalogue.yaml":
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
    areas = {str(k): str(v) for k, v in dict(meta["areas"]).items()}
    policy_types = tuple(str(t) for t in meta.get("policy_types", ()))
    problems: list[str] = []
    indicators: list[Indicator] = []
    seen: set[str] = set()
    for source, entry in raw:
        where = f"{source}: {entry.get('id', '<no id>')}"
        missing = [f for f in REQUIRED_FIELDS if not entry.get(f)]
        if missing:
            problems.append(f"{where}: missing field(s) {', '.join(missing)}")
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
        try:
            elements = tuple(
                Element(id=str(e["id"]), text=str(e["text"]), exemplars=tuple(map(str, e.get("exemplars", ()))))
                for e in entry["elements"]
            )
        except (KeyError, TypeError):
            problems.append(f"{where}: every element needs an id and a text")
            continue
        indicators.append(
            Indicator(
                id=ind_id,
                area=str(entry["area"]),
                title=str(entry["title"]).strip(),
                must_say=str(entry["must_say"]).strip(),
                elements=elements,
                exemplars=tuple(str(x).strip() for x in entry["exemplars"]),
                key_terms=tuple(str(x).lower().strip() for x in entry["key_terms"]),
                policy_types=tuple(map(str, entry["policy_types"])),
                level=str(entry["level"]),
                what_to_add=str(entry["what_to_add"]).strip(),
                near_misses=tuple(str(x).strip() for x in entry.get("near_misses") or ()),
                condition=entry.get("condition") or None,
                basis=str(entry.get("basis") or ""),
                sources=tuple(map(str, entry.get("sources") or ())),
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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path.name} is not valid YAML: {exc}") from exc
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


def _read_sheet(path: Path) -> Any:
    """The spreadsheet as a pandas frame of strings; ``CatalogueError`` naming the file when it cannot be read."""
    import zipfile

    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx", ".xlsm"):
        raise CatalogueError(f"{path.name}: import expects a .csv or .xlsx file")
    if not path.is_file():
        raise CatalogueError(f"{path}: no such file")
    kind = "a CSV file" if suffix == ".csv" else "an Excel workbook (.xlsx)"
    try:
        if suffix != ".csv":
            return pd.read_excel(path, dtype=str, engine="openpyxl")
        return pd.read_csv(io.StringIO(read_csv_text(path)), dtype=str)
    # ValueError covers pandas' empty-file and parser errors; BadZipFile a workbook that is not one (or is
    # encrypted, which Excel stores in another container).
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CatalogueError(f"{path.name} could not be read as {kind}: {exc}") from exc


def import_spreadsheet(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read one row per indicator from CSV or XLSX into catalogue entries, validated.

    Columns: id, area, title, must_say, level, what_to_add, and optionally condition, basis, sources; list
    columns (exemplars, near_misses, key_terms, policy_types, sources) hold ``;``-separated items; elements are
    columns ``element_1`` .. ``element_4`` (text) with optional ``element_N_exemplars`` (``;``-separated).
    """
    frame = _read_sheet(path).fillna("")
    entries: list[dict[str, Any]] = []
    for _, row in frame.iterrows():
        cells = {str(k).strip(): str(v).strip() for k, v in row.items()}
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
    build_catalogue(meta, [(path.name, e) for e in entries])  # raises with every problem listed
    return meta, entries


def write_catalogue_file(meta: dict[str, Any], entries: list[dict[str, Any]], out: Path) -> None:
    """Write a single-file catalogue (metadata plus ``indicators:``)."""
    data = {**meta, "indicators": entries}
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")


def _split(cell: str | None) -> list[str]:
    return [part.strip() for part in (cell or "").split(LIST_SEPARATOR) if part.strip()]
