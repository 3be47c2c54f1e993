"""CogVideoX in flax.nnx: a port of diffusers' ``CogVideoXTransformer3DModel`` (2B and 5B, v1.0).

``CogVideoXTransformer(x, t, text) -> v``:

* ``x: [B, F, H, W, C]`` latents (channels last; diffusers uses ``[B, F, C, H, W]``),
  ``t: [B]`` or per-frame ``[B, F]`` model times, ``text: [B, L, text_embed_dim]`` T5 states.
* Patch embedding (a per-frame ``p×p`` convolution, written as a matmul over patches), text
  projection, sinusoidal time embedding + MLP.
* Positions: the 2B model adds the 3-D sin-cos table to the video tokens (recomputed for any
  latent size, as diffusers does when the size differs from ``sample_*``); the 5B model applies
  the 3-D rotary embedding (diffusers' pipeline computes it; here the model does) to the video
  part of ``q`` and ``k``.
* ``num_layers`` blocks of expert adaptive LayerNorm (one shared LayerNorm, separate shift /
  scale / gate for the text and video streams), joint attention over ``[text; video]`` with a
  per-head LayerNorm on ``q`` and ``k`` (``jax.nn.dot_product_attention``: XLA's by default,
  cuDNN's flash attention through :func:`set_attention`, which :func:`open_backbone` chooses on
  an sm80+ CUDA GPU with half-precision weights), and a GELU-tanh feed-forward over the joint sequence.
* Final LayerNorm, adaptive LayerNorm (shift, scale), projection, unpatchify.

Per-frame timesteps (for FIFO-Diffusion) modulate each frame's video tokens with that frame's
time embedding; the text stream takes the mean of the frames' embeddings. With all frames equal
this is exactly the scalar-time model.

Parameter names follow diffusers' module tree (``transformer_blocks.3.attn1.to_q``), so the
converter (:mod:`converters.cogvideox`) is a short rule table.

Converted weights live in a folder ``DST`` with ``DST/params`` (orbax) and ``DST/config.json``
(``{"model": "cogvideox", "config": {...}, ...}``). This module owns that format:
:func:`model_abstract` (the parameters' shapes, nothing initialised), :func:`save_weights`,
:func:`restore_weights` and :func:`load`. Data flows one way: :mod:`converters.cogvideox` imports
this module to build and save the state; this module never imports ``converters``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from syncos_jax import schedules
from syncos_jax.backbones import cogvideox_vae, t5
from syncos_jax.backbones.protocol import BackboneError, NnxDenoiser
from syncos_jax.backbones.weights_folder import (atomic_folder, check_extra, flat_key, read_config, strict_state,
                                                   write_config)
from syncos_jax.prompts import StructuredPrompt, check_texts

Array = jax.Array

__all__ = [
    "CogVideoXConfig",
    "CogVideoXTransformer",
    "CogVideoXBackbone",
    "check_compatible",
    "default_attention",
    "set_attention",
    "cogvideox_denoiser",
    "load",
    "open_backbone",
    "load_text_embeddings",
    "model_abstract",
    "read_weights_config",
    "restore_weights",
    "rotary_pos_embed_3d",
    "save_weights",
    "sincos_pos_embed_3d",
]

WEIGHTS_MODEL = "cogvideox"  # the "model" field of a converted folder's config.json


@dataclasses.dataclass(frozen=True)
class CogVideoXConfig:
    """The diffusers config of ``CogVideoXTransformer3DModel`` (defaults: CogVideoX-2B)."""

    num_attention_heads: int = 30
    attention_head_dim: int = 64
    in_channels: int = 16
    out_channels: Optional[int] = 16
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    time_embed_dim: int = 512
    ofs_embed_dim: Optional[int] = None
    text_embed_dim: int = 4096
    num_layers: int = 30
    dropout: float = 0.0
    attention_bias: bool = True
    sample_width: int = 90
    sample_height: int = 60
    sample_frames: int = 49
    patch_size: int = 2
    patch_size_t: Optional[int] = None
    temporal_compression_ratio: int = 4
    max_text_seq_length: int = 226
    activation_fn: str = "gelu-approximate"
    timestep_activation_fn: str = "silu"
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    use_rotary_positional_embeddings: bool = False
    use_learned_positional_embeddings: bool = False
    patch_bias: bool = True

    def __post_init__(self):
        unsupported = []
        if self.patch_size_t is not None:
            unsupported.append(f"patch_size_t={self.patch_size_t} (CogVideoX 1.5)")
        if self.ofs_embed_dim:
            unsupported.append(f"ofs_embed_dim={self.ofs_embed_dim} (image-to-video 1.5)")
        if self.use_learned_positional_embeddings:
            unsupported.append("use_learned_positional_embeddings=True (5B image-to-video)")
        if self.activation_fn != "gelu-approximate" or self.timestep_activation_fn != "silu":
            unsupported.append(f"activation_fn={self.activation_fn!r}, timestep_activation_fn={self.timestep_activation_fn!r}")
        if not self.norm_elementwise_affine:
            unsupported.append("norm_elementwise_affine=False")
        if unsupported:
            raise NotImplementedError("this port covers CogVideoX 1.0 text-to-video (2B, 5B); unsupported: " + "; ".join(unsupported))

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def output_channels(self) -> int:
        return self.out_channels or self.in_channels

    @classmethod
    def from_diffusers(cls, config: dict) -> "CogVideoXConfig":
        """From a diffusers ``config.json`` dict (``_class_name`` etc. ignored; unknown keys are an error)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in config.items() if not k.startswith("_")}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown CogVideoX config keys {unknown}; expected a subset of {sorted(fields)}")
        kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v, ann = data[f.name], str(f.type)
            base = ann.replace("Optional[", "").rstrip("]")
            if v is None and ann.startswith("Optional["):
                continue
            ok = isinstance(v, kinds[base]) and (base == "bool" or not isinstance(v, bool))
            if not ok:
                raise ValueError(f"CogVideoX config key {f.name!r} must be {ann}, got {type(v).__name__} {str(v)[:40]!r}")
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Position tables (numpy, as diffusers computes them)
# ---------------------------------------------------------------------------------------------


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.outer(pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed_3d(embed_dim: int, grid_h: int, grid_w: int, frames: int, spatial_scale: float, temporal_scale: float) -> np.ndarray:
    """diffusers' ``get_3d_sincos_pos_embed``: ``[frames·grid_h·grid_w, embed_dim]`` float32.

    The first quarter of the channels encodes the frame, the rest the position in the frame
    (half from the column, half from the row, in diffusers' order).
    """
    if embed_dim % 16:
        raise ValueError(f"the sin-cos table needs embed_dim divisible by 16, got {embed_dim}")
    d_s, d_t = 3 * embed_dim // 4, embed_dim // 4
    gh = np.arange(grid_h, dtype=np.float32) / np.float32(spatial_scale)
    gw = np.arange(grid_w, dtype=np.float32) / np.float32(spatial_scale)
    cols, rows = np.meshgrid(gw, gh, indexing="xy")  # [h, w] each
    spatial = np.concatenate([_sincos_1d(d_s // 2, cols), _sincos_1d(d_s // 2, rows)], axis=1)  # [h·w, d_s]
    gt = np.arange(frames, dtype=np.float32) / np.float32(temporal_scale)
    temporal = _sincos_1d(d_t, gt)  # [F, d_t]
    table = np.concatenate(
        [np.repeat(temporal[:, None], grid_h * grid_w, axis=1), np.repeat(spatial[None], frames, axis=0)], axis=-1
    )
    return table.reshape(frames * grid_h * grid_w, embed_dim).astype(np.float32)


def _rotary_1d(dim: int, pos: np.ndarray, theta: float = 10000.0):
    freqs = 1.0 / (np.float32(theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    f = np.outer(pos.astype(np.float32), freqs.astype(np.float32))
    return np.repeat(np.cos(f), 2, axis=1), np.repeat(np.sin(f), 2, axis=1)


def _crop_region(grid_h: int, grid_w: int, base_w: int, base_h: int):
    r = grid_h / grid_w
    if r > base_h / base_w:
        rh, rw = base_h, int(round(base_h / grid_h * grid_w))
    else:
        rw, rh = base_w, int(round(base_w / grid_w * grid_h))
    top, left = int(round((base_h - rh) / 2.0)), int(round((base_w - rw) / 2.0))
    return (top, left), (top + rh, left + rw)


def rotary_pos_embed_3d(head_dim: int, grid_h: int, grid_w: int, frames: int, base_h: int, base_w: int):
    """The CogVideoX-5B rotary table ``(cos, sin)``, each ``[frames·grid_h·grid_w, head_dim]``.

    As diffusers' pipeline: the grid is the crop of a ``base_h × base_w`` grid
    (``get_resize_crop_region_for_grid``) sampled with ``linspace``; channels split into a quarter
    for time and three eighths each for rows and columns.
    """
    (top, left), (bottom, right) = _crop_region(grid_h, grid_w, base_w, base_h)
    gh = np.linspace(top, bottom * (grid_h - 1) / grid_h, grid_h, dtype=np.float32)
    gw = np.linspace(left, right * (grid_w - 1) / grid_w, grid_w, dtype=np.float32)
    gt = np.linspace(0, frames * (frames - 1) / frames, frames, dtype=np.float32)
    d_t, d_h = head_dim // 4, head_dim // 8 * 3
    parts = [_rotary_1d(d_t, gt), _rotary_1d(d_h, gh), _rotary_1d(d_h, gw)]

    def combine(i):
        t, h, w = (p[i] for p in parts)
        t = np.broadcast_to(t[:, None, None], (frames, grid_h, grid_w, t.shape[-1]))
        h = np.broadcast_to(h[None, :, None], (frames, grid_h, grid_w, h.shape[-1]))
        w = np.broadcast_to(w[None, None, :], (frames, grid_h, grid_w, w.shape[-1]))
        return np.concatenate([t, h, w], axis=-1).reshape(frames * grid_h * grid_w, -1).astype(np.float32)

    return combine(0), combine(1)


def apply_rotary(x: Array, cos: Array, sin: Array) -> Array:
    """Rotates pairs ``(x[2i], x[2i+1])``; ``x: [B, S, heads, D]``, ``cos, sin: [S, D]``."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return (x.astype(jnp.float32) * cos[:, None] + rotated.astype(jnp.float32) * sin[:, None]).astype(x.dtype)


def timestep_embedding(t: Array, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0, max_period: float = 10000.0) -> Array:
    """diffusers' ``get_timestep_embedding``: ``[..., dim]`` of times ``t: [...]``."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - shift)
    args = t.astype(jnp.float32)[..., None] * jnp.exp(exponent)
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[..., half:], emb[..., :half]], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
    return emb


# ---------------------------------------------------------------------------------------------
# Modules (names follow diffusers)
# ---------------------------------------------------------------------------------------------


class PatchEmbed(nnx.Module):
    """``proj``: the ``p×p`` patch convolution, kernel ``[p, p, C, D]``; ``text_proj``: Linear."""

    def __init__(self, cfg: CogVideoXConfig, *, rngs: nnx.Rngs):
        p, D = cfg.patch_size, cfg.inner_dim
        self.proj = nnx.Conv(cfg.in_channels, D, (p, p), strides=(p, p), padding="VALID", use_bias=cfg.patch_bias, rngs=rngs)
        self.text_proj = nnx.Linear(cfg.text_embed_dim, D, rngs=rngs)
        self.patch = p

    def __call__(self, x: Array) -> Array:
        """``x: [B, F, H, W, C]`` → tokens ``[B, F·h·w, D]`` ordered (frame, row, column)."""
        B, F, H, W, C = x.shape
        p = self.patch
        patches = x.reshape(B, F, H // p, p, W // p, p, C).transpose(0, 1, 2, 4, 3, 5, 6)
        kernel = self.proj.kernel[...].reshape(p * p * C, -1)
        tokens = patches.reshape(B, F * (H // p) * (W // p), p * p * C) @ kernel
        if self.proj.bias is not None:
            tokens = tokens + self.proj.bias[...]
        return tokens


class TimestepEmbedding(nnx.Module):
    def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs):
        self.linear_1 = nnx.Linear(in_dim, out_dim, rngs=rngs)
        self.linear_2 = nnx.Linear(out_dim, out_dim, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.linear_2(nnx.silu(self.linear_1(x)))


class LayerNormZero(nnx.Module):
    """Expert adaptive LayerNorm: one LayerNorm, shift/scale/gate for video and for text."""

    def __init__(self, cfg: CogVideoXConfig, *, rngs: nnx.Rngs):
        D = cfg.inner_dim
        self.linear = nnx.Linear(cfg.time_embed_dim, 6 * D, rngs=rngs)
        self.norm = nnx.LayerNorm(D, epsilon=cfg.norm_eps, rngs=rngs)

    def __call__(self, video, text, temb_video, temb_text):
        # video: [B, N, D], text: [B, L, D]; temb_video: [B, N, Dt] (per token) or [B, 1, Dt]; temb_text: [B, 1, Dt]
        D = video.shape[-1]
        mv = self.linear(nnx.silu(temb_video))
        mt = self.linear(nnx.silu(temb_text))
        shift, scale, gate = mv[..., :D], mv[..., D : 2 * D], mv[..., 2 * D : 3 * D]
        e_shift, e_scale, e_gate = mt[..., 3 * D : 4 * D], mt[..., 4 * D : 5 * D], mt[..., 5 * D :]
        return (self.norm(video) * (1 + scale) + shift, self.norm(text) * (1 + e_scale) + e_shift, gate, e_gate)


class Attention(nnx.Module):
    """Joint attention with per-head LayerNorm on q and k (diffusers' ``Attention`` + CogVideoX processor)."""

    def __init__(self, cfg: CogVideoXConfig, *, rngs: nnx.Rngs):
        D, hd = cfg.inner_dim, cfg.attention_head_dim
        self.heads = cfg.num_attention_heads
        self.to_q = nnx.Linear(D, D, use_bias=cfg.attention_bias, rngs=rngs)
        self.to_k = nnx.Linear(D, D, use_bias=cfg.attention_bias, rngs=rngs)
        self.to_v = nnx.Linear(D, D, use_bias=cfg.attention_bias, rngs=rngs)
        self.norm_q = nnx.LayerNorm(hd, epsilon=1e-6, rngs=rngs)
        self.norm_k = nnx.LayerNorm(hd, epsilon=1e-6, rngs=rngs)
        self.to_out = nnx.Linear(D, D, rngs=rngs)
        self.implementation = None  # jax.nn.dot_product_attention's: None (XLA's), "xla" or "cudnn"; see set_attention

    def __call__(self, x: Array, text_len: int, rotary=None) -> Array:
        B, S, D = x.shape
        h = self.heads
        q = self.norm_q(self.to_q(x).reshape(B, S, h, D // h))
        k = self.norm_k(self.to_k(x).reshape(B, S, h, D // h))
        v = self.to_v(x).reshape(B, S, h, D // h)
        if rotary is not None:
            cos, sin = rotary
            q = q.at[:, text_len:].set(apply_rotary(q[:, text_len:], cos, sin))
            k = k.at[:, text_len:].set(apply_rotary(k[:, text_len:], cos, sin))
        chosen = {} if self.implementation is None else {"implementation": self.implementation}
        out = jax.nn.dot_product_attention(q, k, v, **chosen)
        return self.to_out(out.reshape(B, S, D))


class FeedForward(nnx.Module):
    def __init__(self, cfg: CogVideoXConfig, *, rngs: nnx.Rngs):
        D = cfg.inner_dim
        self.proj_in = nnx.Linear(D, 4 * D, rngs=rngs)
        self.proj_out = nnx.Linear(4 * D, D, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.proj_out(jax.nn.gelu(self.proj_in(x), approximate=True))


class Block(nnx.Module):
    def __init__(self, cfg: CogVideoXConfig, *, rngs: nnx.Rngs):
        self.norm1 = LayerNormZero(cfg, rngs=rngs)
        self.attn1 = Attention(cfg, rngs=rngs)
        self.norm2 = LayerNormZero(cfg, rngs=rngs)
        self.ff = FeedForward(cfg, rngs=rngs)

    def __call__(self, video, text, temb_video, temb_text, rotary):
        L = text.shape[1]
        nv, nt, gate, e_gate = self.norm1(video, text, temb_video, temb_text)
        attn = self.attn1(jnp.concatenate([nt, nv], axis=1), L, rotary)
        video = video + gate * attn[:, L:]
        text = text + e_gate * attn[:, :L]
        nv, nt, gate, e_gate = self.norm2(video, text, temb_video, temb_text)
        ff = self.ff(jnp.concatenate([nt, nv], axis=1))
        return video + gate * ff[:, L:], text + e_gate * ff[:, :L]


class AdaLayerNormOut(nnx.Module):
    """diffusers' ``AdaLayerNorm`` with ``chunk_dim=1``: ``shift, scale = linear(silu(temb))``."""

    def __init__(self, cfg: CogVideoXConfig, *, rngs: nnx.Rngs):
        D = cfg.inner_dim
        self.linear = nnx.Linear(cfg.time_embed_dim, 2 * D, rngs=rngs)
        self.norm = nnx.LayerNorm(D, epsilon=cfg.norm_eps, rngs=rngs)

    def __call__(self, x, temb):
        D = x.shape[-1]
        m = self.linear(nnx.silu(temb))
        return self.norm(x) * (1 + m[..., D:]) + m[..., :D]


class CogVideoXTransformer(nnx.Module):
    """The CogVideoX transformer (see the module docstring). v-prediction."""

    prediction_type = "v_prediction"

    def __init__(self, cfg: CogVideoXConfig = CogVideoXConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        D = cfg.inner_dim
        self.patch_embed = PatchEmbed(cfg, rngs=rngs)
        self.time_embedding = TimestepEmbedding(D, cfg.time_embed_dim, rngs=rngs)
        self.transformer_blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.norm_final = nnx.LayerNorm(D, epsilon=cfg.norm_eps, rngs=rngs)
        self.norm_out = AdaLayerNormOut(cfg, rngs=rngs)
        self.proj_out = nnx.Linear(D, cfg.patch_size**2 * cfg.output_channels, rngs=rngs)

    def positions(self, frames: int, height: int, width: int):
        """``(sin-cos table [N, D] or None, rotary (cos, sin) [N, head_dim] or None)`` for a latent size."""
        c, p = self.cfg, self.cfg.patch_size
        gh, gw = height // p, width // p
        if c.use_rotary_positional_embeddings:
            cos, sin = rotary_pos_embed_3d(c.attention_head_dim, gh, gw, frames, c.sample_height // p, c.sample_width // p)
            return None, (jnp.asarray(cos), jnp.asarray(sin))
        table = sincos_pos_embed_3d(c.inner_dim, gh, gw, frames, c.spatial_interpolation_scale, c.temporal_interpolation_scale)
        return jnp.asarray(table), None

    def __call__(self, x: Array, t: Array, text: Array) -> Array:
        """``x: [B, F, H, W, C]``, ``t: [B]`` or ``[B, F]``, ``text: [B, L, text_embed_dim]`` → ``[B, F, H, W, C_out]``.

        Computes in the weights' dtype: with bfloat16 weights (``syncos convert cogvideox --dtype
        bf16``) ``x``, the time embedding and ``text`` are cast to bfloat16, so no matmul is promoted
        to float32; the output is cast back to ``x``'s dtype (the samplers keep float32 latents).
        """
        c = self.cfg
        out_dtype, dtype = x.dtype, self.proj_out.kernel.dtype
        x, text = x.astype(dtype), jnp.asarray(text).astype(dtype)
        B, F, H, W, C = x.shape
        p = c.patch_size
        if C != c.in_channels or H % p or W % p:
            raise ValueError(f"x has frames {(H, W, C)}; expected {c.in_channels} channels and H, W multiples of {p}")
        if text.ndim != 3 or text.shape[0] != B or text.shape[-1] != c.text_embed_dim:
            raise ValueError(f"text must be [B={B}, L, {c.text_embed_dim}], got {text.shape}")
        t = jnp.asarray(t)
        if t.ndim == 0:
            t = jnp.broadcast_to(t, (B,))
        emb = self.time_embedding(timestep_embedding(t, c.inner_dim, c.flip_sin_to_cos, c.freq_shift).astype(x.dtype))
        hw = (H // p) * (W // p)
        if t.ndim == 2:  # per-frame: [B, F, Dt] → per video token; text takes the frames' mean
            temb_video = jnp.repeat(emb, hw, axis=1)
            temb_text = emb.mean(axis=1, keepdims=True)
        else:
            temb_video = temb_text = emb[:, None]
        video = self.patch_embed(x)
        text_h = self.patch_embed.text_proj(text)
        table, rotary = self.positions(F, H, W)
        if table is not None:
            video = video + table.astype(video.dtype)
        for block in self.transformer_blocks:
            video, text_h = block(video, text_h, temb_video, temb_text, rotary)
        video = self.norm_out(self.norm_final(video), temb_video)
        out = self.proj_out(video)  # [B, N, C_out·p·p], channels before the patch pixels
        out = out.reshape(B, F, H // p, W // p, c.output_channels, p, p).transpose(0, 1, 2, 5, 3, 6, 4)
        return out.reshape(B, F, H, W, c.output_channels).astype(out_dtype)


ATTENTION_IMPLEMENTATIONS = (None, "xla", "cudnn")


def default_attention(dtype, platform: str, compute_capability: Optional[str] = "8.0",
                      head_dim: int = 64) -> Optional[str]:
    """The attention implementation :func:`open_backbone` chooses: ``"cudnn"`` (cuDNN's flash attention,
    which never materialises the ``S×S`` logits: 17 776² per head at the 2B size, about 71 GiB per CFG
    pair in XLA's) on a CUDA GPU of compute capability 8.0 or more (``compute_capability``, e.g. a
    device's ``"9.0"``; ``None`` for a device without one, such as ROCm) with bfloat16 or float16
    weights and a head size cuDNN takes (a multiple of 8, at most 128); else ``None``
    (``jax.nn.dot_product_attention``'s default, XLA's)."""
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    try:
        sm80 = compute_capability is not None and float(compute_capability) >= 8.0
    except ValueError:
        sm80 = False
    heads_ok = head_dim % 8 == 0 and head_dim <= 128
    return "cudnn" if platform == "gpu" and half and sm80 and heads_ok else None


def set_attention(model: CogVideoXTransformer, implementation: Optional[str]) -> CogVideoXTransformer:
    """Sets every attention layer's ``jax.nn.dot_product_attention(implementation=...)`` (one of
    :data:`ATTENTION_IMPLEMENTATIONS`) and returns ``model``. It is static: split the model (or build
    its denoiser) after setting it."""
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {implementation!r}")
    for block in model.transformer_blocks:
        block.attn1.implementation = implementation
    return model


def cogvideox_denoiser(model: CogVideoXTransformer, *, frames_per_chunk: Optional[int] = 13, frame_shape=None) -> NnxDenoiser:
    """The model as a Denoiser (``cond`` = text embeddings ``[B, L, text_embed_dim]``; per-frame times allowed)."""
    return NnxDenoiser(model, prediction_type="v_prediction", frames_per_chunk=frames_per_chunk, per_frame_timesteps=True,
                       frame_shape=frame_shape)


# ---------------------------------------------------------------------------------------------
# Converted weights: DST/params (orbax) + DST/config.json
# ---------------------------------------------------------------------------------------------


def model_abstract(config: dict) -> tuple[CogVideoXConfig, Any, Any]:
    """``(CogVideoXConfig, graphdef, abstract params)`` from a diffusers config dict.

    The model is built under ``nnx.eval_shape``: the params hold ``jax.ShapeDtypeStruct``, nothing
    is initialised. The converter fills them (:func:`converters.common.convert`), :func:`load` from a
    converted folder.
    """
    cfg = CogVideoXConfig.from_diffusers(config)
    model = nnx.eval_shape(lambda: CogVideoXTransformer(cfg, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(model)
    return cfg, graphdef, params


def _flatten(tree, prefix: tuple = ()) -> dict[str, Any]:
    """``{"a.b.0.kernel": leaf}`` of a nested dict (an orbax-restored pure dict)."""
    if not isinstance(tree, dict):
        return {flat_key(prefix): tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flatten(v, (*prefix, k)))
    return out


def save_weights(dst: str, state, cfg: CogVideoXConfig, *, extra: Optional[dict] = None) -> None:
    """Writes ``state`` (the params nnx.State) to ``DST/params`` (orbax) and ``cfg`` to ``DST/config.json``.

    ``extra`` (JSON-serialisable, e.g. the dtype and the source folder) is stored in config.json
    too. Atomic (:func:`~syncos_jax.backbones.weights_folder.atomic_folder`): a failed save writes
    nothing to the destination. ``state`` is not modified.

    Raises:
      FileExistsError: if ``dst`` exists and is not an empty folder.
      ValueError: if ``extra`` names ``model`` or ``config``.
    """
    check_extra(extra)
    with atomic_folder(dst) as tmp:
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(os.path.join(tmp, "params"), nnx.to_pure_dict(state))
        write_config(tmp, WEIGHTS_MODEL, cfg.to_dict(), extra)


def read_weights_config(dst: str) -> tuple[CogVideoXConfig, dict]:
    """``(CogVideoXConfig, the whole config.json dict)`` of a folder written by :func:`save_weights`.

    Raises:
      FileNotFoundError: if ``DST/config.json`` does not exist.
      ValueError: naming the file, if it is not a JSON object, holds another model's weights, or
        its ``config`` is not a valid CogVideoX config.
    """
    return read_config(dst, WEIGHTS_MODEL, CogVideoXConfig.from_diffusers, what="CogVideoX")


def restore_weights(dst: str, abstract) -> Any:
    """A new nnx.State shaped like ``abstract`` (from :func:`model_abstract`) holding ``DST/params``.

    ``abstract`` is not modified (its variables keep their ``ShapeDtypeStruct``). The arrays keep
    the dtype they were saved in (float32 or bfloat16). Strict
    (:func:`~syncos_jax.backbones.weights_folder.strict_state`): the folder must hold exactly the
    parameters of ``abstract``, with its shapes, all finite.

    Raises:
      ValueError: naming ``dst``, listing missing, unexpected and mis-shaped parameters, or those
        holding NaN or Inf.
    """
    with ocp.StandardCheckpointer() as ckpt:
        arrays = _flatten(ckpt.restore(os.path.join(os.path.abspath(dst), "params")))
    return strict_state(dst, arrays, abstract)


def load(dst: str) -> tuple[CogVideoXTransformer, CogVideoXConfig]:
    """``(model, CogVideoXConfig)`` from a folder written by :func:`save_weights` (``syncos convert
    cogvideox``); nothing is converted. Raises as :func:`read_weights_config` and :func:`restore_weights`."""
    cfg, _ = read_weights_config(dst)
    _, graphdef, abstract = model_abstract(cfg.to_dict())
    return nnx.merge(graphdef, restore_weights(dst, abstract)), cfg


# ---------------------------------------------------------------------------------------------
# Running it: text embeddings from a file, optional VAE decoding
# ---------------------------------------------------------------------------------------------


def load_text_embeddings(path: str) -> dict[str, np.ndarray]:
    """``{prompt text: [L, 4096] float32}`` from an ``.npz`` with ``texts [P]`` and ``embeddings [P, L, D]``.

    ``experiments/encode_t5.py`` writes such a file with transformers' T5 encoder.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"text embeddings file {path!r} not found")
    with np.load(path, allow_pickle=False) as data:
        if "texts" not in data or "embeddings" not in data:
            raise ValueError(f"{path!r} must hold arrays 'texts' [P] and 'embeddings' [P, L, D]; it holds {sorted(data.keys())}")
        texts, emb = [str(t) for t in data["texts"]], np.asarray(data["embeddings"], np.float32)
    if emb.ndim != 3 or emb.shape[0] != len(texts):
        raise ValueError(f"{path!r}: 'embeddings' must be [P={len(texts)}, L, D], got {emb.shape}")
    return dict(zip(texts, emb))


def check_compatible(cfg, t5_cfg=None, vae_cfg=None) -> list[str]:
    """The mismatches between a transformer config and the text encoder / VAE configs beside it
    (an empty list when they fit): the T5 width must be the transformer's ``text_embed_dim``, the VAE's
    latent channels its ``in_channels`` and the VAE's time compression its ``temporal_compression_ratio``."""
    problems = []
    if t5_cfg is not None and t5_cfg.d_model != cfg.text_embed_dim:
        problems.append(f"the text encoder's d_model {t5_cfg.d_model} is not the transformer's text_embed_dim {cfg.text_embed_dim}")
    if vae_cfg is not None:
        if vae_cfg.latent_channels != cfg.in_channels:
            problems.append(f"the VAE's latent_channels {vae_cfg.latent_channels} is not the transformer's in_channels {cfg.in_channels}")
        if vae_cfg.temporal_compression_ratio != cfg.temporal_compression_ratio:
            problems.append(f"the VAE's temporal_compression_ratio {vae_cfg.temporal_compression_ratio} is not the "
                            f"transformer's {cfg.temporal_compression_ratio}")
    return problems


TEXT_ENCODER_DIR = "text_encoder"  # a converted T5 (syncos_jax.backbones.t5) inside a converted folder
VAE_DIR = "vae"  # a converted VAE (syncos_jax.backbones.cogvideox_vae) inside a converted folder


@dataclasses.dataclass
class CogVideoXBackbone:
    """What the samplers and the command line need from a converted CogVideoX: prompt → T5 →
    sampler → VAE, all in JAX.

    Attributes:
      model: the :class:`CogVideoXTransformer`.
      embeddings: ``{prompt text: [L, D]}`` T5 states known so far (the empty text is the negative
        prompt): those of a ``--text-embeddings`` file, and those :meth:`encode` has computed.
      latent_size: ``(H, W)`` of the latent frames.
      vae: the :class:`~syncos_jax.backbones.cogvideox_vae.CogVideoXVAE` to decode with, or ``None``
        (then only the latents are saved).
      weights: the converted folder it came from.
      text_encoder: a converted T5 folder (:func:`syncos_jax.backbones.t5.load`) that encodes the
        texts missing from ``embeddings``, or ``None``.
      vae_folder: the converted VAE folder ``vae`` came from.
      truncated_prompts: the texts :meth:`encode` cut to ``max_text_seq_length`` T5 tokens, in the
        order met (``run.json`` lists them). Only texts the converted T5 encodes are checked:
        precomputed ``--text-embeddings`` are taken as they are.
    """

    model: CogVideoXTransformer
    embeddings: dict
    latent_size: tuple[int, int]
    vae: Any = None
    weights: Optional[str] = None
    info: dict = dataclasses.field(default_factory=dict)
    text_encoder: Optional[str] = None
    vae_folder: Optional[str] = None
    truncated_prompts: list = dataclasses.field(default_factory=list)

    name = "cogvideox"
    default_guidance = 6.0
    latent_space = True  # the command line also saves the latents

    @property
    def chunk_frames(self) -> int:
        c = self.model.cfg
        return (c.sample_frames - 1) // c.temporal_compression_ratio + 1

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (*self.latent_size, self.model.cfg.in_channels)

    @property
    def denoiser(self) -> NnxDenoiser:
        return cogvideox_denoiser(self.model, frames_per_chunk=self.chunk_frames, frame_shape=self.frame_shape)

    def encode(self, texts) -> np.ndarray:
        """``[len(texts), L, D]``: each text's T5 states, looked up by exact text in ``embeddings``.

        Texts not there are encoded all at once with the converted T5 of ``text_encoder``
        (:meth:`~syncos_jax.backbones.t5.T5TextEncoder.encode`, ``L`` = the transformer's
        ``max_text_seq_length``, as CogVideoX's pipeline) and kept in ``embeddings``; the T5 is
        loaded for that call only, so its memory is free again while sampling. A text longer than
        ``L`` tokens is truncated (with a ``UserWarning``, as the pipeline) and listed in
        ``truncated_prompts``, which ``run.json`` reports. Without a text encoder an
        unknown text is a ValueError naming it.
        """
        texts = [str(t) for t in texts]
        missing = list(dict.fromkeys(t for t in texts if t not in self.embeddings))
        if missing and self.text_encoder is None:
            raise ValueError(f"no text embedding for {missing[0]!r} in the embeddings file "
                             f"(compute it with experiments/encode_t5.py, or convert the text encoder too: "
                             f"`syncos convert cogvideox` of a folder with text_encoder/); it has {len(self.embeddings)} texts")
        if missing:
            encoder = t5.load(self.text_encoder)
            length = self.model.cfg.max_text_seq_length
            cut = encoder.tokenizer(missing, length).truncated
            states = encoder.encode(missing, max_sequence_length=length)
            del encoder
            self.truncated_prompts.extend(t for t, c in zip(missing, cut) if c)
            self.embeddings.update(zip(missing, np.asarray(states, np.float32)))
        return np.stack([self.embeddings[t] for t in texts])

    def check_prompt(self, prompt: StructuredPrompt) -> None:
        """Raises :class:`~syncos_jax.prompts.PromptError` unless every event's joined text has an
        embedding (in the embeddings file, or from the text encoder, which encodes them and the
        negative prompt here, in one call)."""
        if self.text_encoder is not None:
            try:
                self.encode(list(prompt.texts()) + [""])
            except (OSError, ValueError, ImportError) as e:  # a damaged converted T5 or tokenizer
                raise BackboneError("weights", f"its text encoder {self.text_encoder!r}: "
                                    + " ".join(str(e).split())[:300]) from None
        check_texts(prompt, lambda text: self.encode([text]))

    def schedule(self, num_steps: int = 50):
        """The CogVideoX-2B DDIM schedule (v-prediction, zero terminal SNR) of ``num_steps``."""
        return schedules.cogvideox_2b(num_steps)

    def decode(self, latents) -> Optional[np.ndarray]:
        """Frames ``[F', H', W', 3]`` in ``[−1, 1]`` of the latents ``[F, H, W, C]`` through the JAX VAE
        (:func:`~syncos_jax.backbones.cogvideox_vae.decode_latents`: streamed frame batches that
        carry the causal cache, so memory does not grow with the video); ``None`` without a VAE
        (the caller saves the latents)."""
        if self.vae is None:
            return None
        return cogvideox_vae.decode_latents(self.vae, np.asarray(latents, np.float32))


def _converted_part(weights: str, flag: Optional[str], subdir: str) -> Optional[str]:
    """The folder of a converted part: ``flag`` if given, else ``WEIGHTS/subdir`` if that exists, else None."""
    if flag:
        return flag
    inside = os.path.join(weights, subdir)
    return inside if os.path.isdir(inside) else None


def open_backbone(weights: Optional[str] = None, text_embeddings: Optional[str] = None, vae: Optional[str] = None,
                  latent_size: Optional[str] = None) -> CogVideoXBackbone:
    """A converted CogVideoX for the command line (:func:`syncos_jax.backbones.open_backbone`).

    Everything is loaded and checked here, before any sampling: the transformer, the VAE's weights
    and the text encoder's config, and that they fit together (:func:`check_compatible`). On a GPU,
    bfloat16 weights attend with cuDNN's flash attention (:func:`default_attention`).

    Args:
      weights: a folder written by ``syncos convert cogvideox`` (required). Its ``text_encoder/``
        and ``vae/`` subfolders, when present, are the defaults of the two arguments below.
      text_embeddings: an ``.npz`` of T5 states per prompt text (``experiments/encode_t5.py``).
        Texts it lacks are encoded with ``WEIGHTS/text_encoder`` if that exists; one of the two is required.
      vae: a converted VAE folder (default ``WEIGHTS/vae``); without one only the latents are saved.
      latent_size: ``"HxW"`` of the latent frames (default: the config's sample size).

    Raises:
      BackboneError: naming the argument at fault.
    """
    if not weights:
        raise BackboneError("weights", "the cogvideox backbone needs a folder written by `syncos convert cogvideox`")
    size = None
    if latent_size:
        parts = str(latent_size).lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise BackboneError("latent_size", f"expected HxW, e.g. 60x90, got {str(latent_size)[:40]!r}")
        size = tuple(int(p) for p in parts)
    try:
        model, cfg = load(weights)
    except (OSError, ValueError) as e:
        raise BackboneError("weights", " ".join(str(e).split())[:300]) from None
    device = jax.devices()[0]
    set_attention(model, default_attention(model.proj_out.kernel.dtype, device.platform,
                                           getattr(device, "compute_capability", None), cfg.attention_head_dim))
    encoder = _converted_part(weights, None, TEXT_ENCODER_DIR)
    if not text_embeddings and encoder is None:
        raise BackboneError("text_embeddings", f"{weights!r} has no converted text encoder ({TEXT_ENCODER_DIR}/): give an .npz "
                            "of T5 embeddings (see experiments/encode_t5.py), or convert a folder with text_encoder/ and tokenizer/")
    embeddings = {}
    if text_embeddings:
        try:
            embeddings = load_text_embeddings(text_embeddings)
        except (OSError, ValueError) as e:
            raise BackboneError("text_embeddings", " ".join(str(e).split())[:300]) from None
        bad = sorted({v.shape[-1] for v in embeddings.values()} - {cfg.text_embed_dim})
        if bad:
            raise BackboneError("text_embeddings", f"{text_embeddings!r} holds states of width {bad[0]}; "
                                f"the transformer's text_embed_dim is {cfg.text_embed_dim}")
        lengths = sorted({v.shape[0] for v in embeddings.values()} - {cfg.max_text_seq_length})
        if lengths and encoder is not None:  # the texts it lacks would be encoded to another length
            raise BackboneError("text_embeddings", f"{text_embeddings!r} holds {lengths[0]} tokens per text; the text "
                                f"encoder of {weights!r} pads to max_text_seq_length = {cfg.max_text_seq_length}")
    t5_cfg = None
    if encoder is not None:
        try:
            t5_cfg, _ = t5.read_weights_config(encoder)
            t5.tokenizer_files(os.path.join(encoder, t5.TOKENIZER_DIR))
        except (OSError, ValueError) as e:
            raise BackboneError("weights", f"its text encoder: {' '.join(str(e).split())[:300]}") from None
    vae_folder = _converted_part(weights, vae, VAE_DIR)
    vae_model = vae_cfg = None
    if vae_folder is not None and not os.path.isdir(vae_folder):
        raise BackboneError("vae", f"{vae_folder!r} does not exist or is not a folder")
    if vae_folder is not None:
        try:
            vae_model, vae_cfg = cogvideox_vae.load(vae_folder)
        except (OSError, ValueError) as e:
            hint = (" (a diffusers VAE folder? convert it: `syncos convert cogvideox` of the diffusers folder holding it, "
                    "or converters.cogvideox_vae.convert_folder)"
                    if os.path.exists(os.path.join(vae_folder, "diffusion_pytorch_model.safetensors")) else "")
            raise BackboneError("vae" if vae else "weights", " ".join(str(e).split())[:300] + hint) from None
    problems = check_compatible(cfg, t5_cfg)
    if problems:
        raise BackboneError("weights", "its text encoder does not fit its transformer: " + "; ".join(problems))
    problems = check_compatible(cfg, vae_cfg=vae_cfg)
    if problems:
        raise BackboneError("vae" if vae else "weights", "the VAE does not fit the transformer: " + "; ".join(problems))
    size = size or (cfg.sample_height, cfg.sample_width)
    return CogVideoXBackbone(model, embeddings, (int(size[0]), int(size[1])), vae_model, weights,
                             text_encoder=encoder, vae_folder=vae_folder)
