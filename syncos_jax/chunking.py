"""Overlapping temporal windows over a long video: layout, ``take``, ``fuse`` and prompt assignment.

A :class:`ChunkLayout` is built once from ``(num_frames F, chunk_frames f, stride)``
(ALGORITHM.md §2): starts ``0, stride, 2·stride, …`` while ``start + f ≤ F``, plus one
end-aligned chunk at ``F − f`` when the last one does not end at ``F``. Every chunk has exactly
``f`` frames and every frame is covered. The layout holds static numpy index arrays, so
:func:`take` is one gather and :func:`fuse` one scatter-add; both are jit-able and vmap-able
(vmap them over a leading batch axis) and contain no Python loop over chunks or frames.

Nothing else in the project slices chunks.
"""

from __future__ import annotations

import functools
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

FUSION_WEIGHTS = ("uniform", "triangular", "gaussian")
Weights = Union[str, np.ndarray, tuple]

__all__ = [
    "FUSION_WEIGHTS",
    "ChunkLayout",
    "assign_prompts",
    "chunk_weights",
    "fuse",
    "fuse_subset",
    "take",
    "take_subset",
]


class ChunkLayout:
    """Static layout of ``N`` overlapping windows of ``f`` frames over ``F`` frames.

    Hashable (by ``(F, f, stride)``), so it can be a static argument of ``jax.jit``.

    Attributes:
      num_frames: ``F``.
      chunk_frames: ``f``.
      stride: distance between consecutive starts (the last chunk may be closer: end-aligned).
      starts: ``[N]`` int numpy array of first frames.
      index: ``[N, f]`` int numpy array, ``index[i, k] = starts[i] + k``.
      num_chunks: ``N``.
      coverage: ``[F]`` how many chunks cover each frame.
    """

    def __init__(self, num_frames: int, chunk_frames: int, stride: int):
        for name, value in (("num_frames", num_frames), ("chunk_frames", chunk_frames), ("stride", stride)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames={chunk_frames} must be at least 1.")
        if num_frames < chunk_frames:
            raise ValueError(
                f"num_frames={num_frames} is smaller than chunk_frames={chunk_frames}; "
                f"a video needs at least one full chunk."
            )
        if not 1 <= stride <= chunk_frames:
            raise ValueError(
                f"stride={stride} must be between 1 and chunk_frames={chunk_frames} "
                f"(a larger stride leaves frames uncovered)."
            )
        self.num_frames = int(num_frames)
        self.chunk_frames = int(chunk_frames)
        self.stride = int(stride)
        starts = list(range(0, self.num_frames - self.chunk_frames + 1, self.stride))
        if starts[-1] + self.chunk_frames < self.num_frames:
            starts.append(self.num_frames - self.chunk_frames)
        self.starts = np.asarray(starts, dtype=np.int32)
        self.index = self.starts[:, None] + np.arange(self.chunk_frames, dtype=np.int32)[None, :]
        self.coverage = np.bincount(self.index.ravel(), minlength=self.num_frames)
        for a in (self.starts, self.index, self.coverage):
            a.setflags(write=False)

    @property
    def num_chunks(self) -> int:
        """The number of chunks ``N``."""
        return int(self.starts.shape[0])

    def _key(self):
        return (self.num_frames, self.chunk_frames, self.stride)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, ChunkLayout) and self._key() == other._key()

    def __repr__(self):
        return (
            f"ChunkLayout(num_frames={self.num_frames}, chunk_frames={self.chunk_frames}, "
            f"stride={self.stride}, num_chunks={self.num_chunks})"
        )


def chunk_weights(chunk_frames: int, weights: Weights = "uniform") -> np.ndarray:
    """Returns the per-position fusion weights ``[f]`` (float32, all positive).

    * ``uniform``: ones (the paper; the least-squares average of the overlapping chunks).
    * ``triangular``: ``min(k + 1, f − k)``, i.e. ``[1, 2, …, 2, 1]`` (tapered, as DiTCtrl).
    * ``gaussian``: ``exp(−(k − (f − 1)/2)² / (2·(f/4)²))``, centre-weighted.
    * an array of ``f`` positive numbers: used as given.
    """
    f = chunk_frames
    if isinstance(weights, str):
        if weights not in FUSION_WEIGHTS:
            raise ValueError(
                f"fusion_weights={weights!r} is not supported; expected one of "
                f"{', '.join(map(repr, FUSION_WEIGHTS))} or an array of {f} positive weights."
            )
        k = np.arange(f, dtype=np.float64)
        if weights == "uniform":
            w = np.ones(f)
        elif weights == "triangular":
            w = np.minimum(k + 1, f - k)
        else:
            w = np.exp(-((k - (f - 1) / 2) ** 2) / (2 * (f / 4) ** 2))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (f,) or not np.all(np.isfinite(w)) or not np.all(w > 0):
            raise ValueError(
                f"fusion_weights must be {f} finite positive numbers (one per chunk position), got {w!r}."
            )
    return w.astype(np.float32)


def _check_frames(layout: ChunkLayout, x: Array, name: str) -> None:
    if x.ndim < 1 or x.shape[0] != layout.num_frames:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, expected [F={layout.num_frames}, ...] for {layout}. "
            f"(For a batch of videos, jax.vmap over the leading axis.)"
        )


