"""CSD-only (the paper's §3.2 failure case): fused Stein-variational score distillation from noise.

Start ``Y ~ N(0, I)``; at every grid time ``t`` run ``iters`` CSD updates at ``t`` with fresh
noise per iteration; return ``Y`` (ALGORITHM.md §5). SynCoS composed of
:func:`~syncos_jax.samplers.syncos.refine` alone: ``stages=(2,)``, ``t_min=None`` and
``fixed_baseline_noise=False``.
"""

from __future__ import annotations

from syncos_jax.samplers import syncos
from syncos_jax.samplers.syncos import fixed_options

DEFAULTS = dict(stages=(2,), t_min=None, fixed_baseline_noise=False)
SETTINGS = syncos.settings_of(DEFAULTS)  # what build validates


def build(denoiser, schedule, layout, cond, **options):
    """Returns CSD-only as a :class:`~syncos_jax.samplers.base.Sampler` (options: those of
    :func:`syncos_jax.samplers.syncos.build`; ``stages`` is fixed to ``(2,)``)."""
    return syncos.build(denoiser, schedule, layout, cond, **fixed_options("csd-only", DEFAULTS, options))
