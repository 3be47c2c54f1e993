"""The CogVideoX VAE in flax.nnx: a port of diffusers' ``AutoencoderKLCogVideoX`` (decoder and encoder).

Layout: channels last and no batch axis. Latents ``z: [F, h, w, C]`` (diffusers: ``[B, C, F, h, w]``),
frames ``[F', H, W, 3]`` with ``H = h·2^(n−1)`` for ``n = len(block_out_channels)``. For the
CogVideoX-2B/5B VAE under diffusers' frame batching ``F' = 1 + 4·(F − 1)`` for odd ``F`` (13 → 49)
and ``F' = 4·F`` for even ``F``: each batch with an odd frame count keeps its first frame single in
time, and only the first batch can be odd.

**Where the scaling factor goes.** :func:`decode`, :func:`iter_decode`, :func:`decode_step` take
latents in the VAE's own space, i.e. what diffusers' ``vae.decode(z)`` takes, and return frames
that are *not* clipped (equal to diffusers' ``vae.decode(z).sample``). :func:`decode_latents` takes
the raw latents a sampler produces: it multiplies them by ``1 / scaling_factor`` (as diffusers'
CogVideoX pipeline does: ``latents = 1 / scaling_factor * latents``), decodes and clips to
``[−1, 1]`` (what the pipeline's ``(video / 2 + 0.5).clamp(0, 1)`` does, in ``[−1, 1]`` units).

**Frame batches (the part diffusers' output depends on).** diffusers decodes ``num_latent_frames_batch_size
= 2`` latent frames at a time: the first batch takes ``2 + F % 2`` frames, every later one 2, and
each causal convolution carries the last ``k_t − 1`` frames of its input from one batch to the next
(its *conv cache*). The GroupNorms inside see only the frames of the current batch, so the frames
diffusers returns depend on the batch size. :func:`frame_batches` reproduces that split for any
``frame_batch``; :func:`decode` (``frame_batch=2`` by default) equals ``vae.decode(z)`` of a diffusers
model whose ``num_latent_frames_batch_size`` is ``frame_batch``. The encoder does the same with
``num_sample_frames_batch_size = 8`` sample frames.

**Streaming.** :func:`init_decode_cache` + :func:`decode_step` decode one frame batch at a time with
a :class:`DecodeCache` (every causal convolution's temporal cache, plus a ``started`` flag that
replaces diffusers' "no cache yet: repeat the first frame"), so device memory does not grow with
the video's length. :func:`iter_decode` and :func:`decode` are that loop; they run the very same
compiled step (one program per batch shape: the first batch of ``2 + F % 2`` frames and the rest),
so streaming and one-call decoding give identical bits.

**Tiling.** With ``tiling=Tiling(...)`` (diffusers' ``enable_tiling`` parameters) latents larger
than a tile are decoded in overlapping spatial tiles, each with its own cache, and blended as
diffusers' ``tiled_decode`` does (``blend_v`` then ``blend_h`` against the already blended
neighbours, then cropped). Blending is per frame, so it is done batch by batch here and
streaming still holds.

Parameter names follow diffusers' module tree (``decoder.up_blocks.0.resnets.1.norm1.conv_y.conv``)
so the converter (:mod:`converters.cogvideox_vae`) is a short rule table. Arithmetic is float32
(diffusers' ``force_upcast``): bfloat16 weights are cast up before the compiled step.

Converted weights live in a folder ``DST`` with ``DST/params.safetensors`` and ``DST/config.json``
(``{"model": "cogvideox-vae", "config": {...}, ...}``): :func:`model_abstract`, :func:`save_weights`,
:func:`restore_weights`, :func:`load`. This module never imports ``converters`` nor torch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from syncos_jax.backbones.weights_folder import (atomic_folder, check_extra, load_safetensors, read_config,
                                                   save_safetensors, strict_state, write_config)

Array = jax.Array

__all__ = [
    "CogVideoXVAE",
    "CogVideoXVAEConfig",
    "DecodeCache",
    "Posterior",
    "TileGrid",
    "Tiling",
    "causal_conv3d",
    "decode",
    "decode_latents",
    "blend_tiles",
    "decode_step",
    "default_tiling",
    "encode",
    "frame_batches",
    "group_norm",
    "init_decode_cache",
    "iter_decode",
    "load",
    "model_abstract",
    "read_weights_config",
    "restore_weights",
    "save_weights",
    "tile_grid",
]

WEIGHTS_MODEL = "cogvideox-vae"  # the "model" field of a converted folder's config.json
WEIGHTS_FILE = "params.safetensors"
_PRECISION = jax.lax.Precision.HIGHEST  # float32 parity with diffusers on every backend (no TF32)

# diffusers config keys that do not change what the VAE computes (pipeline-level or unused by
# CogVideoX's pipelines): accepted and ignored by CogVideoXVAEConfig.from_hf_dict.
IGNORED_KEYS = ("force_upcast", "shift_factor", "latents_mean", "latents_std", "invert_scale_latents")


@dataclasses.dataclass(frozen=True)
class CogVideoXVAEConfig:
    """The diffusers config of ``AutoencoderKLCogVideoX`` (defaults: the CogVideoX-2B/5B VAE)."""

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("CogVideoXDownBlock3D",) * 4
    up_block_types: tuple[str, ...] = ("CogVideoXUpBlock3D",) * 4
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    latent_channels: int = 16
    layers_per_block: int = 3
    act_fn: str = "silu"
    norm_eps: float = 1e-6
    norm_num_groups: int = 32
    temporal_compression_ratio: int = 4
    sample_height: int = 480
    sample_width: int = 720
    scaling_factor: float = 1.15258426
    use_quant_conv: bool = False
    use_post_quant_conv: bool = False

    def __post_init__(self):
        n = len(self.block_out_channels)
        problems = []
        if n == 0:
            problems.append("block_out_channels is empty")
        if len(self.down_block_types) != n or set(self.down_block_types) - {"CogVideoXDownBlock3D"}:
            problems.append(f"down_block_types must be {n} x 'CogVideoXDownBlock3D', got {list(self.down_block_types)}")
        if len(self.up_block_types) != n or set(self.up_block_types) - {"CogVideoXUpBlock3D"}:
            problems.append(f"up_block_types must be {n} x 'CogVideoXUpBlock3D', got {list(self.up_block_types)}")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            problems.append(f"block_out_channels {list(bad)} are not divisible by norm_num_groups={self.norm_num_groups}")
        r = self.temporal_compression_ratio
        if r < 1 or r & (r - 1):
            problems.append(f"temporal_compression_ratio must be a power of 2, got {r}")
        if self.act_fn not in ("silu", "swish"):
            problems.append(f"act_fn must be 'silu', got {self.act_fn!r}")
        if problems:
            raise ValueError("invalid CogVideoX VAE config: " + "; ".join(problems))
        if self.use_quant_conv or self.use_post_quant_conv:
            raise NotImplementedError("use_quant_conv / use_post_quant_conv are not supported (no CogVideoX VAE uses them)")

    @property
    def spatial_scale(self) -> int:
        """Pixels per latent pixel along H and W: ``2^(len(block_out_channels) − 1)``."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_levels(self) -> int:
        """How many up (down) blocks double (halve) the frame count: ``log2(temporal_compression_ratio)``."""
        return int(math.log2(self.temporal_compression_ratio))

    @classmethod
    def from_hf_dict(cls, config: dict) -> "CogVideoXVAEConfig":
        """From a diffusers ``vae/config.json`` dict.

        Keys starting with ``_`` and :data:`IGNORED_KEYS` are ignored; any other unknown key is an
        error (it would change the model). Lists become tuples.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        data = {k: v for k, v in config.items() if not k.startswith("_") and k not in IGNORED_KEYS}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown CogVideoX VAE config keys {unknown}; expected a subset of {sorted(fields)} "
                             f"(ignored: {list(IGNORED_KEYS)})")
        out = {}
        for k, v in data.items():
            ann = str(fields[k].type)
            if ann.startswith("tuple"):
                if not isinstance(v, (list, tuple)):
                    raise ValueError(f"CogVideoX VAE config key {k!r} must be a list, got {type(v).__name__}")
                v = tuple(v)
            elif ann == "int":
                if isinstance(v, float) and v.is_integer():
                    v = int(v)  # diffusers types temporal_compression_ratio as float
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"CogVideoX VAE config key {k!r} must be an int, got {str(v)[:40]!r}")
            elif ann == "float":
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"CogVideoX VAE config key {k!r} must be a number, got {str(v)[:40]!r}")
                v = float(v)
            elif ann == "bool" and not isinstance(v, bool):
                raise ValueError(f"CogVideoX VAE config key {k!r} must be true or false, got {str(v)[:40]!r}")
            elif ann == "str" and not isinstance(v, str):
                raise ValueError(f"CogVideoX VAE config key {k!r} must be a string, got {str(v)[:40]!r}")
            out[k] = v
        return cls(**out)

    def to_dict(self) -> dict:
        """The config as a JSON-serialisable dict (``from_hf_dict(to_dict())`` round-trips)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# Pure functions: convolutions, GroupNorm, nearest resizing
