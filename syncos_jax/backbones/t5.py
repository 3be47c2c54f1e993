"""The T5 v1.1 text encoder in flax.nnx, as CogVideoX uses it, with its tokenizer.

``T5Encoder(ids, mask) -> states``: a port of transformers' ``T5EncoderModel``
(``ids: [B, L]`` int32 → ``states: [B, L, d_model]`` float32).

* Token embedding (``shared``), then ``num_layers`` pre-norm blocks of self-attention and a
  feed-forward, then a final norm. Dropout is inference-off.
* T5's layer norm is an RMS norm (:func:`rms_norm`): no mean subtraction, no bias, computed in
  float32.
* Attention adds a learned bias per head and *relative position bucket*
  (:func:`relative_position_bucket`, bidirectional) and does **not** scale ``q·k`` by
  ``1/√d_kv`` (:func:`t5_attention`). As in transformers, the bias table lives in the first block
  only and the ``[heads, L, L]`` bias is computed once and shared by every block.
* The feed-forward is ``wo(act(wi_0 x) · wi_1 x)`` for the gated variants (v1.1:
  ``feed_forward_proj="gated-gelu"``, GELU with the tanh approximation, transformers' ``gelu_new``)
  or ``wo(act(wi x))`` (original T5: ``"relu"``).

The residual stream is kept in float32 whatever the parameters' dtype; the matrix products run in
the parameters' dtype (bfloat16 halves the memory of the 4.7 B-parameter XXL encoder) with float32
products for float32 parameters (``Precision.HIGHEST``: no TF32 on GPUs, like torch's default).

The tokenizer (:class:`T5Tokenizer`) reads a folder's own files — ``tokenizer.json`` with the
``tokenizers`` library if present, else ``spiece.model`` with ``sentencepiece`` — and reproduces
transformers' ``tokenizer(texts, padding="max_length", max_length=226, truncation=True,
add_special_tokens=True)``: ``</s>`` appended, truncation keeping room for it, padding with
``<pad>`` (id 0) on the right, and the attention mask.

:func:`encode_prompts` is diffusers' ``CogVideoXPipeline._get_t5_prompt_embeds``: it tokenizes
to 226 tokens and runs the encoder **without** the attention mask (the pipeline passes only the
ids, so the padding tokens are attended to; CogVideoX was trained that way).

Converted weights live in a folder ``DST`` (written by :func:`save_weights`, read by
:func:`load`): ``DST/model.safetensors`` (the parameters under this module's names),
``DST/config.json`` (``{"model": "t5-encoder", "config": {...}, ...}``) and ``DST/tokenizer/``
(copies of the source's tokenizer files), so a converted folder is self-contained. Data flows one
way: :mod:`converters.t5` imports this module; this module never imports ``converters`` (nor
torch or transformers).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import shutil
import warnings
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from syncos_jax.backbones.weights_folder import (atomic_folder, check_extra, load_safetensors, read_config,
                                                   read_json_object, save_safetensors, strict_state, write_config)

Array = jax.Array

__all__ = [
    "ACTIVATIONS",
    "COGVIDEOX_T5",
    "MAX_SEQUENCE_LENGTH",
    "T5Config",
    "T5Encoder",
    "T5TextEncoder",
    "T5Tokenizer",
    "TOKENIZER_FILES",
    "TokenizedBatch",
    "encode_prompts",
    "load",
    "model_abstract",
    "position_bias",
    "read_weights_config",
    "relative_position_bucket",
    "restore_weights",
    "rms_norm",
    "save_weights",
    "t5_attention",
    "tokenizer_files",
]

WEIGHTS_MODEL = "t5-encoder"  # the "model" field of a converted folder's config.json
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"  # DST/tokenizer holds the copied tokenizer files
# The tokenizer files a converted folder keeps (those present in the source are copied).
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
MAX_SEQUENCE_LENGTH = 226  # CogVideoX's text length (the pipeline's max_sequence_length)

_HIGHEST = jax.lax.Precision.HIGHEST

# transformers' ACT2FN names → functions (the part of feed_forward_proj after "gated-")
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # transformers' GELUActivation (erf)
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),  # tanh approximation (T5 v1.1)
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "silu": jax.nn.silu,
}


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

_INT_FIELDS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "relative_attention_num_buckets",
               "relative_attention_max_distance")


@dataclasses.dataclass(frozen=True)
class T5Config:
    """The encoder's part of transformers' ``T5Config`` (defaults: transformers' defaults).

    ``feed_forward_proj`` is ``"{act}"`` or ``"gated-{act}"`` with ``act`` a key of
    :data:`ACTIVATIONS`; as in transformers, ``"gated-gelu"`` (T5 v1.1) means the tanh
    approximation (``gelu_new``). :data:`COGVIDEOX_T5` is the T5 v1.1 XXL encoder CogVideoX uses.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"

    def __post_init__(self):
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"T5Config.{name} must be a positive int, got {v!r}")
        if not isinstance(self.feed_forward_proj, str):
            raise ValueError(f"T5Config.feed_forward_proj must be a string such as 'gated-gelu', got {self.feed_forward_proj!r}")
        eps = self.layer_norm_epsilon
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"T5Config.layer_norm_epsilon must be a positive float, got {eps!r}")
        if self.relative_attention_num_buckets < 4 or self.relative_attention_num_buckets % 2:
            raise ValueError(f"T5Config.relative_attention_num_buckets must be even and >= 4 (bidirectional buckets), "
                             f"got {self.relative_attention_num_buckets}")
        self.activation  # validates feed_forward_proj

    @property
    def is_gated(self) -> bool:
        """Whether the feed-forward is gated (``wi_0``, ``wi_1``) rather than one ``wi``."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        """The :data:`ACTIVATIONS` key of the feed-forward (transformers' ``dense_act_fn``)."""
        parts = str(self.feed_forward_proj).split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"T5Config.feed_forward_proj must be '{{act}}' or 'gated-{{act}}', got {self.feed_forward_proj!r}")
        act = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]
        if act not in ACTIVATIONS:
            raise ValueError(f"T5Config.feed_forward_proj={self.feed_forward_proj!r}: activation {act!r} is not supported; "
                             f"expected one of {sorted(ACTIVATIONS)} (e.g. 'gated-gelu' for T5 v1.1, 'relu' for T5)")
        return act

    @property
    def inner_dim(self) -> int:
        """``num_heads · d_kv``, the width of ``q``, ``k``, ``v``."""
        return self.num_heads * self.d_kv

    @classmethod
    def from_hf_dict(cls, d: dict) -> "T5Config":
        """From a transformers ``config.json`` dict of a T5 (encoder) model.

        Keys this encoder does not use (the decoder's, dropout, ``architectures``, ``torch_dtype``,
        …) are ignored; a missing key takes transformers' default. Raises ``ValueError`` for a
        ``model_type`` other than ``"t5"`` (e.g. ``"umt5"``, whose blocks each have their own
        position bias), for a wrong type or value, and when ``is_gated_act`` / ``dense_act_fn``
        contradict ``feed_forward_proj``.
        """
        if not isinstance(d, dict):
            raise ValueError(f"a T5 config must be a dict, got {type(d).__name__}")
        model_type = d.get("model_type", "t5")
        if model_type != "t5":
            raise ValueError(f"config model_type={str(model_type)[:40]!r} is not supported; expected 't5' (T5 / T5 v1.1)")
        fields = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in fields})
        if "is_gated_act" in d and bool(d["is_gated_act"]) != cfg.is_gated:
            raise ValueError(f"config is_gated_act={d['is_gated_act']!r} contradicts feed_forward_proj={cfg.feed_forward_proj!r}")
        if "dense_act_fn" in d and d["dense_act_fn"] != cfg.activation:
            raise ValueError(f"config dense_act_fn={str(d['dense_act_fn'])[:40]!r} contradicts "
                             f"feed_forward_proj={cfg.feed_forward_proj!r} (which means {cfg.activation!r})")
        return cfg

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (:meth:`from_hf_dict` reads it back)."""
        return dataclasses.asdict(self)


# The T5 v1.1 XXL encoder of CogVideoX (text_encoder/config.json of THUDM/CogVideoX-2b and -5b).
COGVIDEOX_T5 = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                        relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
                        feed_forward_proj="gated-gelu")


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def relative_position_bucket(relative_position: np.ndarray, *, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128) -> np.ndarray:
    """T5's bucket ``[...]`` int32 in ``[0, num_buckets)`` of each ``relative_position: [...]`` (key − query).

    Bidirectional: half the buckets for keys after the query, half for keys before; in each half,
    distances below ``num_buckets/4`` get a bucket each, larger ones share logarithmically wider
    buckets up to ``max_distance``, beyond which all fall in the last bucket. Computed in numpy
    float32 with transformers' operation order (``_relative_position_bucket``), so boundary
    distances (16, 32, 64 for the default config) fall in the same bucket as there; sequence
    lengths are static, so this runs once per traced shape.
    """
    rp = np.asarray(relative_position).astype(np.int64)
    buckets = np.zeros(rp.shape, np.int64)
    if bidirectional:
        num_buckets //= 2
        buckets += (rp > 0).astype(np.int64) * num_buckets
        rp = np.abs(rp)
    else:
        rp = -np.minimum(rp, 0)
    max_exact = num_buckets // 2
    is_small = rp < max_exact
    with np.errstate(divide="ignore"):  # log(0) in the is_small branch, discarded by the where
        scaled = (np.log(rp.astype(np.float32) / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
                  * np.float32(num_buckets - max_exact))
    large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return (buckets + np.where(is_small, rp, large)).astype(np.int32)


def position_bias(table: Array, q_len: int, k_len: int, *, num_buckets: int, max_distance: int) -> Array:
    """The attention bias ``[heads, q_len, k_len]`` from the learned ``table: [num_buckets, heads]``."""
    rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]  # [q_len, k_len]
    bucket = relative_position_bucket(rel, bidirectional=True, num_buckets=num_buckets, max_distance=max_distance)
    return jnp.take(table, jnp.asarray(bucket), axis=0).transpose(2, 0, 1)


def rms_norm(x: Array, scale: Array, eps: float) -> Array:
    """T5's layer norm ``scale · x / √(mean(x²) + eps)`` over the last axis, in float32.

    ``x: [..., D]``, ``scale: [D]``; returns ``[..., D]`` in ``scale``'s dtype (as transformers
    casts to half-precision weights).
    """
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale * y.astype(scale.dtype)


def t5_attention(q: Array, k: Array, v: Array, bias: Array, mask: Optional[Array] = None) -> Array:
    """Attention ``[B, L, H, d]`` without the ``1/√d`` scaling (T5), with an additive ``bias``.

    ``q: [B, Lq, H, d]``, ``k, v: [B, Lk, H, d]``, ``bias: [H, Lq, Lk]``, ``mask: [B, Lk]`` (true or 1
    = attend) or ``None`` (attend everywhere). Scores and softmax are float32; the output has
    ``v``'s dtype.
    """
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=_HIGHEST, preferred_element_type=jnp.float32)
    scores = scores + bias.astype(jnp.float32)[None]
    if mask is not None:
        scores = jnp.where(mask.astype(bool)[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v, precision=_HIGHEST)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


def _dense(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=False, precision=_HIGHEST, rngs=rngs)


class RMSNorm(nnx.Module):
    """T5's layer norm with a learned ``scale: [D]`` (:func:`rms_norm`)."""

    def __init__(self, dim: int, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        return rms_norm(x, self.scale[...], self.eps)


class SelfAttention(nnx.Module):
    """``q``, ``k``, ``v``: ``[d_model, heads·d_kv]``, ``o``: ``[heads·d_kv, d_model]``, no biases."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.q = _dense(cfg.d_model, cfg.inner_dim, rngs)
        self.k = _dense(cfg.d_model, cfg.inner_dim, rngs)
        self.v = _dense(cfg.d_model, cfg.inner_dim, rngs)
        self.o = _dense(cfg.inner_dim, cfg.d_model, rngs)
        self.heads, self.d_kv = cfg.num_heads, cfg.d_kv

    def __call__(self, x: Array, bias: Array, mask: Optional[Array]) -> Array:
        """``x: [B, L, d_model]`` (already normed), ``bias: [H, L, L]``, ``mask: [B, L]`` or None → ``[B, L, d_model]``."""
        B, L, _ = x.shape
        split = lambda t: t.reshape(B, L, self.heads, self.d_kv)  # noqa: E731
        out = t5_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), bias, mask)
        return self.o(out.reshape(B, L, self.heads * self.d_kv))


class FeedForward(nnx.Module):
    """Gated: ``wo(act(wi_0 x) · wi_1 x)``; plain: ``wo(act(wi x))`` (transformers' ``DenseReluDense``)."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        if cfg.is_gated:
            self.wi_0 = _dense(cfg.d_model, cfg.d_ff, rngs)
            self.wi_1 = _dense(cfg.d_model, cfg.d_ff, rngs)
        else:
            self.wi = _dense(cfg.d_model, cfg.d_ff, rngs)
        self.wo = _dense(cfg.d_ff, cfg.d_model, rngs)
        self.gated, self.act = cfg.is_gated, ACTIVATIONS[cfg.activation]

    def __call__(self, x: Array) -> Array:
        h = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))
        return self.wo(h)


