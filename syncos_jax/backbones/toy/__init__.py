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
from syncos_jax.backbones.protocol import BackboneError
from syncos_jax.backbones.toy import world
from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT, toy_denoiser
from syncos_jax.backbones.toy.tokenizer import Tokenizer
from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS, load_toy_model, read_toy_config
from syncos_jax.prompts import PromptError, StructuredPrompt, check_texts

__all__ = ["DEFAULT_GUIDANCE", "ToyBackbone", "ToyConfig", "ToyVideoDiT", "Tokenizer", "load_default", "open_backbone",
           "toy_denoiser"]

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
    latent_space = False  # the model works in pixel space

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

    def check_prompt(self, prompt: StructuredPrompt) -> None:
        """Raises :class:`~syncos_jax.prompts.PromptError` unless every part of ``prompt`` is made of
        known words (each part alone, so the field at fault is named) and every event's joined text
        follows the world's caption grammar (:func:`~syncos_jax.backbones.toy.world.parse_caption`):
        the model was trained on nothing else."""
        parts = [("global_prompt", prompt.global_prompt)]
        parts += [(f"local_prompts[{i}]", p) for i, p in enumerate(prompt.local_prompts)]
        for field, text in parts:
            try:
                self.encode([text])
            except ValueError as e:
                raise PromptError(field, str(e)) from None
        check_texts(prompt, world.parse_caption)

    def probe(self, frames, segments, texts) -> list[dict]:
        """Reads each event of ``frames: [F, H, W, 3]`` with the shapes-world probes
        (:func:`syncos_jax.metrics.read_segments`): per event ``{"probe": what was read, "expected":
        what its caption asks (``None`` if it does not parse), "match": factor by factor}``.

        The probes live one layer up, in :mod:`syncos_jax.metrics.shapes` (which reads this world),
        so they are imported here, when a video is probed, and the packages import one way only.
        """
        from syncos_jax.metrics import shapes as shape_probes

        out = []
        for reading, text in zip(shape_probes.read_segments(frames, segments), texts):
            try:
                c = world.parse_caption(text)
                expected = {"colour": c.colour, "shape": c.shape, "size": c.size, "motion": c.motion, "background": c.background}
            except ValueError:
                expected = None
            rec = {"probe": reading.as_dict(), "expected": expected}
            if expected is not None:
                rec["match"] = {k: getattr(reading, k) == v for k, v in expected.items()}
            out.append(rec)
        return out

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


def open_backbone(weights: str | None = None, **others) -> ToyBackbone:
    """The toy backbone for the command line (:func:`syncos_jax.backbones.open_backbone`): the weights
    file ``weights`` or the shipped one. Raises :class:`~syncos_jax.backbones.protocol.BackboneError`
    naming what could not be read, or an argument the toy backbone does not take."""
    for name, value in others.items():
        if value is not None:
            raise BackboneError(name, "the toy backbone takes only weights (a .safetensors file)")
    try:
        return load_default(weights) if weights else load_default()
    except (OSError, ValueError) as e:
        raise BackboneError("weights" if weights else "the shipped toy weights", " ".join(str(e).split())[:300]) from None
