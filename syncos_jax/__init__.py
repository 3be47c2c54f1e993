"""syncos_jax: SynCoS (Synchronized Coupled Sampling) for multi-event long videos, in JAX/Flax.

Modules (each one concept, see ARCHITECTURE.md):

* :mod:`syncos_jax.schedules` — noise schedules, grids, prediction-type conversions, DDIM/Euler step.
* :mod:`syncos_jax.chunking` — overlapping windows: ``ChunkLayout``, ``take``, ``fuse``, ``fuse_subset``,
  and which prompt owns each frame and chunk (``segment_bounds``, ``prompt_of_frame``, ``assign_prompts``).
* :mod:`syncos_jax.guidance` — classifier-free guidance around a denoiser.
* :mod:`syncos_jax.csd` — RBF kernel (median heuristic) and the Stein-variational CSD gradient.
* :mod:`syncos_jax.prompts` — structured prompts (global + local), scenario files and ``Conditioning``.
* :mod:`syncos_jax.backbones` — the Denoiser and Backbone protocols and the backbones (``GaussianVideoPrior``, toy, CogVideoX).
* :mod:`syncos_jax.samplers` — one ``Sampler`` interface (``build(...)`` → ``init`` / ``step(state, params)``),
  the generic compiled ``sample`` / ``run``, and ``SAMPLERS`` (name → builder).
"""

from syncos_jax import chunking, csd, guidance, prompts, schedules
from syncos_jax.chunking import ChunkLayout, assign_prompts, fuse, fuse_subset, prompt_of_frame, segment_bounds, take
from syncos_jax.csd import csd_gradient, rbf_kernel
from syncos_jax.guidance import guided
from syncos_jax.prompts import Conditioning, StructuredPrompt, build_conditioning
from syncos_jax.schedules import Schedule, ddim_step, eps_from_x0, from_x0_eps, to_x0_eps

__version__ = "0.1.0"

__all__ = [
    "ChunkLayout",
    "Conditioning",
    "Schedule",
    "StructuredPrompt",
    "assign_prompts",
    "build_conditioning",
    "chunking",
    "csd",
    "csd_gradient",
    "ddim_step",
    "eps_from_x0",
    "from_x0_eps",
    "fuse",
    "fuse_subset",
    "guidance",
    "guided",
    "prompt_of_frame",
    "prompts",
    "rbf_kernel",
    "schedules",
    "segment_bounds",
    "take",
    "to_x0_eps",
]
