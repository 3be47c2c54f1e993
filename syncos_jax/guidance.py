"""Classifier-free guidance around a denoiser (ALGORITHM.md §1).

``out = out_u + γ·(out_c − out_u)`` on the raw backbone output. The conditional and
unconditional passes run as **one** batched backbone call of ``2B`` chunks (so the CFG pair can
sit on a mesh axis); ``γ == 1`` (a Python number) skips the unconditional pass entirely.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["calls_per_chunk", "dynamic_cfg_scales", "guided", "step_guidance"]


def _is_unguided(guidance_scale) -> bool:
    return isinstance(guidance_scale, (int, float)) and float(guidance_scale) == 1.0


def calls_per_chunk(guidance_scale) -> int:
    """Returns the backbone evaluations per chunk: 1 when ``guidance_scale == 1``, else 2 (the CFG pair)."""
    return 1 if _is_unguided(guidance_scale) else 2


def guided(
    denoise: Callable[[Array, Array, Any], Array],
    x: Array,
    t: Array,
    cond: Any,
    uncond: Any,
    guidance_scale,
) -> Array:
    """Returns the classifier-free-guided output ``out_u + γ·(out_c − out_u)``.

    Args:
      denoise: ``denoise(x, t, cond) -> out`` (a bound denoiser, or ``partial(defn.apply, params)``).
      x: ``[B, f, H, W, C]`` noisy chunks.
      t: ``[B]`` or ``[B, f]`` model times.
      cond: conditional pytree (leading axis ``B``).
      uncond: unconditional pytree, same structure and shapes as ``cond``; unused when ``γ == 1``.
      guidance_scale: ``γ``; a Python ``1``/``1.0`` makes exactly one backbone call with ``cond``.
        Any other value (or a traced scalar) makes one call on the ``2B`` batch ``[uncond; cond]``.
    """
    if _is_unguided(guidance_scale):
        return denoise(x, t, cond)
    if jax.tree_util.tree_structure(cond) != jax.tree_util.tree_structure(uncond):
        raise ValueError("cond and uncond must be pytrees of the same structure for classifier-free guidance.")
    B = x.shape[0]
    pair = jax.tree_util.tree_map(lambda u, c: jnp.concatenate([u, c], axis=0), uncond, cond)
    out = denoise(jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0), pair)
    out_u, out_c = out[:B], out[B:]
    return out_u + guidance_scale * (out_c - out_u)


def dynamic_cfg_scales(guidance_scale: float, timesteps) -> tuple[float, ...]:
    """Per-step guidance of diffusers' CogVideoX pipeline with ``use_dynamic_cfg=True``.

    ``γ_k = 1 + γ·(1 − cos(π·((S − t_k)/S)^5))/2`` with ``S`` the number of steps and ``t_k`` the
    step's model time, evaluated in float64 exactly as the pipeline writes it (Python ``math``).
    Note that the pipeline puts the model time ``t_k ∈ [0, T)`` where a step fraction would make
    sense, so for ``t_k > S`` the cosine's argument is large and ``γ_k`` swings within
    ``[1, 1 + γ]``; this reproduces diffusers, it does not fix it.

    Returns a tuple (static, hashable) to pass as a sampler's ``guidance_scale``.
    """
    import math

    import numpy as np

    ts = [float(t) for t in np.asarray(timesteps).ravel()]
    S = len(ts)
    return tuple(1.0 + float(guidance_scale) * ((1.0 - math.cos(math.pi * ((S - t) / S) ** 5.0)) / 2.0) for t in ts)


def step_guidance(guidance_scale, step):
    """The guidance of grid step ``step``: ``guidance_scale`` itself if it is a number, else entry
    ``step`` of a per-step tuple (e.g. :func:`dynamic_cfg_scales`)."""
    if isinstance(guidance_scale, (tuple, list)):
        return jnp.asarray(guidance_scale, jnp.float32)[step]
    return guidance_scale
