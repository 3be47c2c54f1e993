"""DDIM over the whole video: one trajectory, the backbone sees all ``F`` frames at once.

This is Gen-L-Video on the single-chunk layout ``(F, F, F)``, so it shares every line with it. It
needs a backbone that accepts ``F`` frames (``frames_per_chunk`` ``None`` or ``F``); the video's
prompt is the local prompt holding the centre frame (ALGORITHM.md §2 with one chunk).
"""

from __future__ import annotations

from syncos_jax.backbones.protocol import split_denoiser
from syncos_jax.chunking import ChunkLayout
from syncos_jax.samplers import syncos

DEFAULTS = dict(stages=(1, 3))


def whole_video_layout(layout: ChunkLayout, denoiser) -> ChunkLayout:
    """Returns the one-chunk layout ``(F, F, F)``; raises if the backbone cannot take ``F`` frames."""
    defn, _ = split_denoiser(denoiser)
    F = layout.num_frames
    if defn.frames_per_chunk is not None and defn.frames_per_chunk != F:
        raise ValueError(
            f"ddim needs a backbone that sees the whole video of F={F} frames, but this one takes chunks of "
            f"{defn.frames_per_chunk}; use gen_l_video or syncos for longer videos."
        )
    return ChunkLayout(F, F, F)


def init(key, layout, frame_shape, *, initial_noise=None):
    """Returns the initial state (``X_T ~ N(0, I)``, ``[F, H, W, C]``)."""
    return syncos.init(key, layout, frame_shape, initial_noise=initial_noise)


def step(state, denoiser, schedule, layout, cond, config=None, **kwargs):
    """One DDIM step over the whole video; see :func:`syncos_jax.samplers.syncos.step`."""
    config = config or syncos.make_config(**DEFAULTS)
    return syncos.step(state, denoiser, schedule, whole_video_layout(layout, denoiser), cond, config, **kwargs)


def sample(denoiser, schedule, layout, cond, *, key, progress=None, **options):
    """Returns a :class:`~syncos_jax.samplers.base.SampleResult`: deterministic DDIM (``eta`` option) over all frames."""
    if "stages" in options:
        raise TypeError("ddim fixes stages=(1, 3).")
    whole = whole_video_layout(layout, denoiser)
    return syncos.sample(denoiser, schedule, whole, cond, key=key, progress=progress, **{**DEFAULTS, **options})


def expected_nfe(schedule, layout, **options) -> int:
    """Returns ``S·(1 + [γ≠1])``."""
    return syncos.expected_nfe(schedule, ChunkLayout(layout.num_frames, layout.num_frames, 1), **{**DEFAULTS, **options})
