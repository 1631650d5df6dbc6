"""Test doubles shared by several test modules."""

from __future__ import annotations

import hashlib
import re

import numpy as np

DIM = 384
_WORD = re.compile(r"[a-z]+")


class BagOfWordsEncoder:
    """A deterministic stand-in for the sentence encoder: hashed bag of words, unit length.

    Texts sharing words get high cosine similarity, which is enough to exercise the matcher's logic without
    loading the real model.
    """

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if len(word) > 2:
                    out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out