def _check_chunks(layout: ChunkLayout, chunks: Array, count: int, name: str) -> None:
    if chunks.ndim < 2 or chunks.shape[:2] != (count, layout.chunk_frames):
        raise ValueError(
            f"{name} has shape {tuple(chunks.shape)}, expected [{count}, f={layout.chunk_frames}, ...] for {layout}."
        )


def take(layout: ChunkLayout, x: Array) -> Array:
    """Returns the chunks of a video.

    Args:
      layout: the chunk layout.
      x: ``[F, ...]`` (typically ``[F, H, W, C]``).

    Returns:
      ``[N, f, ...]``, ``out[i] = x[starts[i] : starts[i] + f]`` — one gather.
    """
    _check_frames(layout, x, "x")
    return jnp.asarray(x)[layout.index]


@functools.lru_cache(maxsize=256)
def _inverse_weight(layout: ChunkLayout, weights_key) -> np.ndarray:
    w = chunk_weights(layout.chunk_frames, np.asarray(weights_key) if isinstance(weights_key, tuple) else weights_key)
    total = np.zeros(layout.num_frames, np.float64)
    np.add.at(total, layout.index.ravel(), np.tile(w, layout.num_chunks))
    return (1.0 / total).astype(np.float32)


def take_subset(layout: ChunkLayout, x: Array, chunk_ids: Array) -> Array:
    """Returns chunks ``chunk_ids: [B]`` (may be traced) of ``x: [F, ...]``, shape ``[B, f, ...]`` — one gather."""
    _check_frames(layout, x, "x")
    return jnp.asarray(x)[jnp.asarray(layout.index)[chunk_ids]]


def _weights_key(weights: Weights):
    return weights if isinstance(weights, str) else tuple(np.asarray(weights, dtype=np.float64).tolist())


def fuse(layout: ChunkLayout, chunks: Array, weights: Weights = "uniform") -> Array:
    """Returns the weighted average of overlapping chunks, ``[F, ...]``.

    ``out[n] = Σ_{i,k: index[i,k]=n} w_k·chunks[i, k] / Σ_{i,k: index[i,k]=n} w_k`` — one
    scatter-add and a multiplication by the static inverse weight sums. ``fuse(take(x)) == x``
    and ``fuse`` is linear.

    Args:
      layout: the chunk layout.
      chunks: ``[N, f, ...]``.
      weights: see :func:`chunk_weights`.
    """
    _check_chunks(layout, chunks, layout.num_chunks, "chunks")
    w = chunk_weights(layout.chunk_frames, weights)
    trailing = chunks.shape[2:]
    weighted = chunks * jnp.asarray(w, chunks.dtype).reshape((1, -1) + (1,) * len(trailing))
    flat = weighted.reshape((-1,) + trailing)
    total = jnp.zeros((layout.num_frames,) + trailing, chunks.dtype).at[layout.index.ravel()].add(flat)
    inv = _inverse_weight(layout, _weights_key(weights))
    return total * jnp.asarray(inv, chunks.dtype).reshape((-1,) + (1,) * len(trailing))


def fuse_subset(layout: ChunkLayout, chunks: Array, chunk_ids: Array, weights: Weights = "uniform") -> Array:
    """Returns the weighted average of a minibatch of chunks, ``[F, ...]``; uncovered frames are 0.

    Args:
      layout: the chunk layout.
      chunks: ``[B, f, ...]``, the values of chunks ``chunk_ids``.
      chunk_ids: ``[B]`` int chunk indices in ``[0, N)`` (may be traced; distinct in SynCoS).
      weights: see :func:`chunk_weights`.

    Frames that no chunk of the minibatch covers get exactly 0 (never a division by zero).
    """
    chunk_ids = jnp.asarray(chunk_ids)
    if chunk_ids.ndim != 1:
        raise ValueError(f"chunk_ids must be a vector [B], got shape {tuple(chunk_ids.shape)}.")
    _check_chunks(layout, chunks, chunk_ids.shape[0], "chunks")
    w = jnp.asarray(chunk_weights(layout.chunk_frames, weights), chunks.dtype)
    trailing = chunks.shape[2:]
    index = jnp.asarray(layout.index)[chunk_ids].ravel()
    weighted = chunks * w.reshape((1, -1) + (1,) * len(trailing))
    total = jnp.zeros((layout.num_frames,) + trailing, chunks.dtype).at[index].add(weighted.reshape((-1,) + trailing))
    wsum = jnp.zeros((layout.num_frames,), chunks.dtype).at[index].add(jnp.tile(w, chunk_ids.shape[0]))
    covered = wsum > 0
    inv = jnp.where(covered, 1.0 / jnp.where(covered, wsum, 1.0), 0.0)
    return total * inv.reshape((-1,) + (1,) * len(trailing))


def assign_prompts(layout: ChunkLayout, num_prompts: int) -> np.ndarray:
    """Returns ``[N]`` the local prompt of each chunk (ALGORITHM.md §2).

    Prompt ``p`` owns the frame segment ``[p·F/P, (p+1)·F/P)``; chunk ``i`` takes the prompt whose
    segment holds its centre frame ``starts[i] + (f − 1) // 2`` (the lower middle frame when ``f``
    is even). Computed in exact integer arithmetic: ``p = (centre·P) // F``.
    """
    if not isinstance(num_prompts, (int, np.integer)) or num_prompts < 1:
        raise ValueError(f"num_prompts={num_prompts!r} must be a positive int.")
    centre = layout.starts.astype(np.int64) + (layout.chunk_frames - 1) // 2
    return ((centre * int(num_prompts)) // layout.num_frames).astype(np.int32)
