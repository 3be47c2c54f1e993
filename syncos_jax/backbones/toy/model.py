"""The toy text-to-video model: a small flax.nnx video DiT over patches.

``ToyVideoDiT(x, t, tokens) -> v``:

* ``x: [B, f, H, W, 3]`` noisy clips, ``t: [B]`` or per-frame ``[B, f]`` model times,
  ``tokens: [B, L]`` int32 token ids (:class:`~syncos_jax.backbones.toy.tokenizer.Tokenizer`).
* A learned text encoder (token + position embeddings, ``text_depth`` pre-norm transformer
  layers with a padding mask) gives text states ``[B, L, D]`` and their masked mean.
* Patches (``patch × patch``) become tokens with learned spatial and frame embeddings.
* Each block: factorised attention — spatial (within a frame), then temporal (across frames, per
  patch position, with rotary embeddings of the frame index on queries and keys, so the order of
  frames — and with it the direction of motion — is visible in every layer) — a local mixing layer (a depthwise ``3×3`` convolution over each frame's
  ``rows × columns`` token grid, then a zero-initialised pointwise projection; it gives
  neighbouring patches a direct path so objects come out whole rather than as a mosaic of
  patches), cross-attention to the text states, and an MLP. Every sub-layer is modulated
  by adaLN (shift, scale, gate) from a **per-frame** conditioning vector: the sinusoidal embedding
  of that frame's time, plus the pooled text, plus (``frame_conditioning``) a frame-by-text term
  ``W_o·silu(W_t·pooled + e_k)`` for frame index ``k``. Per-frame times are what FIFO-Diffusion
  needs; the frame-by-text term lets a caption change the modulation from frame to frame (with one
  time for the clip, time and pooled text alone give every frame the same modulation), which is
  the direct path from "moves left" to where the object is in each frame.
* ``word_frame_conditioning``: two per-word, per-frame tables ``[vocab, frames, D]``, summed over
  the caption's tokens (padding masked out). ``word_frame`` adds to frame ``k``'s adaLN vector;
  ``word_layout`` scales the (unit-rms) spatial position embedding of frame ``k``'s tokens at the
  input, ``h[k, p] += (Σ_w U[w, k]) ⊙ p̂[p]``. The second is a first-order path from a word to a
  per-frame *layout* — where the object is in frame ``k`` — which at high noise the tokens cannot
  carry otherwise (their norm is dominated by the noise, ≈ 10 against ≈ 0.7 for the position
  embedding), and which the learned text encoder left unused for the motion words. Both are
  zero-initialised, so a warm start computes exactly the old function.
* ``pixel_head = w > 0``: a convolutional path at full resolution added to the linear patch
  decoder. A ``3×3`` convolution of the noisy input (``w`` channels, GELU) is the skip; the final
  tokens are also decoded linearly to ``w`` channels per pixel, concatenated with the skip, and
  mapped by ``3×3`` conv → GELU → ``3×3`` conv (zero-initialised) to a correction of the output.
  With a ``4×4`` patch and ``dim = 96`` the linear decoder must carry 48 pixel values per token
  through the residual stream; the skip gives every output pixel its own noisy input and its
  neighbours (a U-Net's long skip). Zero-initialised, it starts as exactly the model without it.
* ``pixel_film`` (needs ``pixel_head``): the pixel path is FiLM-modulated by the per-frame
  conditioning vector — ``(1 + s₁)·u + b₁`` on the skip's features and ``(1 + s₂)·z + b₂`` on the
  hidden ones, ``(s₁, b₁, s₂, b₂)`` a zero-initialised linear map of ``silu(c)`` — so that the gain
  from the noisy input to ``v`` can follow the noise level (``v ≈ (x_t − x_0)/σ_t`` near ``t = 0``
  asks for a gain of ``1/σ_t`` on the input's noise, which the unmodulated path cannot give).
  Zero-initialised, so ``train_toy --init`` grows it from a ``pixel_head`` file as a no-op.
* ``joint_attention``: each block's spatial and temporal attentions are replaced by one attention
  over all ``f·P`` tokens of the clip (rotary embeddings of each token's frame index when
  ``temporal_rope``). A token then sees every other frame's object wherever it has moved to, in
  one hop — where factorised attention reaches it only through the same patch position of the
  other frames; for 8 frames of 64 tokens it costs about what the two factorised attentions cost.
* ``unet = w > 0``: a U-Net around the transformer instead of the linear patch embedding and
  decoder. The frames are encoded by a ``3×3`` convolution and a residual block at full resolution
  (``w`` channels), a ``2×2`` space-to-depth step and a residual block at half resolution (``2w``
  channels), and a second space-to-depth step to the token grid (``(image_size/4)²`` tokens of
  ``dim`` channels); after the transformer blocks, the tokens are decoded back up by depth-to-space steps and residual blocks that
  also take the encoder's features of the same resolution (the U-Net's skips), and a zero-initialised
  ``3×3`` convolution gives ``v``. The levels normalise with GroupNorm over each frame (a per-pixel
  norm over channels learnt far more slowly: it hides how noisy a pixel is against its neighbours,
  which is what ``v`` must give back). The residual blocks are FiLM-modulated by the same per-frame
  conditioning vector as the transformer's adaLN. The convolutional levels work frame by frame; the
  frames meet in the transformer's temporal attention. Needs ``patch = 4``; excludes ``pixel_head``.
* The output projection is zero-initialised (the model starts as ``v = 0``); the prediction type
  is ``v_prediction`` on the CogVideoX-style zero-terminal-SNR schedule
  (:func:`syncos_jax.schedules.cogvideox_2b`).

:class:`ToyConfig` holds the hyper-parameters; :func:`toy_denoiser` wraps a model as a
:class:`~syncos_jax.backbones.protocol.NnxDenoiser`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from syncos_jax.backbones.protocol import NnxDenoiser, check_ids
from syncos_jax.backbones.toy.tokenizer import PAD, VOCABULARY

Array = jax.Array

__all__ = ["ToyConfig", "ToyVideoDiT", "timestep_embedding", "toy_denoiser"]


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Hyper-parameters of :class:`ToyVideoDiT` (all static; stored next to the weights)."""

    image_size: int = 32
    channels: int = 3
    frames: int = 8
    patch: int = 4
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 3
    text_depth: int = 1
    text_length: int = 16
    local_mixing: bool = True
    temporal_rope: bool = True
    frame_conditioning: bool = True
    word_frame_conditioning: bool = True
    pixel_head: int = 0
    unet: int = 0
    joint_attention: bool = False
    pixel_film: bool = False
    vocab_size: int = len(VOCABULARY)
    num_train_timesteps: int = 1000

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(f.default, bool):
                if not isinstance(v, bool):
                    raise ValueError(f"ToyConfig.{f.name} must be true or false, got {type(v).__name__}")
                continue
            low = 0 if f.name in ("text_depth", "pixel_head", "unet") else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"ToyConfig.{f.name} must be an integer >= {low}, got {str(v)[:40]!r}")
        if self.image_size % self.patch:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch={self.patch}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim={self.dim} must split into {self.heads} heads of even width")
        if self.unet and self.patch != 4:
            raise ValueError(f"unet={self.unet} needs patch=4 (two 2x levels below the token grid), got patch={self.patch}")
        if self.unet and self.pixel_head:
            raise ValueError(f"unet={self.unet} and pixel_head={self.pixel_head} are alternatives; set one of them to 0")
        if self.pixel_film and not self.pixel_head:
            raise ValueError("pixel_film=true modulates the pixel path; it needs pixel_head > 0, got pixel_head=0")

    @property
    def tokens_per_frame(self) -> int:
        return (self.image_size // self.patch) ** 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def timestep_embedding(t: Array, dim: int, max_period: float = 10000.0) -> Array:
    """Sinusoidal embedding ``[..., dim]`` of times ``t: [...]`` (``cos`` half, then ``sin``)."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class Attention(nnx.Module):
    """Multi-head attention over the second-to-last axis; keys/values from ``context``."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs, context_dim: int | None = None):
        self.heads = heads
        self.q = nnx.Linear(dim, dim, rngs=rngs)
        self.kv = nnx.Linear(context_dim or dim, 2 * dim, rngs=rngs)
        self.out = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x: Array, context: Array | None = None, mask: Array | None = None, rope: Array | None = None) -> Array:
        # x: [..., N, D]; context: [..., M, D]; mask: broadcastable to [..., heads, N, M];
        # rope: rotation angles [N, D/heads/2] applied to queries and keys (self-attention only)
        context = x if context is None else context
        *lead, n, d = x.shape
        m = context.shape[-2]
        h = self.heads
        q = self.q(x).reshape(-1, n, h, d // h)
        k, v = jnp.split(self.kv(context), 2, axis=-1)
        k = k.reshape(-1, m, h, d // h)
        v = v.reshape(-1, m, h, d // h)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        out = jax.nn.dot_product_attention(q, k, v, mask=mask)
        return self.out(out.reshape(*lead, n, d))


def neighbourhood_3x3(x: Array) -> list[Array]:
    """The nine copies of ``x: [..., rows, cols, C]`` shifted by ``(a − 1, b − 1)`` for ``a, b`` in
    ``0..2`` (row-major, zero padding): ``out[3a + b][..., i, j, :] = x[..., i + a − 1, j + b − 1, :]``,
    the taps of a ``3×3`` kernel."""
    *lead, r, c, _ = x.shape
    xp = jnp.pad(x, [(0, 0)] * len(lead) + [(1, 1), (1, 1), (0, 0)])
    return [xp[..., a:a + r, b:b + c, :] for a in range(3) for b in range(3)]


class DepthwiseConv3x3(nnx.Module):
    """A depthwise ``3×3`` convolution (zero padding) over the last-but-one two axes of
    ``[..., rows, cols, D]``.

    Written as a sum of 9 shifted, per-channel-scaled copies: on CPU, XLA's grouped convolution
    (``feature_group_count = D``) is several times slower than this, forward and backward.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (3, 3, dim)) / 3.0)
        self.bias = nnx.Param(jnp.zeros((dim,)))

    def __call__(self, x: Array) -> Array:
        k = self.kernel[...].reshape(9, -1)
        out = self.bias[...]
        for i, shifted in enumerate(neighbourhood_3x3(x)):
            out = out + shifted * k[i]
        return out


class Conv3x3(nnx.Module):
    """A ``3×3`` convolution (zero padding, stride 1) of ``x: [..., H, W, C_in]`` → ``[..., H, W, C_out]``.

    Written as one matmul of the nine shifted copies stacked along channels (im2col): on CPU this
    is about 2.4× faster than XLA's convolution, forward and backward, with the same result.
    """

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs, zero: bool = False):
        scale = 0.0 if zero else (9 * c_in) ** -0.5
        self.kernel = nnx.Param(scale * jax.random.normal(rngs.params(), (3, 3, c_in, c_out)))
        self.bias = nnx.Param(jnp.zeros((c_out,)))

    def __call__(self, x: Array) -> Array:
        cols = jnp.concatenate(neighbourhood_3x3(x), axis=-1)
        return cols @ self.kernel[...].reshape(9 * x.shape[-1], -1) + self.bias[...]


def space_to_depth(x: Array) -> Array:
    """``[N, H, W, C]`` → ``[N, H/2, W/2, 4C]``: each ``2×2`` block's pixels (row-major) stacked on channels."""
    N, H, W, C = x.shape
    return x.reshape(N, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 2, 4, 5).reshape(N, H // 2, W // 2, 4 * C)


def depth_to_space(x: Array) -> Array:
    """The inverse of :func:`space_to_depth`: ``[N, h, w, 4C]`` → ``[N, 2h, 2w, C]``."""
    N, h, w, C4 = x.shape
    return x.reshape(N, h, w, 2, 2, C4 // 4).transpose(0, 1, 3, 2, 4, 5).reshape(N, 2 * h, 2 * w, C4 // 4)


def group_norm(channels: int, *, rngs: nnx.Rngs, affine: bool = True) -> nnx.GroupNorm:
    """GroupNorm over each frame's ``[H, W]`` and ``gcd(channels, 8)`` channel groups of ``[N, H, W, C]``.
    Unlike a per-pixel norm over channels, it keeps how strong one pixel is against the others (the
    noise a ``v`` prediction must give back pixel by pixel)."""
    return nnx.GroupNorm(channels, num_groups=math.gcd(channels, 8), use_scale=affine, use_bias=affine, rngs=rngs)


class ResBlock(nnx.Module):
    """A convolutional residual block of the U-Net levels, FiLM-conditioned per frame:
    ``skip(x) + conv₂(silu(film_c(norm(conv₁(silu(norm(x)))))))`` with GroupNorms (:func:`group_norm`)
    and ``conv₂`` zero-initialised (the block starts as its skip).
    ``x: [N, H, W, C_in]``, ``c: [N, D]`` → ``[N, H, W, C_out]``."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, *, rngs: nnx.Rngs):
        self.norm_in = group_norm(c_in, rngs=rngs)
        self.conv1 = Conv3x3(c_in, c_out, rngs=rngs)
        self.norm_mid = group_norm(c_out, rngs=rngs, affine=False)
        self.film = nnx.Linear(cond_dim, 2 * c_out, rngs=rngs)
        self.conv2 = Conv3x3(c_out, c_out, rngs=rngs, zero=True)
        self.skip = nnx.Linear(c_in, c_out, rngs=rngs) if c_in != c_out else None

    def __call__(self, x: Array, c: Array) -> Array:
        h = self.conv1(nnx.silu(self.norm_in(x)))
        shift, scale = jnp.split(self.film(nnx.silu(c))[:, None, None], 2, axis=-1)
        h = self.conv2(nnx.silu(_modulate(self.norm_mid(h), shift, scale)))
        return (x if self.skip is None else self.skip(x)) + h


def rope_angles(n: int, head_dim: int, theta: float = 100.0) -> Array:
    """Rotary angles ``[n, head_dim/2]`` for positions ``0..n−1``: ``pos · θ^(−2i/head_dim)``."""
    freqs = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    return jnp.arange(n, dtype=jnp.float32)[:, None] * freqs


def rotate(x: Array, angles: Array) -> Array:
    """Rotary position embedding of ``x: [B, N, heads, head_dim]`` by ``angles: [N, head_dim/2]``
    (the two halves of each head are the real and imaginary parts)."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    cos, sin = jnp.cos(angles)[:, None], jnp.sin(angles)[:, None]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


def _modulate(x: Array, shift: Array, scale: Array) -> Array:
    return x * (1 + scale) + shift


class Block(nnx.Module):
    """Spatial attention → temporal attention (or one joint space-time attention) → local mixing →
    text cross-attention → MLP, per-frame adaLN."""

    def __init__(self, cfg: ToyConfig, *, rngs: nnx.Rngs):
        d = cfg.dim
        self.joint_attention = cfg.joint_attention
        if cfg.joint_attention:  # one attention over all f·P tokens of the clip
            self.joint = Attention(d, cfg.heads, rngs=rngs)
            self.spatial = self.temporal = None
        else:
            self.joint = None
            self.spatial = Attention(d, cfg.heads, rngs=rngs)
            self.temporal = Attention(d, cfg.heads, rngs=rngs)
        self.cross = Attention(d, cfg.heads, rngs=rngs)
        self.mlp_in = nnx.Linear(d, cfg.mlp_ratio * d, rngs=rngs)
        self.mlp_out = nnx.Linear(cfg.mlp_ratio * d, d, rngs=rngs)
        self.ada = nnx.Linear(d, (7 if cfg.joint_attention else 10) * d, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        self.norm = nnx.LayerNorm(d, use_scale=False, use_bias=False, rngs=rngs)
        self.grid = cfg.image_size // cfg.patch
        self.temporal_rope = cfg.temporal_rope
        self.heads = cfg.heads
        if cfg.local_mixing:
            self.local = DepthwiseConv3x3(d, rngs=rngs)
            self.local_out = nnx.Linear(d, d, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        else:
            self.local = self.local_out = None

    def __call__(self, h: Array, c: Array, text: Array, text_mask: Array) -> Array:
        # h: [B, f, P, D]; c: [B, f, D]; text: [B, L, D]; text_mask: [B, L]
        B, f, P, D = h.shape
        rope = rope_angles(f, D // self.heads) if self.temporal_rope else None  # [f, D/heads/2]
        if self.joint_attention:
            m = jnp.split(self.ada(nnx.silu(c))[:, :, None], 7, axis=-1)  # each [B, f, 1, D]
            x = _modulate(self.norm(h), m[0], m[1]).reshape(B, f * P, D)  # frame-major tokens
            rope = None if rope is None else jnp.repeat(rope, P, axis=0)  # token (k, p) rotated by frame k
            h = h + m[2] * self.joint(x, rope=rope).reshape(B, f, P, D)
            m_cross, m_mlp = m[3], m[4:7]
        else:
            m = jnp.split(self.ada(nnx.silu(c))[:, :, None], 10, axis=-1)  # each [B, f, 1, D]
            h = h + m[2] * self.spatial(_modulate(self.norm(h), m[0], m[1]))
            x = jnp.swapaxes(_modulate(self.norm(h), m[3], m[4]), 1, 2)  # [B, P, f, D]
            h = h + m[5] * jnp.swapaxes(self.temporal(x, rope=rope), 1, 2)
            m_cross, m_mlp = m[6], m[7:10]
        if self.local is not None:  # depthwise conv over each frame's [rows, cols] token grid
            y = self.norm(h).reshape(B, f, self.grid, self.grid, D)
            h = h + self.local_out(nnx.gelu(self.local(y))).reshape(B, f, P, D)
        q = self.norm(h).reshape(B, f * P, D)
        mask = text_mask[:, None, None, :]  # [B, 1(heads), 1(queries), L]
        h = h + m_cross * self.cross(q, text, mask).reshape(B, f, P, D)
        y = _modulate(self.norm(h), m_mlp[0], m_mlp[1])
        return h + m_mlp[2] * self.mlp_out(nnx.gelu(self.mlp_in(y)))


class TextEncoder(nnx.Module):
    """Token + position embeddings and pre-norm transformer layers with a padding mask."""

    def __init__(self, cfg: ToyConfig, *, rngs: nnx.Rngs):
        d = cfg.dim
        self.embed = nnx.Embed(cfg.vocab_size, d, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.text_length, d)))
        self.attn = nnx.List([Attention(d, cfg.heads, rngs=rngs) for _ in range(cfg.text_depth)])
        self.mlp_in = nnx.List([nnx.Linear(d, 2 * d, rngs=rngs) for _ in range(cfg.text_depth)])
        self.mlp_out = nnx.List([nnx.Linear(2 * d, d, rngs=rngs) for _ in range(cfg.text_depth)])
        self.norms = nnx.List([nnx.LayerNorm(d, rngs=rngs) for _ in range(2 * cfg.text_depth + 1)])

    def __call__(self, tokens: Array) -> tuple[Array, Array, Array]:
        """``tokens: [B, L]`` → ``(states [B, L, D], pooled [B, D], mask [B, L] bool)``."""
        mask = tokens != PAD
        x = self.embed(tokens) + self.pos[...][: tokens.shape[1]]
        attn_mask = mask[:, None, None, :]
        for i in range(len(self.attn)):
            x = x + self.attn[i](self.norms[2 * i](x), mask=attn_mask)
            x = x + self.mlp_out[i](nnx.gelu(self.mlp_in[i](self.norms[2 * i + 1](x))))
        x = self.norms[-1](x)
        w = mask.astype(x.dtype)[..., None]
        pooled = (x * w).sum(1) / jnp.maximum(w.sum(1), 1.0)
        return x, pooled, mask


class ToyVideoDiT(nnx.Module):
    """The toy text-to-video transformer (see the module docstring). v-prediction."""

    prediction_type = "v_prediction"
    per_frame_timesteps = True

    def __init__(self, cfg: ToyConfig = ToyConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, p = cfg.dim, cfg.patch
        self.frames_per_chunk = cfg.frames
        w = cfg.unet
        if w:  # convolutional levels at full and half resolution around the token grid (a U-Net)
            self.patch_in = self.patch_out = None
            self.in_conv = Conv3x3(cfg.channels, w, rngs=rngs)
            self.enc_full = ResBlock(w, w, d, rngs=rngs)
            self.down_full = nnx.Linear(4 * w, 2 * w, rngs=rngs)
            self.enc_half = ResBlock(2 * w, 2 * w, d, rngs=rngs)
            self.down_half = nnx.Linear(8 * w, d, rngs=rngs)
            self.up_half = nnx.Linear(d, 8 * w, rngs=rngs)
            self.dec_half = ResBlock(4 * w, 2 * w, d, rngs=rngs)
            self.up_full = nnx.Linear(2 * w, 4 * w, rngs=rngs)
            self.dec_full = ResBlock(2 * w, w, d, rngs=rngs)
            self.out_norm = group_norm(w, rngs=rngs)
            self.out_conv = Conv3x3(w, cfg.channels, rngs=rngs, zero=True)
        else:
            self.patch_in = nnx.Linear(p * p * cfg.channels, d, rngs=rngs)
        self.pos_space = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.tokens_per_frame, d)))
        self.pos_time = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.frames, d)))
        self.time_in = nnx.Linear(d, d, rngs=rngs)
        self.time_out = nnx.Linear(d, d, rngs=rngs)
        self.text = TextEncoder(cfg, rngs=rngs)
        if cfg.frame_conditioning:  # frame-by-text conditioning; zero output: starts as a no-op
            self.frame_table = nnx.Param(jax.random.normal(rngs.params(), (cfg.frames, d)))
            self.frame_text = nnx.Linear(d, d, rngs=rngs)
            self.frame_out = nnx.Linear(d, d, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        else:
            self.frame_table = self.frame_text = self.frame_out = None
        if cfg.word_frame_conditioning:  # a per-word, per-frame adaLN offset; zero: starts as a no-op
            self.word_frame = nnx.Param(jnp.zeros((cfg.vocab_size, cfg.frames, d)))
            self.word_layout = nnx.Param(jnp.zeros((cfg.vocab_size, cfg.frames, d)))
        else:
            self.word_frame = self.word_layout = None
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.final_ada = nnx.Linear(d, 2 * d, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        self.final_norm = nnx.LayerNorm(d, use_scale=False, use_bias=False, rngs=rngs)
        if not cfg.unet:
            self.patch_out = nnx.Linear(d, p * p * cfg.channels, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        w = cfg.pixel_head
        if w:  # the convolutional pixel path; its zero output convolution makes it a no-op at the start
            self.stem = Conv3x3(cfg.channels, w, rngs=rngs)
            self.pixel_feat = nnx.Linear(d, p * p * w, rngs=rngs)
            self.head_mid = Conv3x3(2 * w, w, rngs=rngs)
            self.head_out = Conv3x3(w, cfg.channels, rngs=rngs, zero=True)
        else:
            self.stem = self.pixel_feat = self.head_mid = self.head_out = None
        # FiLM of the pixel path by the per-frame conditioning vector; zero: starts as a no-op
        self.pixel_mod = nnx.Linear(d, 4 * w, kernel_init=nnx.initializers.zeros_init(), rngs=rngs) if cfg.pixel_film else None

    def patchify(self, x: Array) -> Array:
        """``[B, f, H, W, C]`` → ``[B, f, (H/p)·(W/p), p·p·C]``."""
        B, f, H, W, C = x.shape
        p = self.cfg.patch
        x = x.reshape(B, f, H // p, p, W // p, p, C).transpose(0, 1, 2, 4, 3, 5, 6)
        return x.reshape(B, f, (H // p) * (W // p), p * p * C)

    def unpatchify(self, tokens: Array, H: int, W: int) -> Array:
        """The inverse of :meth:`patchify` (``C`` = the last axis of ``tokens`` / ``p²``)."""
        B, f = tokens.shape[:2]
        p = self.cfg.patch
        C = tokens.shape[-1] // (p * p)
        x = tokens.reshape(B, f, H // p, W // p, p, p, C).transpose(0, 1, 2, 4, 3, 5, 6)
        return x.reshape(B, f, H, W, C)

    @staticmethod
    def _word_sum(table: nnx.Param, tokens: Array, mask: Array, f: int) -> Array:
        """``Σ_l mask[b, l] · table[tokens[b, l], k]``: ``[B, f, D]`` (``table: [V, frames, D]``)."""
        rows = table[...][tokens][:, :, :f]  # [B, L, f, D]
        return jnp.einsum("blfd,bl->bfd", rows, mask.astype(rows.dtype))

    def __call__(self, x: Array, t: Array, tokens: Array) -> Array:
        """``x: [B, f, H, W, C]``, ``t: [B]`` or ``[B, f]``, ``tokens: [B, L]`` → ``v: [B, f, H, W, C]``.

        Token ids must lie in ``[0, vocab_size)``: checked when concrete; under ``jax.jit`` an id out
        of range is clamped by the embedding lookup (samplers check before tracing).
        """
        B, f, H, W, C = x.shape
        cfg = self.cfg
        if not isinstance(tokens, jax.core.Tracer):
            check_ids(tokens, "tokens", low=0, high=cfg.vocab_size, what="token ids")
        if (H, W, C) != (cfg.image_size, cfg.image_size, cfg.channels):
            raise ValueError(
                f"x has frames of shape {(H, W, C)}; this model was built for "
                f"{(cfg.image_size, cfg.image_size, cfg.channels)}"
            )
        if f > cfg.frames:
            raise ValueError(f"x has {f} frames; this model has frame embeddings for at most {cfg.frames}")
        t = jnp.asarray(t)
        t = jnp.broadcast_to(t[:, None] if t.ndim == 1 else t, (B, f))
        text, pooled, mask = self.text(tokens)
        temb = self.time_out(nnx.silu(self.time_in(timestep_embedding(t, cfg.dim))))
        c = temb + pooled[:, None]  # [B, f, D]
        if self.frame_out is not None:
            c = c + self.frame_out(nnx.silu(self.frame_text(pooled)[:, None] + self.frame_table[...][:f]))
        if self.word_frame is not None:  # Σ over the caption's tokens of W[token, k]: [B, f, D]
            c = c + self._word_sum(self.word_frame, tokens, mask, f)
        if cfg.unet:  # the encoder levels: full → half resolution → the token grid
            frames, cf = x.reshape(B * f, H, W, C), c.reshape(B * f, -1)
            h_full = self.enc_full(self.in_conv(frames), cf)  # [Bf, H, W, w]
            h_half = self.enc_half(self.down_full(space_to_depth(h_full)), cf)  # [Bf, H/2, W/2, 2w]
            h = self.down_half(space_to_depth(h_half)).reshape(B, f, cfg.tokens_per_frame, cfg.dim)
        else:
            h = self.patch_in(self.patchify(x))
        h = h + self.pos_space[...] + self.pos_time[...][:f, None]
        if self.word_layout is not None:  # (Σ_words U[word, k]) ⊙ p̂: a per-frame layout from the words
            pos = self.pos_space[...]
            unit = pos / jax.lax.stop_gradient(jnp.sqrt(jnp.mean(pos**2)) + 1e-6)  # [P, D], unit rms
            h = h + self._word_sum(self.word_layout, tokens, mask, f)[:, :, None] * unit
        for blk in self.blocks:
            h = blk(h, c, text, mask)
        shift, scale = jnp.split(self.final_ada(nnx.silu(c))[:, :, None], 2, axis=-1)
        y = _modulate(self.final_norm(h), shift, scale)
        if cfg.unet:  # the decoder levels, each fed its encoder level's features (the U-Net's skips)
            g = cfg.image_size // 4
            u = depth_to_space(self.up_half(y.reshape(B * f, g, g, cfg.dim)))
            u = self.dec_half(jnp.concatenate([u, h_half], axis=-1), cf)
            u = self.dec_full(jnp.concatenate([depth_to_space(self.up_full(u)), h_full], axis=-1), cf)
            return self.out_conv(nnx.silu(self.out_norm(u))).reshape(B, f, H, W, C)
        out = self.unpatchify(self.patch_out(y), H, W)
        if self.stem is None:
            return out
        frames = x.reshape(B * f, H, W, C)  # the pixel path works frame by frame at full resolution
        feat = self.unpatchify(self.pixel_feat(y), H, W).reshape(B * f, H, W, -1)
        skip = nnx.gelu(self.stem(frames))  # [Bf, H, W, w]
        if self.pixel_mod is not None:  # (1 + scale)·u + shift per frame, from time and text
            s1, b1, s2, b2 = jnp.split(self.pixel_mod(nnx.silu(c)).reshape(B * f, 1, 1, -1), 4, axis=-1)
            skip = skip * (1 + s1) + b1
        z = nnx.gelu(self.head_mid(jnp.concatenate([feat, skip], axis=-1)))
        if self.pixel_mod is not None:
            z = z * (1 + s2) + b2
        return out + self.head_out(z).reshape(B, f, H, W, C)


def toy_denoiser(model: ToyVideoDiT, frames: int | None = None) -> NnxDenoiser:
    """The model as a Denoiser (``cond`` = token ids ``[B, L]`` in ``[0, vocab_size)``, checked when concrete).

    ``frames`` (default: the model's ``cfg.frames``) is the chunk length the denoiser declares; a
    shorter one, e.g. ``1``, samples single frames as in joint image-video training."""
    c = model.cfg
    frames = c.frames if frames is None else frames
    if not isinstance(frames, int) or isinstance(frames, bool) or not 1 <= frames <= c.frames:
        raise ValueError(f"frames must be an integer in [1, {c.frames}] (the model's frames), got {frames!r}")
    check = functools.partial(check_ids, low=0, high=c.vocab_size, what="token ids")
    return NnxDenoiser(model, prediction_type="v_prediction", frames_per_chunk=frames, per_frame_timesteps=True,
                       frame_shape=(c.image_size, c.image_size, c.channels), check_cond=check)
