"""Backbones behind one Denoiser protocol, and the command line's :class:`Backbone` bundles by name.

* :mod:`~syncos_jax.backbones.protocol` — ``Denoiser`` / ``DenoiserDef`` (what samplers see) and
  ``Backbone`` (what the command line sees);
* :mod:`~syncos_jax.backbones.gaussian` — the exact Gaussian video prior;
* :mod:`~syncos_jax.backbones.toy` — the shapes-world model (the default);
* :mod:`~syncos_jax.backbones.cogvideox` — the CogVideoX transformer port.

:func:`open_backbone` opens a :data:`BACKBONES` entry by name; its module is imported only then,
so the toy model's command line never loads the CogVideoX port.
"""

import importlib

from syncos_jax.backbones.gaussian import GaussianVideoPrior
from syncos_jax.backbones.protocol import (
    Backbone, BackboneError, Denoiser, DenoiserDef, NnxDenoiser, check_denoiser_inputs, split_denoiser,
)

# name -> the module whose ``open_backbone(weights=None, text_embeddings=None, vae=None, latent_size=None)`` opens it
BACKBONES = {"toy": "syncos_jax.backbones.toy", "cogvideox": "syncos_jax.backbones.cogvideox"}

__all__ = ["BACKBONES", "Backbone", "BackboneError", "Denoiser", "DenoiserDef", "GaussianVideoPrior", "NnxDenoiser",
           "check_denoiser_inputs", "open_backbone", "split_denoiser"]


def open_backbone(name: str, **arguments) -> Backbone:
    """Returns the :class:`Backbone` ``name`` (a key of :data:`BACKBONES`) opened with ``arguments``
    (``weights``, ``text_embeddings``, ``vae``, ``latent_size``; ``None`` for not given).

    Raises:
      BackboneError: an unknown name, a missing or unreadable argument (naming it).
    """
    if name not in BACKBONES:
        raise BackboneError("backbone", f"expected one of {', '.join(BACKBONES)}, got {name!r}")
    return importlib.import_module(BACKBONES[name]).open_backbone(**arguments)
