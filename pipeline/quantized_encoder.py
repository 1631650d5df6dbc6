"""The sentence encoder with 8-bit integer matrix products, whose vectors do not depend on the texts beside them.

Why not torch's dynamic quantisation: it scales each batch of activations with one factor computed over the whole
batch, padding included, so a text's vector changed with the texts encoded beside it (cosine down to 0.945 for
the same passage in two batches). Screening a document alone or inside a submission, or resuming a killed batch
from the embedding cache, then gave other scores. Here:

- every token's activations get their own scale, and weights one scale per output channel, so a token is
  quantised the same way whatever else is in the batch;
- the integer products accumulate exactly in int32 (``torch._int_mm``, oneDNN with VNNI where the CPU has it);
- texts are grouped by their exact token count, so nothing is padded: attention and mean pooling see the same
  numbers for a text alone or among others.

A text's vector is then identical, bit for bit, alone or in any batch (``tests/test_quantized_encoder.py``), and
it stays within cosine 0.994 of the float32 model's (0.997 on average over policy passages). Encoding is 2-2.5x
faster than float32 on an AVX-512 VNNI CPU (``docs/operations.md``).

Only BERT-style models with mean pooling and unit normalisation, like the packaged MiniLM, are supported; any
other model is refused with a message that names the float32 setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Measured on the bench submission's 582 passages (2-core AVX-512 VNNI EPYC): 2,048 tokens per forward pass
# 2.3-2.7 s, 4,096 2.0-2.3 s, 8,192 1.8-1.9 s; 4,096 keeps each intermediate tensor near 25 MB.
TOKENS_PER_CALL = 4096


class _Int8Linear:
    """A linear layer (or several sharing one input, concatenated) with int8 weights, one scale per output
    channel, and int8 activations with one scale per token."""

    def __init__(self, layers: list[torch.nn.Linear]) -> None:
        weight = torch.cat([layer.weight.detach().float() for layer in layers])
        self.bias = torch.cat([layer.bias.detach().float() for layer in layers])
        self.weight_scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.weight_t = torch.round(weight / self.weight_scale[:, None]).clamp(-127, 127).to(torch.int8).t()
        self.weight_t = self.weight_t.contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        # |x / scale| <= 127 (to float rounding), so the rounded values fit int8 without a clamp
        quantised = torch.div(x, scale).round_().to(torch.int8)
        out = torch._int_mm(quantised, self.weight_t).float()
        # in place: new tensors of this size cost more than the multiplication (measured: a layer 1.5-2.6x faster)
        return out.mul_(scale * self.weight_scale).add_(self.bias)


class _Block:
    """One transformer block: self-attention and feed-forward, each followed by a residual LayerNorm."""

    def __init__(self, layer: Any, heads: int) -> None:
        attention = layer.attention
        self.heads = heads
        self.qkv = _Int8Linear([attention.self.query, attention.self.key, attention.self.value])
        self.attention_out = _Int8Linear([attention.output.dense])
        self.norm1 = attention.output.LayerNorm
        self.feed_in = _Int8Linear([layer.intermediate.dense])
        self.feed_out = _Int8Linear([layer.output.dense])
        self.norm2 = layer.output.LayerNorm

    def __call__(self, x: torch.Tensor, texts: int, tokens: int) -> torch.Tensor:
        width = x.shape[1]
        qkv = self.qkv(x).reshape(texts, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(-1, width)
        x = _norm(self.norm1, x + self.attention_out(context))
        return _norm(self.norm2, x + self.feed_out(F.gelu(self.feed_in(x))))


def _norm(layer: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)


class QuantizedEncoder:
    """Encodes texts with an 8-bit copy of a sentence-transformers BERT model (its adapter, if any, already
    merged in). ``tokens_per_call`` bounds the tokens of one forward pass (speed against memory)."""

    def __init__(self, model: SentenceTransformer, *, tokens_per_call: int = TOKENS_PER_CALL) -> None:
        bert = _supported_bert(model)
        self.tokenizer = model.tokenizer
        self.max_tokens = model.max_seq_length
        self.tokens_per_call = tokens_per_call
        embeddings = bert.embeddings
        self.word = embeddings.word_embeddings.weight.detach()
        self.position = embeddings.position_embeddings.weight.detach()
        self.token_type = embeddings.token_type_embeddings.weight.detach()[0]
        self.embedding_norm = embeddings.LayerNorm
        self.blocks = [_Block(layer, bert.config.num_attention_heads) for layer in bert.encoder.layer]
        self.width = bert.config.hidden_size

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text, in order."""
        out = np.zeros((len(texts), self.width), dtype=np.float32)
        if not texts:
            return out
        # sentence-transformers strips each text before tokenising; so does this, to give the same tokens
        ids = self.tokenizer(
            [t.strip() for t in texts], truncation=True, max_length=self.max_tokens, add_special_tokens=True
        )["input_ids"]
        by_length: dict[int, list[int]] = {}
        for row, tokens in enumerate(ids):
            by_length.setdefault(len(tokens), []).append(row)
        with torch.inference_mode():
            for length, rows in by_length.items():
                per_call = max(1, self.tokens_per_call // length)
                for start in range(0, len(rows), per_call):
                    part = rows[start : start + per_call]
                    out[part] = self._forward(torch.tensor([ids[r] for r in part])).numpy()
        return out

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        texts, tokens = ids.shape
        x = self.word[ids] + self.position[:tokens] + self.token_type
        x = _norm(self.embedding_norm, x).reshape(texts * tokens, self.width)
        for block in self.blocks:
            x = block(x, texts, tokens)
        return F.normalize(x.reshape(texts, tokens, self.width).mean(dim=1), dim=1)


def _supported_bert(model: SentenceTransformer) -> Any:
    """The model's BERT encoder, or ``ConfigError`` when the model is not one this encoder reproduces."""
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    bert = getattr(modules[0], "auto_model", None) if modules else None
    config = getattr(bert, "config", None)
    pooling = modules[1] if len(modules) > 1 else None
    supported = (
        names == ["Transformer", "Pooling", "Normalize"]
        and getattr(config, "model_type", None) == "bert"
        and getattr(config, "hidden_act", None) == "gelu"
        and getattr(pooling, "pooling_mode", None) == "mean"
    )
    if not supported:
        described = (
            f"{' + '.join(names)} ({getattr(config, 'model_type', 'unknown')} layers, "
            f"{getattr(pooling, 'pooling_mode', 'no')} pooling)"
        )
        raise ConfigError(
            f"the 8-bit encoder supports mean-pooled, normalised BERT models; this model is {described}: "
            "set QPM_ENCODER_INT8=off to encode it in float32"
        )
    return bert
