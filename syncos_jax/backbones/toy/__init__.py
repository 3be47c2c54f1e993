"""The embedded default backbone: the shapes world and a small text-to-video model trained on it.

* :mod:`~syncos_jax.backbones.toy.world` — the deterministic renderer and its caption grammar;
* :mod:`~syncos_jax.backbones.toy.tokenizer` — the word-level tokenizer;
* :mod:`~syncos_jax.backbones.toy.model` — :class:`ToyVideoDiT` (flax.nnx, v-prediction);
* :mod:`~syncos_jax.backbones.toy.train` — the loss and training step;
* :mod:`~syncos_jax.backbones.toy.weights` — the shipped EMA weights (``toy_dit.safetensors``).

:func:`load_default` bundles what a sampler run needs: the denoiser, the text encoder (tokens),
the schedule and the decoder (identity: the model works in pixel space, ``[−1, 1]``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from syncos_jax import schedules
from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT, toy_denoiser
from syncos_jax.backbones.toy.tokenizer import Tokenizer
from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS, load_toy_model, read_toy_config

__all__ = ["DEFAULT_GUIDANCE", "ToyBackbone", "ToyConfig", "ToyVideoDiT", "Tokenizer", "load_default", "toy_denoiser"]

DEFAULT_GUIDANCE = 4.0


@dataclasses.dataclass
class ToyBackbone:
    """What the samplers and the command line need from the toy model.

    Attributes:
      model: the :class:`ToyVideoDiT`.
      tokenizer: its :class:`Tokenizer`; ``encode(texts) -> [len(texts), L]`` token ids is the
        conditioning builder's ``encode``.
      weights: the weights file it was loaded from (``None`` for a fresh model).
      info: the weights file's metadata (training step, settings).
    """

    model: ToyVideoDiT
    tokenizer: Tokenizer
    weights: str | None = None
    info: dict = dataclasses.field(default_factory=dict)

    name = "toy"
    default_guidance = DEFAULT_GUIDANCE

    @property
    def denoiser(self):
        return toy_denoiser(self.model)

    @property
    def chunk_frames(self) -> int:
        return self.model.cfg.frames

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        c = self.model.cfg
        return (c.image_size, c.image_size, c.channels)

    def encode(self, texts) -> np.ndarray:
        return self.tokenizer(list(texts))

    def check_prompt(self, text: str) -> None:
        """Raises ``ValueError`` unless ``text`` follows the world's caption grammar
        (:func:`~syncos_jax.backbones.toy.world.parse_caption`): the model was trained on nothing else."""
        from syncos_jax.backbones.toy import world

        world.parse_caption(text)

    def schedule(self, num_steps: int = 50) -> schedules.Schedule:
        """The CogVideoX-style sampling schedule the model was trained on."""
        return schedules.cogvideox_2b(num_steps)

    def decode(self, latents) -> np.ndarray:
        """Latents are pixels in ``[−1, 1]``: returns them clipped, ``[F, H, W, 3]``."""
        return np.clip(np.asarray(latents), -1.0, 1.0)


def load_default(path: str = DEFAULT_WEIGHTS) -> ToyBackbone:
    """The toy backbone with the shipped weights (or those in ``path``); no network needed."""
    model = load_toy_model(path)
    _, info = read_toy_config(path)
    return ToyBackbone(model, Tokenizer(model.cfg.text_length), path, info)
