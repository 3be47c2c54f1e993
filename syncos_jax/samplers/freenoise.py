"""FreeNoise (Qiu et al. 2024), the backbone-independent part: noise rescheduling, then one DDIM trajectory.

Noise rescheduling of ``x_T`` with window ``W`` and stride ``S`` (ALGORITHM.md §6): for
``k = W, W + S, … < F`` the block ``[k, k + S)`` becomes a shuffled copy (a permutation drawn from
the key) of block ``[k − W, k − W + S)`` — of the already rescheduled noise, as FreeNoise's loop
does. A short last block copies only the first frames of the shuffled source (FreeNoise's code
crashes there). Then one ordinary DDIM trajectory over all ``F`` frames (the backbone sees the
whole video); if the backbone only takes chunks, the trajectory fuses the layout's windows
(Gen-L-Video) instead — the closest backbone-independent reading. Window-fused temporal attention
is a backbone option, not part of this sampler.

So FreeNoise is an ``init`` (the rescheduled ``x_T``) plus Gen-L-Video's ``step``, reused.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from syncos_jax.chunking import ChunkLayout
from syncos_jax import validate as V
from syncos_jax.samplers import syncos
from syncos_jax.samplers.base import denoiser_def, make_spec, start_frame_shape

Array = jax.Array

__all__ = ["SETTINGS", "build", "reschedule_noise", "trajectory_layout"]

SETTINGS = syncos.settings_of({"stages": (1, 3)}, ("window", "noise_stride"))  # what build validates


@functools.partial(jax.jit, static_argnames=("window", "stride"))
def _reschedule(key, noise, window, stride):
    F = noise.shape[0]
    num_blocks = -(-(F - window) // stride)
    keys = jax.random.split(key, num_blocks)

    def body(b, idx):
        k = window + b * stride
        perm = jax.random.permutation(keys[b], stride)
        src = idx[k - window + perm]  # the source block, as already rescheduled
        return idx.at[k + jnp.arange(stride)].set(src, mode="drop")  # a short last block drops the overflow

    return noise[jax.lax.fori_loop(0, num_blocks, body, jnp.arange(F))]


def reschedule_noise(key: Array, noise: Array, window: int, stride: int) -> Array:
    """Returns FreeNoise's rescheduled noise ``[F, ...]`` (see the module docstring).

    Args:
      key: PRNG key of the permutations (one per block).
      noise: ``[F, ...]`` i.i.d. noise.
      window: ``W`` ≥ 1, the window whose frames are reused.
      stride: ``S`` in ``[1, W]``, the block length.
    """
    F = noise.shape[0]
    if not 1 <= window:
        raise ValueError(f"window={window} must be at least 1.")
    if not 1 <= stride <= window:
        raise ValueError(f"stride={stride} must be between 1 and window={window}.")
    if F <= window:
        return noise
    return _reschedule(key, noise, int(window), int(stride))


def trajectory_layout(layout: ChunkLayout, denoiser) -> ChunkLayout:
    """Returns ``(F, F, F)`` if the backbone can see all ``F`` frames, else ``layout`` (windows fused)."""
    defn = denoiser_def(denoiser)
    F = layout.num_frames
    if defn.frames_per_chunk is None or defn.frames_per_chunk == F:
        return ChunkLayout(F, F, F)
    return layout


def build(denoiser, schedule, layout: ChunkLayout, cond, *, window: Optional[int] = None,
          noise_stride: Optional[int] = None, **options):
    """Returns FreeNoise (noise rescheduling, then DDIM) as a :class:`~syncos_jax.samplers.base.Sampler`.

    Args:
      window: ``W``, default the layout's ``chunk_frames``.
      noise_stride: ``S`` in ``[1, W]``, default the layout's ``stride``.
      **options: DDIM options of :func:`syncos_jax.samplers.syncos.build` (``guidance_scale``, ``eta``,
        ``mesh``, ``frame_shape``, ...); stages are fixed to ``(1, 3)``.

    Its ``init(key, params=None, *, initial_noise=None)`` reschedules ``initial_noise`` (i.i.d.
    noise ``[F, H, W, C]``; drawn from ``key`` if ``None``); its ``step`` is Gen-L-Video's on
    :func:`trajectory_layout`.
    """
    sizes = V.check_options({"window": V.integer(1), "noise_stride": V.integer(1)},
                            {"window": layout.chunk_frames if window is None else window,
                             "noise_stride": layout.stride if noise_stride is None else noise_stride})
    if sizes["noise_stride"] > sizes["window"]:
        raise V.OptionError("noise_stride", sizes["noise_stride"], f"expected an integer in [1, window={sizes['window']}]")
    traj = trajectory_layout(layout, denoiser)
    ddim = syncos.build(denoiser, schedule, traj, cond, **syncos.fixed_options("freenoise", {"stages": (1, 3)}, options,
                                                                              ("window", "noise_stride")))
    frame_shape = dict(ddim.spec.options)["frame_shape"]

    def init(key, params=None, *, initial_noise=None):
        k_noise, k_perm, k_run = jax.random.split(key, 3)
        shape = (layout.num_frames,) + start_frame_shape(frame_shape, initial_noise)
        base = jax.random.normal(k_noise, shape) if initial_noise is None else jnp.asarray(initial_noise)
        x_T = reschedule_noise(k_perm, base, sizes["window"], sizes["noise_stride"])
        return syncos.init(k_run, traj, shape[1:], initial_noise=x_T)

    spec = make_spec(build, ddim.spec.defn, layout, dict(options, frame_shape=frame_shape, **sizes))
    return ddim._replace(init=init, spec=spec)
