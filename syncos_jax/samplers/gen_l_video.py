"""Gen-L-Video (Wang et al. 2023): temporal co-denoising — fuse the per-chunk DDIM posteriors each step.

SynCoS composed of stages 1 and 3 only (ALGORITHM.md §5): :func:`~syncos_jax.samplers.syncos.codenoise`,
then plain DDIM on the fused ``x̂_0`` — which equals fusing each chunk's own DDIM step, since the
step is linear per frame.
"""

from __future__ import annotations

from syncos_jax.samplers import syncos
from syncos_jax.samplers.syncos import fixed_options

DEFAULTS = dict(stages=(1, 3))
SETTINGS = syncos.settings_of(DEFAULTS)  # what build validates


def build(denoiser, schedule, layout, cond, **options):
    """Returns Gen-L-Video as a :class:`~syncos_jax.samplers.base.Sampler`.

    Same arguments as :func:`syncos_jax.samplers.syncos.build`; ``stages`` is fixed to ``(1, 3)``.
    """
    return syncos.build(denoiser, schedule, layout, cond, **fixed_options("gen-l-video", DEFAULTS, options))
