"""FreeNoise (Qiu et al. 2024), the backbone-independent part: noise rescheduling, then one DDIM trajectory.

Noise rescheduling of ``x_T`` with window ``W`` and stride ``S`` (ALGORITHM.md §6): for
``k = W, W + S, … < F`` the block ``[k, k + S)`` becomes a shuffled copy (a permutation drawn from
the key) of block ``[k − W, k − W + S)`` — of the already rescheduled noise, as FreeNoise's loop
does. A short last block copies only the first frames of the shuffled source (FreeNoise's code
crashes there). Then one ordinary DDIM trajectory over all ``F`` frames (the backbone sees the
whole video); if the backbone only takes chunks, the trajectory fuses the layout's windows
(Gen-L-Video) instead — the closest backbone-independent reading. Window-fused temporal attention
is a backbone option, not part of this sampler.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from syncos_jax.backbones.protocol import split_denoiser
from syncos_jax.chunking import ChunkLayout
from syncos_jax.samplers import syncos
from syncos_jax.samplers.base import SampleResult, frame_shape_of, is_key_batch

Array = jax.Array

__all__ = ["init", "reschedule_noise", "sample", "trajectory_layout"]


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
    defn, _ = split_denoiser(denoiser)
    F = layout.num_frames
    if defn.frames_per_chunk is None or defn.frames_per_chunk == F:
        return ChunkLayout(F, F, F)
    return layout


def sample(
    denoiser,
    schedule,
    layout: ChunkLayout,
    cond,
    *,
    key: Array,
    progress=None,
    window: Optional[int] = None,
    noise_stride: Optional[int] = None,
    initial_noise: Optional[Array] = None,
    frame_shape=None,
    mesh=None,
    **options,
) -> SampleResult:
    """Returns a :class:`SampleResult` sampled with FreeNoise's noise rescheduling and DDIM.

    Args:
      window: ``W``, default the layout's ``chunk_frames``.
      noise_stride: ``S``, default the layout's ``stride``.
      key: a PRNG key, or ``[batch]`` keys (vmapped).
      initial_noise: i.i.d. noise to reschedule (``[F, H, W, C]``, batched likewise); drawn from ``key`` if ``None``.
      **options: DDIM options of :class:`~syncos_jax.samplers.syncos.SynCoSConfig`
        (``guidance_scale``, ``eta``, ``diagnostics``, ...); stages are fixed to ``(1, 3)``.
    """
    if "stages" in options:
        raise TypeError("freenoise fixes stages=(1, 3).")
    window = layout.chunk_frames if window is None else int(window)
    noise_stride = layout.stride if noise_stride is None else int(noise_stride)
    shape = (layout.num_frames,) + frame_shape_of(denoiser, frame_shape, initial_noise)
    traj = trajectory_layout(layout, denoiser)
    config = syncos.make_config(stages=(1, 3), **options)
    make = functools.partial(init, layout=traj, frame_shape=shape[1:], window=window, noise_stride=noise_stride)
    if not is_key_batch(key):
        state = make(key, initial_noise=initial_noise)
    elif initial_noise is None:
        state = jax.vmap(lambda k: make(k))(key)
    else:
        state = jax.vmap(lambda k, n: make(k, initial_noise=n))(key, initial_noise)
    state, diag = syncos.run(denoiser, schedule, traj, cond, state, config=config, progress=progress, mesh=mesh)
    return syncos.finish(state, diag, schedule, config.check_finite)


def init(
    key: Array,
    layout: ChunkLayout,
    frame_shape,
    *,
    window: int,
    noise_stride: int,
    initial_noise: Optional[Array] = None,
) -> syncos.SynCoSState:
    """Returns the start state of FreeNoise's DDIM trajectory: ``x_T`` rescheduled (one key).

    ``key`` splits into the noise, the permutations and the trajectory's key, as :func:`sample`
    does, so stepping this state with :func:`syncos_jax.samplers.syncos.run` (``stages=(1, 3)``,
    on :func:`trajectory_layout`) gives :func:`sample`'s video.
    """
    k_noise, k_perm, k_run = jax.random.split(key, 3)
    shape = (layout.num_frames,) + tuple(frame_shape)
    base = jax.random.normal(k_noise, shape) if initial_noise is None else jnp.asarray(initial_noise)
    x_T = reschedule_noise(k_perm, base, window, noise_stride)
    return syncos.init(k_run, layout, frame_shape, initial_noise=x_T)