# ---------------------------------------------------------------------------------------------


def conv3d(x: Array, kernel: Array, bias: Array, *, pad_hw: int) -> Array:
    """``[T − k_t + 1, H, W, O]``: a 3-D convolution of ``x: [T, H, W, I]`` with ``kernel: [k_t, k_h, k_w, I, O]``,
    valid in time, zero-padded by ``pad_hw`` in H and W."""
    if kernel.shape[:3] == (1, 1, 1):  # a matmul: quicker to compile than a convolution
        return jnp.einsum("thwi,io->thwo", x, kernel[0, 0, 0], precision=_PRECISION) + bias
    y = jax.lax.conv_general_dilated(x[None], kernel, (1, 1, 1), [(0, 0), (pad_hw, pad_hw), (pad_hw, pad_hw)],
                                     dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), precision=_PRECISION)
    return y[0] + bias


def conv2d(x: Array, kernel: Array, bias: Array, *, stride: int = 1, padding: int = 1) -> Array:
    """``[T, H', W', O]``: a per-frame 2-D convolution of ``x: [T, H, W, I]`` with ``kernel: [k, k, I, O]``."""
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), [(padding, padding)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_PRECISION)
    return y + bias


def causal_conv3d(x: Array, kernel: Array, bias: Array, cache: Optional[Array] = None,
                  started: Any = True) -> tuple[Array, Optional[Array]]:
    """``(y: [T, H, W, O], new_cache: [k_t − 1, H, W, I] or None)``: diffusers' ``CogVideoXCausalConv3d`` ("first" padding).

    ``x: [T, H, W, I]`` is prefixed in time with ``cache`` (the last ``k_t − 1`` frames of the
    previous batch's padded input) or, for a video's first batch (``cache is None`` or ``started``
    false), with ``k_t − 1`` copies of its first frame; the convolution is then valid in time and
    zero-padded by ``(k − 1) // 2`` in H and W. ``new_cache`` is the last ``k_t − 1`` frames of the
    padded input (``None`` when ``k_t == 1``: diffusers stores one but never reads it).
    ``started`` may be a traced boolean scalar, so the first and later batches share one program.
    """
    kt, kh = kernel.shape[0], kernel.shape[1]
    if kt > 1:
        first = jnp.broadcast_to(x[:1], (kt - 1, *x.shape[1:]))
        pad = first if cache is None else jnp.where(started, cache.astype(x.dtype), first)
        x = jnp.concatenate([pad, x], axis=0)
        new_cache = x[-(kt - 1):]
    else:
        new_cache = None
    return conv3d(x, kernel, bias, pad_hw=(kh - 1) // 2), new_cache


def group_norm(x: Array, scale: Array, bias: Array, groups: int, eps: float) -> Array:
    """``[T, H, W, C]``: torch's ``GroupNorm`` of ``x: [T, H, W, C]``, statistics over (C/groups, T, H, W)."""
    T, H, W, C = x.shape
    g = x.reshape(T, H, W, groups, C // groups)
    mean = g.mean(axis=(0, 1, 2, 4), keepdims=True)
    var = jnp.square(g - mean).mean(axis=(0, 1, 2, 4), keepdims=True)
    y = ((g - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape)
    return y * scale + bias


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """torch ``F.interpolate(mode="nearest", size=n_out)`` source indices: ``floor(i · (n_in / n_out))`` (float32 scale)."""
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)


def _resize_axis(x: Array, index: np.ndarray, axis: int) -> Array:
    """``x`` gathered along ``axis`` at the static ``index``; a ``repeat`` when that is what the index does."""
    n = x.shape[axis]
    if len(index) % n == 0 and np.array_equal(index, np.repeat(np.arange(n), len(index) // n)):
        return jnp.repeat(x, len(index) // n, axis=axis) if len(index) > n else x
    return jnp.take(x, index, axis=axis)


def resize_like_spatial_norm(zq: Array, size: tuple[int, int, int]) -> Array:
    """``[T, H, W, C]``: ``zq: [t, h, w, C]`` resized (nearest) to ``size = (T, H, W)`` as ``CogVideoXSpatialNorm3D``
    does: for an odd ``T > 1`` the first frame and the rest are resized separately."""
    T, H, W = size
    t = zq.shape[0]
    if T > 1 and T % 2 == 1:
        zq = jnp.concatenate([zq[:1], _resize_axis(zq[1:], _nearest_index(t - 1, T - 1), 0)], axis=0)
    else:
        zq = _resize_axis(zq, _nearest_index(t, T), 0)
    zq = _resize_axis(zq, _nearest_index(zq.shape[1], H), 1)
    return _resize_axis(zq, _nearest_index(zq.shape[2], W), 2)


def _up2(x: Array, axes: Sequence[int]) -> Array:
    for a in axes:
        x = jnp.repeat(x, 2, axis=a)
    return x


# ---------------------------------------------------------------------------------------------
# Modules (parameter holders named as diffusers' tree; the math is in the pure functions above)
# ---------------------------------------------------------------------------------------------


def _uniform(key, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class _Keys:
    """``params()`` → a new key folded from one key, for the submodules' ``rngs``.

    nnx.Rngs updates its counter variable on every draw, which costs ~10 ms under ``nnx.eval_shape``
    (hundreds of parameters: seconds per model_abstract); one draw plus ``fold_in`` costs nothing.
    """

    def __init__(self, rngs: nnx.Rngs):
        self.key, self.count = rngs.params(), 0

    def params(self):
        self.count += 1
        return jax.random.fold_in(self.key, self.count)


class Conv3d(nnx.Module):
    """``kernel: [k, k, k, I, O]``, ``bias: [O]`` (torch's ``Conv3d``)."""

    def __init__(self, cin: int, cout: int, k: int, *, rngs: nnx.Rngs):
        fan_in = cin * k ** 3
        self.kernel = nnx.Param(_uniform(rngs.params(), (k, k, k, cin, cout), fan_in))
        self.bias = nnx.Param(_uniform(rngs.params(), (cout,), fan_in))


class Conv2d(nnx.Module):
    """``kernel: [k, k, I, O]``, ``bias: [O]`` (torch's ``Conv2d``)."""

    def __init__(self, cin: int, cout: int, k: int = 3, *, rngs: nnx.Rngs):
        fan_in = cin * k ** 2
        self.kernel = nnx.Param(_uniform(rngs.params(), (k, k, cin, cout), fan_in))
        self.bias = nnx.Param(_uniform(rngs.params(), (cout,), fan_in))


class GroupNorm(nnx.Module):
    """torch's ``GroupNorm(groups, C, eps)`` over ``[T, H, W, C]``."""

    def __init__(self, channels: int, groups: int, eps: float):
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.groups, self.eps = groups, eps

    def __call__(self, x: Array) -> Array:
        return group_norm(x, self.scale[...], self.bias[...], self.groups, self.eps)


class CausalConv3d(nnx.Module):
    """diffusers' ``CogVideoXCausalConv3d``: ``(x: [T, H, W, I], cache, started) -> (y: [T, H, W, O], new cache)``."""

    def __init__(self, cin: int, cout: int, k: int = 3, *, rngs: nnx.Rngs):
        self.conv = Conv3d(cin, cout, k, rngs=rngs)

    def __call__(self, x: Array, cache: Optional[Array] = None, started: Any = True):
        return causal_conv3d(x, self.conv.kernel[...], self.conv.bias[...], cache, started)


class SpatialNorm3D(nnx.Module):
    """diffusers' ``CogVideoXSpatialNorm3D``: ``GroupNorm(f) · conv_y(zq↑) + conv_b(zq↑)`` (eps 1e-6).

    The 1×1×1 convolutions are applied to ``zq`` *before* the nearest resize (they commute with
    it exactly, and it is up to 64× cheaper at full resolution).
    """

    def __init__(self, f_channels: int, zq_channels: int, groups: int, *, rngs: nnx.Rngs):
        self.norm_layer = GroupNorm(f_channels, groups, 1e-6)
        self.conv_y = CausalConv3d(zq_channels, f_channels, 1, rngs=rngs)
        self.conv_b = CausalConv3d(zq_channels, f_channels, 1, rngs=rngs)

    def __call__(self, f: Array, zq: Array) -> Array:
        y, _ = self.conv_y(zq)
        b, _ = self.conv_b(zq)
        size = f.shape[:3]
        return self.norm_layer(f) * resize_like_spatial_norm(y, size) + resize_like_spatial_norm(b, size)


class ResnetBlock3D(nnx.Module):
    """diffusers' ``CogVideoXResnetBlock3D`` (no time embedding, no dropout at inference, 1×1×1 shortcut).

    ``spatial_norm_dim`` set: the decoder's block (SpatialNorm3D conditioned on the latents);
    ``None``: the encoder's (GroupNorm with ``eps``).
    """

    def __init__(self, cin: int, cout: int, groups: int, eps: float, spatial_norm_dim: Optional[int], *, rngs: nnx.Rngs):
        if spatial_norm_dim is None:
            self.norm1, self.norm2 = GroupNorm(cin, groups, eps), GroupNorm(cout, groups, eps)
        else:
            self.norm1 = SpatialNorm3D(cin, spatial_norm_dim, groups, rngs=rngs)
            self.norm2 = SpatialNorm3D(cout, spatial_norm_dim, groups, rngs=rngs)
        self.conv1 = CausalConv3d(cin, cout, 3, rngs=rngs)
        self.conv2 = CausalConv3d(cout, cout, 3, rngs=rngs)
        self.conv_shortcut = Conv3d(cin, cout, 1, rngs=rngs) if cin != cout else None
        self.spatial = spatial_norm_dim is not None

    def _norm(self, norm, x, zq):
        return norm(x, zq) if self.spatial else norm(x)

    def __call__(self, x: Array, zq: Optional[Array], cache: Optional[dict], started: Any):
        """``(y: [T, H, W, O], new cache {"conv1", "conv2"})`` of ``x: [T, H, W, I]``."""
        cache = cache or {}
        new = {}
        h = jax.nn.silu(self._norm(self.norm1, x, zq))
        h, new["conv1"] = self.conv1(h, cache.get("conv1"), started)
        h = jax.nn.silu(self._norm(self.norm2, h, zq))
        h, new["conv2"] = self.conv2(h, cache.get("conv2"), started)
        if self.conv_shortcut is not None:
            x = conv3d(x, self.conv_shortcut.kernel[...], self.conv_shortcut.bias[...], pad_hw=0)
        return h + x, new


def _resnets(resnets, x, zq, cache, started):
    cache = cache or {}
    new = {}
    for i, resnet in enumerate(resnets):
        x, new[str(i)] = resnet(x, zq, cache.get(str(i)), started)
    return x, new


class Upsample3D(nnx.Module):
    """diffusers' ``CogVideoXUpsample3D``: nearest 2× in H, W (and in time if ``compress_time``, the first
    frame of an odd count kept single), then a per-frame 3×3 convolution."""

    def __init__(self, cin: int, cout: int, compress_time: bool, *, rngs: nnx.Rngs):
        self.conv = Conv2d(cin, cout, 3, rngs=rngs)
        self.compress_time = compress_time

    def __call__(self, x: Array) -> Array:
        T = x.shape[0]
        if self.compress_time and T > 1 and T % 2 == 1:
            x = jnp.concatenate([_up2(x[:1], (1, 2)), _up2(x[1:], (0, 1, 2))], axis=0)
        elif self.compress_time and T > 1:
            x = _up2(x, (0, 1, 2))
        else:
            x = _up2(x, (1, 2))
        return conv2d(x, self.conv.kernel[...], self.conv.bias[...], padding=1)


class Downsample3D(nnx.Module):
    """diffusers' ``CogVideoXDownsample3D``: mean of frame pairs if ``compress_time`` (the first frame of an
    odd count kept), zero pad right and bottom by 1, then a per-frame 3×3 convolution with stride 2."""

    def __init__(self, cin: int, cout: int, compress_time: bool, *, rngs: nnx.Rngs):
        self.conv = Conv2d(cin, cout, 3, rngs=rngs)
        self.compress_time = compress_time

    def __call__(self, x: Array) -> Array:
        if self.compress_time:
            T = x.shape[0]
            first, rest = (x[:1], x[1:]) if T % 2 == 1 else (x[:0], x)
            if rest.shape[0]:
                rest = rest.reshape(rest.shape[0] // 2, 2, *rest.shape[1:]).mean(axis=1)
            x = jnp.concatenate([first, rest], axis=0)
        x = jnp.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)])
        return conv2d(x, self.conv.kernel[...], self.conv.bias[...], stride=2, padding=0)


class MidBlock3D(nnx.Module):
    """diffusers' ``CogVideoXMidBlock3D``: two resnet blocks."""

    def __init__(self, channels: int, groups: int, eps: float, spatial_norm_dim: Optional[int], *, rngs: nnx.Rngs):
        self.resnets = nnx.List([ResnetBlock3D(channels, channels, groups, eps, spatial_norm_dim, rngs=rngs) for _ in range(2)])

    def __call__(self, x, zq, cache, started):
        h, new = _resnets(self.resnets, x, zq, (cache or {}).get("resnets"), started)
        return h, {"resnets": new}


class UpBlock3D(nnx.Module):
    """diffusers' ``CogVideoXUpBlock3D``: ``num_layers`` resnet blocks, then an optional :class:`Upsample3D`."""

    def __init__(self, cin: int, cout: int, num_layers: int, groups: int, eps: float, zq_channels: int,
                 add_upsample: bool, compress_time: bool, *, rngs: nnx.Rngs):
        self.resnets = nnx.List([ResnetBlock3D(cin if i == 0 else cout, cout, groups, eps, zq_channels, rngs=rngs)
                                 for i in range(num_layers)])
        self.upsamplers = nnx.List([Upsample3D(cout, cout, compress_time, rngs=rngs)] if add_upsample else [])

    def __call__(self, x, zq, cache, started):
        h, new = _resnets(self.resnets, x, zq, (cache or {}).get("resnets"), started)
        for up in self.upsamplers:
            h = up(h)
        return h, {"resnets": new}


class DownBlock3D(nnx.Module):
    """diffusers' ``CogVideoXDownBlock3D``: ``num_layers`` resnet blocks, then an optional :class:`Downsample3D`."""

    def __init__(self, cin: int, cout: int, num_layers: int, groups: int, eps: float, add_downsample: bool,
                 compress_time: bool, *, rngs: nnx.Rngs):
        self.resnets = nnx.List([ResnetBlock3D(cin if i == 0 else cout, cout, groups, eps, None, rngs=rngs)
                                 for i in range(num_layers)])
        self.downsamplers = nnx.List([Downsample3D(cout, cout, compress_time, rngs=rngs)] if add_downsample else [])

    def __call__(self, x, cache, started):
        h, new = _resnets(self.resnets, x, None, (cache or {}).get("resnets"), started)
        for down in self.downsamplers:
            h = down(h)
        return h, {"resnets": new}


class Decoder3D(nnx.Module):
    """diffusers' ``CogVideoXDecoder3D``: ``(z: [t, h, w, C], cache, started) -> (frames: [T, H, W, 3], new cache)``."""

    def __init__(self, cfg: CogVideoXVAEConfig, *, rngs: nnx.Rngs):
        ch = list(reversed(cfg.block_out_channels))
        g, zc = cfg.norm_num_groups, cfg.latent_channels
        self.conv_in = CausalConv3d(zc, ch[0], 3, rngs=rngs)
        self.mid_block = MidBlock3D(ch[0], g, cfg.norm_eps, zc, rngs=rngs)
        blocks, cout = [], ch[0]
        for i in range(len(ch)):
            cin, cout = cout, ch[i]
            blocks.append(UpBlock3D(cin, cout, cfg.layers_per_block + 1, g, cfg.norm_eps, zc, add_upsample=i < len(ch) - 1,
                                    compress_time=i < cfg.temporal_levels, rngs=rngs))
        self.up_blocks = nnx.List(blocks)
        self.norm_out = SpatialNorm3D(ch[-1], zc, g, rngs=rngs)
        self.conv_out = CausalConv3d(ch[-1], cfg.out_channels, 3, rngs=rngs)

    def __call__(self, z: Array, cache: Optional[dict] = None, started: Any = True):
        cache = cache or {}
        new: dict = {"up_blocks": {}}
        h, new["conv_in"] = self.conv_in(z, cache.get("conv_in"), started)
        h, new["mid_block"] = self.mid_block(h, z, cache.get("mid_block"), started)
        for i, block in enumerate(self.up_blocks):
            h, new["up_blocks"][str(i)] = block(h, z, cache.get("up_blocks", {}).get(str(i)), started)
        h = jax.nn.silu(self.norm_out(h, z))
        h, new["conv_out"] = self.conv_out(h, cache.get("conv_out"), started)
        return h, new


class Encoder3D(nnx.Module):
    """diffusers' ``CogVideoXEncoder3D``: ``(x: [T, H, W, 3], cache, started) -> (moments: [t, h, w, 2C], new cache)``."""

    def __init__(self, cfg: CogVideoXVAEConfig, *, rngs: nnx.Rngs):
        ch = list(cfg.block_out_channels)
        g = cfg.norm_num_groups
        self.conv_in = CausalConv3d(cfg.in_channels, ch[0], 3, rngs=rngs)
        blocks, cout = [], ch[0]
        for i in range(len(ch)):
            cin, cout = cout, ch[i]
            blocks.append(DownBlock3D(cin, cout, cfg.layers_per_block, g, cfg.norm_eps, add_downsample=i < len(ch) - 1,
                                      compress_time=i < cfg.temporal_levels, rngs=rngs))
        self.down_blocks = nnx.List(blocks)
        self.mid_block = MidBlock3D(ch[-1], g, cfg.norm_eps, None, rngs=rngs)
        self.norm_out = GroupNorm(ch[-1], g, 1e-6)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels, 3, rngs=rngs)

    def __call__(self, x: Array, cache: Optional[dict] = None, started: Any = True):
        cache = cache or {}
        new: dict = {"down_blocks": {}}
        h, new["conv_in"] = self.conv_in(x, cache.get("conv_in"), started)
        for i, block in enumerate(self.down_blocks):
            h, new["down_blocks"][str(i)] = block(h, cache.get("down_blocks", {}).get(str(i)), started)
        h, new["mid_block"] = self.mid_block(h, None, cache.get("mid_block"), started)
        h = jax.nn.silu(self.norm_out(h))
        h, new["conv_out"] = self.conv_out(h, cache.get("conv_out"), started)
        return h, new


class CogVideoXVAE(nnx.Module):
    """diffusers' ``AutoencoderKLCogVideoX`` (without quant convs): ``encoder`` and ``decoder``.

    Call :func:`decode`, :func:`decode_latents`, :func:`iter_decode` or :func:`encode` rather than the
    submodules: they do diffusers' frame batching and carry the caches.
    """

    def __init__(self, cfg: CogVideoXVAEConfig = CogVideoXVAEConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        keys = _Keys(rngs)
        self.encoder = Encoder3D(cfg, rngs=keys)
        self.decoder = Decoder3D(cfg, rngs=keys)


# ---------------------------------------------------------------------------------------------
# Frame batching, streaming decode, tiling
# ---------------------------------------------------------------------------------------------


class DecodeCache(NamedTuple):
    """The decoder's state between frame batches.

    Attributes:
      started: ``[]`` bool; false until a batch has been decoded. While false, every causal
        convolution pads its input with copies of the input's first frame (diffusers' "no cache
        yet") and ``convs`` is not read.
      convs: nested dict mirroring the decoder (``{"conv_in": a, "mid_block": {"resnets": {"0":
        {"conv1": a, "conv2": a}}}, ...}``) of ``[2, H_l, W_l, C_l]`` float32 arrays: the last two
        input frames of every 3×3×3 causal convolution.
    """

    started: Array
    convs: dict


def frame_batches(num_frames: int, frame_batch: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]``: diffusers' split of ``num_frames`` into batches of ``frame_batch``.

    ``max(F // b, 1)`` batches; the first holds ``b + F % b`` frames (all ``F`` if ``F < b``), the others ``b``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frame_batch < 1:
        raise ValueError(f"frame_batch must be >= 1, got {frame_batch}")
    n, rem = max(num_frames // frame_batch, 1), num_frames % frame_batch
    return [(frame_batch * i + (0 if i == 0 else rem), min(frame_batch * (i + 1) + rem, num_frames)) for i in range(n)]


def _f32(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float32), tree)


@functools.partial(jax.jit, static_argnums=0)  # the graphdef is static (hashable)
def _step_jit(graphdef, params, cache: DecodeCache, z: Array):
    frames, convs = nnx.merge(graphdef, params)(z.astype(jnp.float32), cache.convs, cache.started)
    return DecodeCache(jnp.ones((), bool), convs), frames


def _decoder_split(vae: CogVideoXVAE):
    """``(graphdef, float32 params)`` of the decoder: bfloat16 weights are cast up once, outside the
    compiled step, so every weight dtype runs the same program."""
    graphdef, params = nnx.split(vae.decoder)
    return graphdef, _f32(params)


def _step(split, cache: DecodeCache, z: Array):
    graphdef, params = split
    return _step_jit(graphdef, params, cache, z)


def _check_latents(vae: CogVideoXVAE, z, name: str) -> None:
    c = vae.cfg.latent_channels
    shape = tuple(np.shape(z))
    if len(shape) != 4 or shape[-1] != c or min(shape) < 1:
        raise ValueError(f"{name} must be [F, h, w, {c}] (channels last, no batch axis), got shape {shape}")


def init_decode_cache(vae: CogVideoXVAE, latent_size: tuple[int, int]) -> DecodeCache:
    """An empty :class:`DecodeCache` (``started`` false, zero arrays) for latents of spatial size ``(h, w)``."""
    h, w = (int(s) for s in latent_size)
    graphdef, params = _decoder_split(vae)
    z = jax.ShapeDtypeStruct((2, h, w, vae.cfg.latent_channels), jnp.float32)
    convs = jax.eval_shape(lambda p, z: nnx.merge(graphdef, p)(z, None, False)[1], params, z)
    return DecodeCache(jnp.zeros((), bool), jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), convs))


def decode_step(vae: CogVideoXVAE, cache: DecodeCache, z_batch) -> tuple[DecodeCache, Array]:
    """``(new cache, frames: [T, H, W, 3])``: one frame batch ``z_batch: [t, h, w, C]`` through the decoder.

    ``z_batch`` is in the VAE's latent space (raw sampler latents times ``1 / scaling_factor``).
    ``T = t`` doubled (``2t − 1`` for odd ``t > 1``) ``temporal_levels`` times. Feed diffusers' batches
    (:func:`frame_batches`) in order, starting from :func:`init_decode_cache`, to reproduce
    ``vae.decode``; the step compiles once per batch shape.
    """
    _check_latents(vae, z_batch, "z_batch")
    want = tuple(np.shape(cache.convs["conv_in"])[1:3])
    if tuple(np.shape(z_batch)[1:3]) != want:
        raise ValueError(f"z_batch has latent size {tuple(np.shape(z_batch)[1:3])}, the cache was made for {want}")
    return _step(_decoder_split(vae), cache, jnp.asarray(z_batch))


class Tiling(NamedTuple):
    """diffusers' ``enable_tiling`` parameters (sizes in pixels; overlaps as fractions of a tile)."""

    sample_height: int  # tile_sample_min_height
    sample_width: int  # tile_sample_min_width
    overlap_height: float = 1 / 6  # tile_overlap_factor_height
    overlap_width: float = 1 / 5  # tile_overlap_factor_width


def default_tiling(cfg: CogVideoXVAEConfig) -> Tiling:
    """diffusers' defaults: tiles of half the config's sample size, overlaps 1/6 (H) and 1/5 (W)."""
    return Tiling(cfg.sample_height // 2, cfg.sample_width // 2)


class TileGrid(NamedTuple):
    """The tiles of diffusers' ``tiled_decode`` for one latent size (from :func:`tile_grid`)."""

    rows: tuple[tuple[int, int], ...]  # latent (start, end) per tile row
    cols: tuple[tuple[int, int], ...]
    blend: tuple[int, int]  # blend extents (pixels), H and W
    limit: tuple[int, int]  # kept pixels per tile, H and W


def tile_grid(cfg: CogVideoXVAEConfig, tiling: Tiling, h: int, w: int) -> Optional[TileGrid]:
    """diffusers' tiled_decode geometry for a ``[*, h, w, C]`` latent, or ``None`` when it fits one tile."""
    s = cfg.spatial_scale
    lat_h, lat_w = int(tiling.sample_height / s), int(tiling.sample_width / s)
    if not (w > lat_w or h > lat_h):
        return None
    stride_h, stride_w = int(lat_h * (1 - tiling.overlap_height)), int(lat_w * (1 - tiling.overlap_width))
    if lat_h < 1 or lat_w < 1 or stride_h < 1 or stride_w < 1:
        raise ValueError(f"tiling={tiling} gives latent tiles of {lat_h}x{lat_w} with strides {stride_h}x{stride_w}; "
                         f"all must be >= 1 (tile sizes are pixels, {s} per latent pixel)")
    blend = (int(tiling.sample_height * tiling.overlap_height), int(tiling.sample_width * tiling.overlap_width))
    limit = (tiling.sample_height - blend[0], tiling.sample_width - blend[1])
    rows = tuple((i, min(i + lat_h, h)) for i in range(0, h, stride_h))
    cols = tuple((j, min(j + lat_w, w)) for j in range(0, w, stride_w))
    return TileGrid(rows, cols, blend, limit)


def _blend_weights(extent: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(extent, dtype=np.float64)
    return (1 - y / extent).astype(np.float32), (y / extent).astype(np.float32)


def _blend(a: np.ndarray, b: np.ndarray, extent: int, axis: int) -> None:
    """diffusers' ``blend_v`` (``axis=1``) / ``blend_h`` (``axis=2``) on ``[T, H, W, C]``, in place on ``b``."""
    e = min(a.shape[axis], b.shape[axis], extent)
    if e <= 0:
        return
    wa, wb = _blend_weights(e)
    shape = [1, 1, 1, 1]
    shape[axis] = e
    wa, wb = wa.reshape(shape), wb.reshape(shape)
    head = [slice(None)] * 4
    head[axis] = slice(0, e)
    tail = [slice(None)] * 4
    tail[axis] = slice(a.shape[axis] - e, a.shape[axis])
    b[tuple(head)] = a[tuple(tail)] * wa + b[tuple(head)] * wb


def blend_tiles(tiles: list[list[np.ndarray]], grid: TileGrid) -> np.ndarray:
    """``[T, H, W, 3]``: the tiles of one frame batch blended and cropped as diffusers' ``tiled_decode`` does.

    Row-major; each tile is blended (in place) with its upper neighbour, then with its left
    neighbour, both as already blended, then cropped to ``grid.limit``.
    """
    rows = []
    for i, row in enumerate(tiles):
        kept = []
        for j, tile in enumerate(row):
            if i > 0:
                _blend(tiles[i - 1][j], tile, grid.blend[0], axis=1)
            if j > 0:
                _blend(row[j - 1], tile, grid.blend[1], axis=2)
            kept.append(tile[:, : grid.limit[0], : grid.limit[1]])
        rows.append(np.concatenate(kept, axis=2))
    return np.concatenate(rows, axis=1)


def iter_decode(vae: CogVideoXVAE, z, *, frame_batch: int = 2, tiling: Optional[Tiling] = None) -> Iterator[np.ndarray]:
    """Yields the frames ``[T_k, H, W, 3]`` (float32 numpy, not clipped) of each of diffusers' frame batches of ``z``.

    ``z: [F, h, w, C]`` in the VAE's latent space. Device memory is that of one batch (per tile),
    whatever ``F``: one compiled step per batch shape is called in a Python loop, carrying the
    caches. With ``tiling``, latents larger than a tile are decoded in blended tiles
    (diffusers' ``tiled_decode``).
    """
    _check_latents(vae, z, "z")
    z = jnp.asarray(z)
    F, h, w, _ = z.shape
    batches = frame_batches(F, frame_batch)
    grid = tile_grid(vae.cfg, tiling, h, w) if tiling is not None else None
    return _iter_decode(vae, z, batches, grid)  # arguments checked now, not at the first next()


def _iter_decode(vae: CogVideoXVAE, z: Array, batches: list[tuple[int, int]], grid: Optional[TileGrid]) -> Iterator[np.ndarray]:
    split = _decoder_split(vae)
    h, w = z.shape[1:3]
    if grid is None:
        cache = init_decode_cache(vae, (h, w))
        for a, b in batches:
            cache, frames = _step(split, cache, z[a:b])
            yield np.asarray(frames)
        return
    empty: dict = {}  # one empty cache per tile shape (init_decode_cache traces the decoder)
    for r0, r1 in grid.rows:
        for c0, c1 in grid.cols:
            if (r1 - r0, c1 - c0) not in empty:
                empty[r1 - r0, c1 - c0] = init_decode_cache(vae, (r1 - r0, c1 - c0))
    caches = [[empty[r1 - r0, c1 - c0] for c0, c1 in grid.cols] for r0, r1 in grid.rows]
    for a, b in batches:
        tiles = []
        for i, (r0, r1) in enumerate(grid.rows):
            row = []
            for j, (c0, c1) in enumerate(grid.cols):
                caches[i][j], frames = _step(split, caches[i][j], z[a:b, r0:r1, c0:c1])
                row.append(np.array(frames))  # a writable copy: blending is in place
            tiles.append(row)
        yield blend_tiles(tiles, grid)


def decode(vae: CogVideoXVAE, z, *, frame_batch: int = 2, tiling: Optional[Tiling] = None) -> np.ndarray:
    """``[F', H, W, 3]`` float32 frames (not clipped) of ``z: [F, h, w, C]`` in the VAE's latent space.

    Equals diffusers' ``vae.decode(z)`` with ``num_latent_frames_batch_size = frame_batch``
    (default 2, diffusers' own), and with ``tiling``, ``vae.enable_tiling(...)``'s ``tiled_decode``.
    The concatenation of :func:`iter_decode`.
    """
    return np.concatenate(list(iter_decode(vae, z, frame_batch=frame_batch, tiling=tiling)), axis=0)


def decode_latents(vae: CogVideoXVAE, latents, *, frame_batch: int = 2, tiling: Optional[Tiling] = None) -> np.ndarray:
    """``[F', H, W, 3]`` float32 frames in ``[−1, 1]`` of raw sampler latents ``latents: [F, h, w, C]``.

    As diffusers' CogVideoX pipeline: ``z = latents · (1 / scaling_factor)``, :func:`decode`, then
    clipped to ``[−1, 1]``.
    """
    _check_latents(vae, latents, "latents")
    z = jnp.asarray(latents, jnp.float32) * np.float32(1 / vae.cfg.scaling_factor)
    return np.clip(decode(vae, z, frame_batch=frame_batch, tiling=tiling), -1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------


class Posterior(NamedTuple):
    """diffusers' ``DiagonalGaussianDistribution`` of the latents: ``mean`` (its ``mode()``) and ``logvar``
    clamped to ``[−30, 20]``, both ``[F, h, w, C]`` float32 in the VAE's latent space (multiply by
    ``scaling_factor`` for a sampler)."""

    mean: np.ndarray
    logvar: np.ndarray


@functools.partial(jax.jit, static_argnums=0)
def _encode_step_jit(graphdef, params, cache, started, x):
    return nnx.merge(graphdef, params)(x.astype(jnp.float32), cache, started)


def encode(vae: CogVideoXVAE, x, *, frame_batch: int = 8) -> Posterior:
    """The :class:`Posterior` of frames ``x: [F, H, W, 3]`` in ``[−1, 1]``: diffusers' ``vae.encode(x).latent_dist``.

    Frames go through the encoder in diffusers' batches of ``frame_batch`` (its
    ``num_sample_frames_batch_size``, 8), carrying the caches. No tiling.
    """
    shape = tuple(np.shape(x))
    if len(shape) != 4 or shape[-1] != vae.cfg.in_channels or min(shape) < 1:
        raise ValueError(f"x must be [F, H, W, {vae.cfg.in_channels}] (channels last, no batch axis), got shape {shape}")
    x = jnp.asarray(x)
    graphdef, params = nnx.split(vae.encoder)
    params = _f32(params)
    spec = jax.ShapeDtypeStruct((8, *shape[1:]), jnp.float32)
    shapes = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x, None, False)[1], params, spec)
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    started = jnp.zeros((), bool)
    out = []
    for a, b in frame_batches(shape[0], frame_batch):
        moments, cache = _encode_step_jit(graphdef, params, cache, started, x[a:b])
        started = jnp.ones((), bool)
        out.append(np.asarray(moments))
    moments = np.concatenate(out, axis=0)
    c = vae.cfg.latent_channels
    return Posterior(moments[..., :c], np.clip(moments[..., c:], -30.0, 20.0))


# ---------------------------------------------------------------------------------------------
# Converted weights: DST/params.safetensors + DST/config.json
# ---------------------------------------------------------------------------------------------


def model_abstract(config: dict) -> tuple[CogVideoXVAEConfig, Any, Any]:
    """``(CogVideoXVAEConfig, graphdef, abstract params)`` from a diffusers config dict; nothing is initialised."""
    cfg = CogVideoXVAEConfig.from_hf_dict(config)
    model = nnx.eval_shape(lambda: CogVideoXVAE(cfg, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(model)
    return cfg, graphdef, params


def save_weights(dst: str, state, cfg: CogVideoXVAEConfig, *, extra: Optional[dict] = None) -> None:
    """Writes ``state`` (the params nnx.State) to ``DST/params.safetensors`` and ``cfg`` to ``DST/config.json``.

    ``extra`` (JSON-serialisable) is stored in config.json too. Atomic
    (:func:`~syncos_jax.backbones.weights_folder.atomic_folder`): a failed save leaves nothing.
    ``state`` is not modified.

    Raises:
      FileExistsError: if ``dst`` exists and is not an empty folder.
      ValueError: if ``extra`` names ``model`` or ``config``.
    """
    check_extra(extra)
    with atomic_folder(dst) as tmp:
        save_safetensors(os.path.join(tmp, WEIGHTS_FILE), state)
        write_config(tmp, WEIGHTS_MODEL, cfg.to_dict(), extra)


def read_weights_config(dst: str) -> tuple[CogVideoXVAEConfig, dict]:
    """``(CogVideoXVAEConfig, the whole config.json dict)`` of a folder written by :func:`save_weights`.

    Raises:
      FileNotFoundError: if ``DST/config.json`` does not exist.
      ValueError: naming the file, if it is not a JSON object, holds another model, or its config is invalid.
    """
    return read_config(dst, WEIGHTS_MODEL, CogVideoXVAEConfig.from_hf_dict, what="CogVideoX VAE")


def restore_weights(dst: str, abstract) -> Any:
    """A new nnx.State shaped like ``abstract`` holding ``DST/params.safetensors`` (dtype as saved).

    Strict (:func:`~syncos_jax.backbones.weights_folder.strict_state`): exactly the parameters of
    ``abstract``, with its shapes, all finite.

    Raises:
      FileNotFoundError: if the weights file is missing.
      ValueError: naming ``dst``, for an unreadable file, or listing missing, unexpected, mis-shaped
        or non-finite parameters.
    """
    return strict_state(dst, load_safetensors(dst, WEIGHTS_FILE), abstract)


def load(dst: str) -> tuple[CogVideoXVAE, CogVideoXVAEConfig]:
    """``(vae, CogVideoXVAEConfig)`` from a folder written by :func:`save_weights`; nothing is converted."""
    cfg, _ = read_weights_config(dst)
    _, graphdef, abstract = model_abstract(cfg.to_dict())
    return nnx.merge(graphdef, restore_weights(dst, abstract)), cfg
