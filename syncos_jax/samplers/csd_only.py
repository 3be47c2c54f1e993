"""CSD-only (the paper's §3.2 failure case): fused Stein-variational score distillation from noise.

Start ``Y ~ N(0, I)``; at every grid time ``t`` run ``iters`` CSD updates at ``t`` with fresh
noise per iteration; return ``Y`` (ALGORITHM.md §5). SynCoS with ``stages=(2,)``,
``t_min=None`` and ``fixed_baseline_noise=False``.
"""

from __future__ import annotations

from syncos_jax.samplers import syncos

init = syncos.init

DEFAULTS = dict(stages=(2,), t_min=None, fixed_baseline_noise=False)


def config(**options) -> syncos.SynCoSConfig:
    """Returns the :class:`~syncos_jax.samplers.syncos.SynCoSConfig` of CSD-only with ``options``."""
    return syncos.make_config(**{**DEFAULTS, **options})


def step(state, denoiser, schedule, layout, cond, config=None, **kwargs):
    """One CSD-only step; see :func:`syncos_jax.samplers.syncos.step`."""
    return syncos.step(state, denoiser, schedule, layout, cond, config or globals()["config"](), **kwargs)


def sample(denoiser, schedule, layout, cond, *, key, progress=None, **options):
    """Returns a :class:`~syncos_jax.samplers.base.SampleResult` sampled with CSD-only (``stages=(2,)``)."""
    if "stages" in options:
        raise TypeError("csd_only fixes stages=(2,); use samplers.syncos.sample to choose stages.")
    return syncos.sample(denoiser, schedule, layout, cond, key=key, progress=progress, **{**DEFAULTS, **options})


def expected_nfe(schedule, layout, **options) -> int:
    """Returns the closed-form NFE ``S·iters·B·(1 + [γ≠1])``."""
    return syncos.expected_nfe(schedule, layout, **{**DEFAULTS, **options})