class Block(nnx.Module):
    """Pre-norm self-attention then pre-norm feed-forward, each added to the residual stream."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.attention_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.attention = SelfAttention(cfg, rngs=rngs)
        self.ff_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.ff = FeedForward(cfg, rngs=rngs)

    def __call__(self, x: Array, bias: Array, mask: Optional[Array]) -> Array:
        """``x: [B, L, d_model]`` float32 residual stream → the same, after this block."""
        x = x + self.attention(self.attention_norm(x), bias, mask).astype(jnp.float32)
        return x + self.ff(self.ff_norm(x)).astype(jnp.float32)


class T5Encoder(nnx.Module):
    """transformers' ``T5EncoderModel`` (see the module docstring): ``ids [B, L]`` → ``[B, L, d_model]``.

    Parameters: ``shared.embedding [vocab, d_model]``, ``relative_attention_bias.embedding
    [num_buckets, heads]`` (transformers keeps it in block 0), ``blocks.{i}.{attention_norm,
    attention.{q,k,v,o}, ff_norm, ff.{wi_0,wi_1|wi,wo}}``, ``final_norm.scale``.
    """

    def __init__(self, cfg: T5Config = COGVIDEOX_T5, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.shared = nnx.Embed(cfg.vocab_size, cfg.d_model, rngs=rngs)
        self.relative_attention_bias = nnx.Embed(cfg.relative_attention_num_buckets, cfg.num_heads, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def __call__(self, ids: Array, mask: Optional[Array] = None) -> Array:
        """``ids: [B, L]`` int token ids, ``mask: [B, L]`` (1 = real token) or ``None`` (no masking,
        as CogVideoX's pipeline) → ``states: [B, L, d_model]`` float32."""
        c = self.cfg
        if ids.ndim != 2:
            raise ValueError(f"ids must be [B, L], got shape {ids.shape}")
        if mask is not None and mask.shape != ids.shape:
            raise ValueError(f"mask must have the shape of ids {ids.shape}, got {mask.shape}")
        L = ids.shape[1]
        x = jnp.take(self.shared.embedding[...], ids, axis=0).astype(jnp.float32)
        bias = position_bias(self.relative_attention_bias.embedding[...], L, L, num_buckets=c.relative_attention_num_buckets,
                             max_distance=c.relative_attention_max_distance)  # computed once, shared by every block
        for block in self.blocks:
            x = block(x, bias, mask)
        return self.final_norm(x).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


class TokenizedBatch(NamedTuple):
    """``ids: [P, L]`` int32, ``mask: [P, L]`` int32 (1 = token, 0 = padding), ``truncated: [P]`` bool."""

    ids: np.ndarray
    mask: np.ndarray
    truncated: np.ndarray


def _token_text(token: Any, default: str) -> str:
    """A special token as written in tokenizer_config.json: a string or an AddedToken dict."""
    if token is None:
        return default
    if isinstance(token, dict):
        return str(token.get("content", default))
    return str(token)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


class T5Tokenizer:
    """transformers' T5 tokenization from a folder's own files, without transformers.

    ``tokenizer(texts, max_length=226) -> TokenizedBatch`` equals transformers'
    ``AutoTokenizer.from_pretrained(folder)(texts, padding="max_length", max_length=max_length,
    truncation=True, add_special_tokens=True)`` (``input_ids``, ``attention_mask``):

    * ``tokenizer.json`` (read with the ``tokenizers`` library) if the folder has one: its
      normalizer, pre-tokenizer and post-processor (T5's appends ``</s>``), truncation keeping
      room for the post-processor's tokens, padding with the pad token on the right.
    * else ``spiece.model`` (read with ``sentencepiece``), as transformers' T5Tokenizer: the
      special tokens (``</s>``, ``<pad>``, ``<unk>``, the added ``<extra_id_N>``) written in a text
      map to their ids, the text between them is encoded by the sentencepiece model, the ids are
      truncated to ``max_length − 1`` and ``</s>`` is appended, then padded with ``<pad>``.

    Attributes:
      folder: where the files were read from.
      backend: ``"tokenizers"`` or ``"sentencepiece"``.
      pad_id, eos_id: the ids of the pad and end tokens.
    """

    def __init__(self, folder: str):
        folder = os.path.abspath(folder)
        config_path = os.path.join(folder, "tokenizer_config.json")
        config = read_json_object(config_path) if os.path.exists(config_path) else {}
        self.folder = folder
        pad, eos, unk = (_token_text(config.get(k), d) for k, d in (("pad_token", "<pad>"), ("eos_token", "</s>"),
                                                                     ("unk_token", "<unk>")))
        json_path, spm_path = os.path.join(folder, "tokenizer.json"), os.path.join(folder, "spiece.model")
        if os.path.exists(json_path) and (_has_module("tokenizers") or not os.path.exists(spm_path)):
            self._init_tokenizers(json_path, pad, eos)
        elif os.path.exists(spm_path):
            self._init_sentencepiece(spm_path, config, pad, eos, unk)
        else:
            raise FileNotFoundError(f"no tokenizer.json or spiece.model in {folder!r} (expected a T5 tokenizer folder)")

    def _init_tokenizers(self, path: str, pad: str, eos: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError(f"{path!r} needs the 'tokenizers' package (pip install tokenizers)") from None
        self.backend = "tokenizers"
        self._tk = Tokenizer.from_file(path)
        self.pad_id, self.eos_id, self._pad = self._tk.token_to_id(pad), self._tk.token_to_id(eos), pad
        if self.pad_id is None:
            raise ValueError(f"{path!r} has no pad token {pad!r}")

    def _init_sentencepiece(self, path: str, config: dict, pad: str, eos: str, unk: str) -> None:
        try:
            import sentencepiece
        except ImportError:
            raise ImportError(f"{path!r} needs the 'sentencepiece' package (pip install sentencepiece)") from None
        self.backend = "sentencepiece"
        self._sp = sentencepiece.SentencePieceProcessor(model_file=path)
        specials = {}
        for text in (pad, eos, unk):
            i = self._sp.piece_to_id(text)
            if i == self._sp.unk_id() and text != unk:
                raise ValueError(f"{path!r} has no piece {text!r} (tokenizer_config.json names it a special token)")
            specials[text] = i
        decoder = config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            specials.update({_token_text(tok, ""): int(i) for i, tok in decoder.items()})
        else:  # transformers' T5Tokenizer adds <extra_id_0> … after the pieces, in reverse order
            size, extra = self._sp.get_piece_size(), int(config.get("extra_ids", 100))
            specials.update({f"<extra_id_{i}>": size + extra - 1 - i for i in range(extra)})
        added = os.path.join(os.path.dirname(path), "added_tokens.json")
        if os.path.exists(added):
            specials.update({str(k): int(v) for k, v in read_json_object(added).items()})
        specials.pop("", None)
        self._specials = specials  # written in a text, these map to their ids (not split by sentencepiece)
        self._split = re.compile("(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")")
        self.pad_id, self.eos_id = specials[pad], specials[eos]

    def _encode_spm(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in self._split.split(text):
            if part in self._specials:
                ids.append(self._specials[part])
            elif part:
                ids.extend(self._sp.encode(part))
        return ids

    def __call__(self, texts: Sequence[str], max_length: int = MAX_SEQUENCE_LENGTH) -> TokenizedBatch:
        """``TokenizedBatch(ids [P, max_length], mask [P, max_length], truncated [P])`` of ``texts``."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, got one string (wrap it in a list)")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (room for a token and </s>), got {max_length!r}")
        ids = np.full((len(texts), max_length), self.pad_id, np.int32)
        mask = np.zeros((len(texts), max_length), np.int32)
        truncated = np.zeros(len(texts), bool)
        if self.backend == "tokenizers":
            self._tk.enable_truncation(max_length, strategy="longest_first", direction="right")
            self._tk.enable_padding(direction="right", pad_id=self.pad_id, pad_token=self._pad, length=max_length)
            for i, enc in enumerate(self._tk.encode_batch(texts, add_special_tokens=True)):
                ids[i], mask[i], truncated[i] = enc.ids, enc.attention_mask, bool(enc.overflowing)
            return TokenizedBatch(ids, mask, truncated)
        for i, text in enumerate(texts):
            tokens = self._encode_spm(text)
            truncated[i] = len(tokens) > max_length - 1
            tokens = tokens[: max_length - 1] + [self.eos_id]
            ids[i, : len(tokens)] = tokens
            mask[i, : len(tokens)] = 1
        return TokenizedBatch(ids, mask, truncated)


# ---------------------------------------------------------------------------------------------
# Running it: one compiled call per batch shape
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0,))
def _forward(graphdef, state, ids: Array, mask: Optional[Array]) -> Array:
    return nnx.merge(graphdef, state)(ids, mask)


def encode_prompts(texts: Sequence[str], model: T5Encoder, tokenizer: T5Tokenizer, *,
                   max_sequence_length: int = MAX_SEQUENCE_LENGTH, batch_size: int = 8,
                   use_attention_mask: bool = False) -> np.ndarray:
    """T5 states ``[P, max_sequence_length, d_model]`` float32 of ``P = len(texts)`` prompts.

    diffusers' ``CogVideoXPipeline._get_t5_prompt_embeds``: tokenize with padding to
    ``max_sequence_length`` (226), truncation and ``</s>``, then run the encoder on the ids
    **without** the attention mask (``use_attention_mask=False``, the pipeline's behaviour: the
    padding tokens are attended to and their states are part of the embedding). A truncated text
    gives a ``UserWarning`` naming it, as the pipeline logs one.

    The prompts run in batches of ``min(batch_size, P)`` (the last one filled up with rows of pad
    tokens, whose states are dropped), so a model compiles once per batch size, whatever the texts.

    Raises:
      ValueError: no texts or a single string, a bad ``batch_size``, or token ids beyond the
        model's vocabulary (a tokenizer that does not belong to the model).
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, got one string (wrap it in a list)")
    texts = list(texts)
    if not texts:
        raise ValueError("texts must hold at least one prompt, got none")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    tokens = tokenizer(texts, max_sequence_length)
    vocab = model.cfg.vocab_size
    if tokens.ids.max() >= vocab:  # jnp.take would silently read NaN
        raise ValueError(f"the tokenizer ({tokenizer.folder!r}) gave token id {int(tokens.ids.max())} >= the model's "
                         f"vocab_size {vocab}: tokenizer and encoder do not belong together")
    if tokens.truncated.any():
        cut = [texts[i][:60] for i in np.flatnonzero(tokens.truncated)]
        warnings.warn(f"{len(cut)} prompt(s) longer than max_sequence_length={max_sequence_length} tokens were truncated: "
                      f"{cut[:5]}", stacklevel=2)
    P, B = len(texts), min(batch_size, len(texts))
    rows = -(-P // B) * B
    ids = np.full((rows, max_sequence_length), tokenizer.pad_id, np.int32)
    mask = np.zeros((rows, max_sequence_length), np.int32)
    ids[:P], mask[:P] = tokens.ids, tokens.mask
    graphdef, state = nnx.split(model)
    out = []
    for s in range(0, rows, B):
        m = jnp.asarray(mask[s : s + B]) if use_attention_mask else None
        out.append(np.asarray(_forward(graphdef, state, jnp.asarray(ids[s : s + B]), m), np.float32))
    return np.concatenate(out)[:P]


@dataclasses.dataclass
class T5TextEncoder:
    """A converted T5 encoder and its tokenizer (:func:`load`): ``encoder.encode(texts) -> [P, 226, d_model]``.

    Attributes:
      model: the :class:`T5Encoder` (parameters on the default device).
      tokenizer: its :class:`T5Tokenizer`.
      cfg: the :class:`T5Config`.
      folder: the converted folder it came from, if any.
    """

    model: T5Encoder
    tokenizer: T5Tokenizer
    cfg: T5Config
    folder: Optional[str] = None

    def encode(self, texts: Sequence[str], *, max_sequence_length: int = MAX_SEQUENCE_LENGTH, batch_size: int = 8,
               use_attention_mask: bool = False) -> np.ndarray:
        """``[len(texts), max_sequence_length, d_model]`` float32, as :func:`encode_prompts` (CogVideoX's pipeline)."""
        return encode_prompts(texts, self.model, self.tokenizer, max_sequence_length=max_sequence_length,
                              batch_size=batch_size, use_attention_mask=use_attention_mask)


# ---------------------------------------------------------------------------------------------
# Converted weights: DST/model.safetensors + DST/config.json + DST/tokenizer/
# ---------------------------------------------------------------------------------------------


def model_abstract(config) -> tuple[T5Config, Any, Any]:
    """``(T5Config, graphdef, abstract params)`` from a :class:`T5Config` or a transformers config dict.

    The model is built under ``nnx.eval_shape``: the params hold ``jax.ShapeDtypeStruct``, nothing
    is allocated (the XXL encoder has 4.76 B parameters).
    """
    cfg = config if isinstance(config, T5Config) else T5Config.from_hf_dict(config)
    model = nnx.eval_shape(lambda: T5Encoder(cfg, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(model)
    return cfg, graphdef, params


def tokenizer_files(folder: str) -> list[str]:
    """The :data:`TOKENIZER_FILES` present in ``folder`` (paths); raises FileNotFoundError if it has
    neither ``tokenizer.json`` nor ``spiece.model``."""
    present = [os.path.join(folder, f) for f in TOKENIZER_FILES if os.path.isfile(os.path.join(folder, f))]
    if not any(os.path.basename(p) in ("tokenizer.json", "spiece.model") for p in present):
        raise FileNotFoundError(f"no tokenizer.json or spiece.model in {folder!r} (expected a T5 tokenizer folder)")
    return present


def save_weights(dst: str, state, cfg: T5Config, *, tokenizer: str, extra: Optional[dict] = None) -> None:
    """Writes ``state`` (the params nnx.State) to ``DST/model.safetensors``, ``cfg`` to
    ``DST/config.json`` and copies the tokenizer files of the folder ``tokenizer`` to ``DST/tokenizer/``.

    ``extra`` (JSON-serialisable, e.g. the dtype and the source folder) is stored in config.json
    too. Atomic (:func:`~syncos_jax.backbones.weights_folder.atomic_folder`): a failed save writes
    nothing to the destination. ``state`` is not modified.

    Raises:
      FileExistsError: if ``dst`` exists and is not an empty folder.
      FileNotFoundError: if ``tokenizer`` has neither ``tokenizer.json`` nor ``spiece.model``.
      ValueError: if ``extra`` names ``model`` or ``config``.
    """
    check_extra(extra)
    files = tokenizer_files(tokenizer)
    with atomic_folder(dst) as tmp:
        save_safetensors(os.path.join(tmp, WEIGHTS_FILE), state, {"format": "np", "model": WEIGHTS_MODEL})
        write_config(tmp, WEIGHTS_MODEL, cfg.to_dict(), extra)
        os.makedirs(os.path.join(tmp, TOKENIZER_DIR))
        for p in files:
            shutil.copyfile(p, os.path.join(tmp, TOKENIZER_DIR, os.path.basename(p)))


def read_weights_config(dst: str) -> tuple[T5Config, dict]:
    """``(T5Config, the whole config.json dict)`` of a folder written by :func:`save_weights`.

    Raises:
      FileNotFoundError: if ``DST/config.json`` does not exist.
      ValueError: naming the file, if it is not a JSON object, holds another model's weights, or
        its ``config`` is not a valid T5 config.
    """
    return read_config(dst, WEIGHTS_MODEL, T5Config.from_hf_dict, what="T5 encoder")


def restore_weights(dst: str, abstract) -> Any:
    """A new nnx.State shaped like ``abstract`` (from :func:`model_abstract`) holding ``DST/model.safetensors``.

    ``abstract`` is not modified. The arrays keep the dtype they were saved in (float32 or
    bfloat16). Strict (:func:`~syncos_jax.backbones.weights_folder.strict_state`): the file must
    hold exactly the parameters of ``abstract``, with its shapes, all finite.

    Raises:
      FileNotFoundError: if the weights file is missing.
      ValueError: naming ``dst``, for an unreadable file, or listing missing, unexpected and
        mis-shaped parameters, or those holding NaN or Inf.
    """
    return strict_state(dst, load_safetensors(dst, WEIGHTS_FILE), abstract)


def load(dst: str) -> T5TextEncoder:
    """The :class:`T5TextEncoder` (model + tokenizer) of a folder written by :func:`save_weights`
    (``converters.t5.convert_folder(src, dst)``); nothing is converted.

    Raises:
      FileNotFoundError: no config.json, weights file or tokenizer files.
      ValueError: as :func:`read_weights_config` and :func:`restore_weights`.
    """
    cfg, _ = read_weights_config(dst)
    _, graphdef, abstract = model_abstract(cfg)
    tokenizer = T5Tokenizer(os.path.join(os.path.abspath(dst), TOKENIZER_DIR))
    return T5TextEncoder(nnx.merge(graphdef, restore_weights(dst, abstract)), tokenizer, cfg, os.path.abspath(dst))
