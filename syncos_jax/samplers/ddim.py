"""DDIM over the whole video: one trajectory, the backbone sees all ``F`` frames at once.

This is Gen-L-Video on the single-chunk layout ``(F, F, F)`` (stage 1 on one chunk, then the
DDIM step), so it shares every line with it. It needs a backbone that accepts ``F`` frames
(``frames_per_chunk`` ``None`` or ``F``); the video's prompt is the local prompt holding the
centre frame (ALGORITHM.md §2 with one chunk).
"""

from __future__ import annotations

from syncos_jax.chunking import ChunkLayout
from syncos_jax.samplers import syncos
from syncos_jax.samplers.base import denoiser_def
from syncos_jax.samplers.syncos import fixed_options

DEFAULTS = dict(stages=(1, 3))
SETTINGS = syncos.settings_of(DEFAULTS)  # what build validates


def whole_video_layout(layout: ChunkLayout, denoiser) -> ChunkLayout:
    """Returns the one-chunk layout ``(F, F, F)``; raises if the backbone cannot take ``F`` frames."""
    defn = denoiser_def(denoiser)
    F = layout.num_frames
    if defn.frames_per_chunk is not None and defn.frames_per_chunk != F:
        raise ValueError(
            f"ddim needs a backbone that sees the whole video of F={F} frames, but this one takes chunks of "
            f"{defn.frames_per_chunk}; use gen_l_video or syncos for longer videos."
        )
    return ChunkLayout(F, F, F)


def build(denoiser, schedule, layout, cond, **options):
    """Returns whole-video DDIM (``eta`` option: stochastic DDIM) as a :class:`~syncos_jax.samplers.base.Sampler`."""
    return syncos.build(denoiser, schedule, whole_video_layout(layout, denoiser), cond,
                        **fixed_options("ddim", DEFAULTS, options))
