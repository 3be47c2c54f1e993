"""Gen-L-Video (Wang et al. 2023): temporal co-denoising — fuse the per-chunk DDIM posteriors each step.

Exactly SynCoS with ``stages=(1, 3)`` (ALGORITHM.md §5): stage 1, then plain DDIM on the fused
``x̂_0`` — which equals fusing each chunk's own DDIM step, since the step is linear per frame.
"""

from __future__ import annotations

from syncos_jax.samplers import syncos
from syncos_jax.samplers.syncos import SynCoSState as State  # noqa: F401  (same state)

init = syncos.init

DEFAULTS = dict(stages=(1, 3))


def config(**options) -> syncos.SynCoSConfig:
    """Returns the :class:`~syncos_jax.samplers.syncos.SynCoSConfig` of Gen-L-Video with ``options``."""
    return syncos.make_config(**{**DEFAULTS, **options})


def step(state, denoiser, schedule, layout, cond, config=None, **kwargs):
    """One Gen-L-Video step; see :func:`syncos_jax.samplers.syncos.step`."""
    return syncos.step(state, denoiser, schedule, layout, cond, config or globals()["config"](), **kwargs)


def sample(denoiser, schedule, layout, cond, *, key, progress=None, **options):
    """Returns a :class:`~syncos_jax.samplers.base.SampleResult` sampled with Gen-L-Video.

    Same arguments as :func:`syncos_jax.samplers.syncos.sample`; ``stages`` is fixed to ``(1, 3)``.
    """
    if "stages" in options:
        raise TypeError("gen_l_video fixes stages=(1, 3); use samplers.syncos.sample to choose stages.")
    return syncos.sample(denoiser, schedule, layout, cond, key=key, progress=progress, **{**DEFAULTS, **options})


def expected_nfe(schedule, layout, **options) -> int:
    """Returns the closed-form NFE ``S·N·(1 + [γ≠1])``."""
    return syncos.expected_nfe(schedule, layout, **{**DEFAULTS, **options})
