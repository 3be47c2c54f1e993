"""Overlapping temporal windows over a long video: layout, ``take``, ``fuse`` and prompt assignment.

A :class:`ChunkLayout` is built once from ``(num_frames F, chunk_frames f, stride)``
(ALGORITHM.md §2): starts ``0, stride, 2·stride, …`` while ``start + f ≤ F``, plus one
end-aligned chunk at ``F − f`` when the last one does not end at ``F``. Every chunk has exactly
``f`` frames and every frame is covered. The layout holds static numpy index arrays, so
:func:`take` is one gather and :func:`fuse` one scatter-add; both are jit-able and vmap-able
(vmap them over a leading batch axis) and contain no Python loop over chunks or frames.

Nothing else in the project slices chunks. Which local prompt owns a frame is decided here too, once
(:func:`segment_bounds`, :func:`prompt_of_frame`): for chunks (:func:`assign_prompts`, by their
centre frame), for FIFO's output frames and for the probes' segments.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

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
    "prompt_of_frame",
    "segment_bounds",
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


def segment_bounds(num_frames: int, prompts: Union[int, Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Returns the ``(start, end)`` (end exclusive) of each local prompt's frames: ``P`` pairs covering ``[0, F)``.

    Args:
      num_frames: ``F``.
      prompts: either ``P``, the number of prompts, for the equal split: prompt ``p`` owns the frames
        ``c`` with ``(c·P) // F == p``, i.e. ``[⌈p·F/P⌉, ⌈(p+1)·F/P⌉)`` (empty when ``P > F``); or
        ``(f_0, …, f_{P−1})``, each event's frame count (positive, summing to ``F``): prompt ``p``
        owns ``[f_0 + … + f_{p−1}, f_0 + … + f_p)``.
    """
    if not _is_int(num_frames) or num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r} must be a positive int.")
    F = int(num_frames)
    if _is_int(prompts):
        if prompts < 1:
            raise ValueError(f"num_prompts={prompts!r} must be a positive int.")
        P = int(prompts)
        return tuple((-(-p * F // P), -(-(p + 1) * F // P)) for p in range(P))
    counts = tuple(prompts) if isinstance(prompts, (tuple, list, np.ndarray)) else None
    if not counts or not all(_is_int(n) and n >= 1 for n in counts):
        raise ValueError(
            f"prompts={prompts!r} must be the number of prompts (a positive int) or each event's frame count "
            f"(a non-empty sequence of positive ints)."
        )
    if sum(counts) != F:
        raise ValueError(
            f"the event frame counts {tuple(int(n) for n in counts)} add up to {sum(counts)} frames, "
            f"but num_frames={F}; they must add up to the video's length."
        )
    ends = np.cumsum(counts)
    return tuple((int(e - n), int(e)) for n, e in zip(counts, ends))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _segment_ends(bounds) -> np.ndarray:
    """Returns ``[P]`` int32 ends of ``bounds`` after checking they cover ``[0, F)`` contiguously."""
    if isinstance(bounds, jax.core.Tracer):
        raise TypeError("bounds must be static (Python ints or numpy), not a traced array.")
    b = np.asarray(bounds)
    if b.ndim != 2 or b.shape[0] < 1 or b.shape[1] != 2 or not np.issubdtype(b.dtype, np.integer):
        raise ValueError(f"bounds must be a non-empty sequence of (start, end) int pairs, got {bounds!r}.")
    starts, ends = b[:, 0], b[:, 1]
    if starts[0] != 0 or np.any(starts[1:] != ends[:-1]) or np.any(ends < starts) or ends[-1] < 1:
        raise ValueError(
            f"bounds={tuple(map(tuple, b.tolist()))} must cover [0, F) contiguously: the first start 0, "
            f"each start the previous end, no end before its start, F ≥ 1."
        )
    return ends.astype(np.int32)


def prompt_of_frame(frame, bounds: Sequence[tuple[int, int]]):
    """Returns the index of the prompt whose segment ``[start, end)`` of ``bounds`` holds each frame.

    Args:
      frame: int frame indices of any shape: a Python int, a numpy array, or a ``jnp`` array
        (traced inside ``jax.jit`` too). Frames below 0 get prompt 0, frames ``≥ F`` the last prompt.
      bounds: static ``P`` pairs ``(start, end)`` covering ``[0, F)`` contiguously
        (:func:`segment_bounds`); empty segments own no frame.

    Returns:
      the prompt indices, ``frame``'s shape, ``int32``: a ``jnp`` array for a ``jnp`` input, numpy
      otherwise. For the equal split ``segment_bounds(F, P)`` this is ``(c·P) // F`` for ``c`` in ``[0, F)``.
    """
    ends = _segment_ends(bounds)
    last = ends.shape[0] - 1
    if isinstance(frame, jax.Array):
        if not jnp.issubdtype(frame.dtype, jnp.integer):
            raise TypeError(f"frame must hold ints, got dtype {frame.dtype}.")
        owner = jnp.searchsorted(jnp.asarray(ends), frame.astype(jnp.int32), side="right", method="compare_all")
        return jnp.minimum(owner, last).astype(jnp.int32)
    f = np.asarray(frame)
    if not np.issubdtype(f.dtype, np.integer):
        raise TypeError(f"frame must hold ints, got {frame!r} (dtype {f.dtype}).")
    return np.minimum(np.searchsorted(ends, f, side="right"), last).astype(np.int32)


def assign_prompts(layout: ChunkLayout, prompts: Union[int, Sequence[tuple[int, int]]]) -> np.ndarray:
    """Returns ``[N]`` int32 the local prompt of each chunk (ALGORITHM.md §2).

    Chunk ``i`` takes the prompt whose segment holds its centre frame ``starts[i] + (f − 1) // 2``
    (the lower middle frame when ``f`` is even), by :func:`prompt_of_frame`.

    Args:
      layout: the chunk layout.
      prompts: ``P``, the number of prompts, for the equal split ``segment_bounds(F, P)``
        (``p = (centre·P) // F``), or the prompts' ``(start, end)`` bounds covering ``[0, F)``.
    """
    if _is_int(prompts):
        bounds = segment_bounds(layout.num_frames, prompts)
    else:
        bounds = prompts
        covered = int(_segment_ends(bounds)[-1])
        if covered != layout.num_frames:
            raise ValueError(f"bounds cover {covered} frames, but {layout} has F={layout.num_frames}.")
    centre = layout.starts + (layout.chunk_frames - 1) // 2
    return prompt_of_frame(centre, bounds)
