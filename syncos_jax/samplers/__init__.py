"""Samplers with one interface: ``sample(denoiser, schedule, layout, cond, *, key, progress=None, **options)``.

Each module also exposes ``init`` and ``step`` over a NamedTuple state. ``SAMPLERS`` maps the
command-line names to the ``sample`` functions.
"""

from syncos_jax.samplers import csd_only, ddim, fifo, freenoise, gen_l_video, syncos
from syncos_jax.samplers.base import Conditioning, SampleResult, build_conditioning

SAMPLERS = {
    "syncos": syncos.sample,
    "gen-l-video": gen_l_video.sample,
    "csd-only": csd_only.sample,
    "ddim": ddim.sample,
    "fifo": fifo.sample,
    "freenoise": freenoise.sample,
}

__all__ = ["Conditioning", "SAMPLERS", "build_conditioning", "SampleResult", "csd_only", "ddim", "fifo", "freenoise", "gen_l_video", "syncos"]
