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

__all__ = ["calls_per_chunk", "guided"]


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
