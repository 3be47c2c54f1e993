"""Backbones behind one Denoiser protocol (see :mod:`syncos_jax.backbones.protocol`)."""

from syncos_jax.backbones.gaussian import GaussianVideoPrior
from syncos_jax.backbones.protocol import Denoiser, DenoiserDef, NnxDenoiser, check_denoiser_inputs, split_denoiser

__all__ = ["Denoiser", "DenoiserDef", "GaussianVideoPrior", "NnxDenoiser", "check_denoiser_inputs", "split_denoiser"]
