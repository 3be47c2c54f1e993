"""The Denoiser protocol every backbone satisfies, and its split (static + params) form.

A denoiser maps a batch of noisy chunks to the backbone's raw output::

    out = denoiser(x, t, cond)
    x:    [B, f, H, W, C]
    t:    [B] (one time per chunk) or [B, f] (per-frame times, e.g. FIFO-Diffusion)
    cond: a pytree whose leaves have leading axis B (text embeddings, prompt ids, ...)
    out:  [B, f, H, W, C], interpreted through ``prediction_type``

Samplers receive a denoiser in **split form** — a hashable, static :class:`DenoiserDef`
(``apply(params, x, t, cond)`` plus the metadata) and a params pytree — so that ``jax.jit``
traces the backbone once and takes its weights as arguments, never as baked-in constants.
A flax.nnx module becomes a denoiser through :class:`NnxDenoiser`.

A :class:`Backbone` bundles what the command line needs around a denoiser — its schedule, text
encoder, decoder and, optionally, a probe that reads each event of a decoded video — so that the
command line never names a backbone (:func:`syncos_jax.backbones.open_backbone` opens one by name).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import nnx

from syncos_jax.schedules import PREDICTION_TYPES

Array = jax.Array

__all__ = ["Backbone", "BackboneError", "Denoiser", "DenoiserDef", "NnxDenoiser", "check_denoiser_inputs", "check_ids",
           "split_denoiser"]


@runtime_checkable
class Denoiser(Protocol):
    """What samplers need from a backbone.

    Attributes:
      prediction_type: ``epsilon`` | ``v_prediction`` | ``sample`` | ``flow``.
      frames_per_chunk: the chunk length ``f`` the backbone was trained on, or ``None`` if it
        accepts any number of frames.
      per_frame_timesteps: whether ``t`` may be ``[B, f]``.
    """

    prediction_type: str
    frames_per_chunk: Optional[int]
    per_frame_timesteps: bool

    def __call__(self, x: Array, t: Array, cond: Any) -> Array:
        """Returns the raw output ``[B, f, H, W, C]`` for noisy chunks ``x`` at times ``t``."""
        ...

    def split(self) -> tuple["DenoiserDef", Any]:
        """Returns ``(static definition, params pytree)``."""
        ...


@runtime_checkable
class Backbone(Protocol):
    """What the command line needs from a backbone (the toy model, a converted CogVideoX, ...).

    Attributes:
      name: the backbone's name (recorded, never branched on).
      denoiser: its :class:`Denoiser` (``denoiser.split() -> (DenoiserDef, params)``).
      frame_shape: ``(H, W, C)`` of one latent frame.
      chunk_frames: ``f``, the frames of one chunk (what the model was trained on).
      default_guidance: the classifier-free guidance scale to use when none is given.
      weights: the weights file or folder it was loaded from (``None`` for fresh weights).
      info: the weights' metadata (e.g. ``{"step": ...}``).
      latent_space: ``True`` when latents are not pixels (the command line then also saves them).

    An optional ``probe(frames, segments, texts) -> list[dict]`` reads each event of a decoded
    video ``frames: [F, H, W, 3]`` (``segments``: ``(start, end)`` per event, ``texts``: its prompt)
    and returns one JSON-ready dict per event.
    """

    name: str
    frame_shape: tuple
    chunk_frames: int
    default_guidance: float
    weights: Optional[str]
    info: dict
    latent_space: bool

    @property
    def denoiser(self) -> Denoiser:
        """The backbone's denoiser."""
        ...

    def schedule(self, num_steps: int) -> Any:
        """The sampling :class:`~syncos_jax.schedules.Schedule` of ``num_steps`` the model was trained with."""
        ...

    def encode(self, texts) -> Any:
        """The conditioning pytree of ``texts`` (leading axis ``len(texts)``); ``ValueError`` for a text it cannot encode."""
        ...

    def check_prompt(self, prompt) -> None:
        """Raises :class:`~syncos_jax.prompts.PromptError` naming the first field of the
        :class:`~syncos_jax.prompts.StructuredPrompt` the backbone cannot take."""
        ...

    def decode(self, latents) -> Any:
        """Frames ``[F', H', W', 3]`` in ``[−1, 1]`` from latents ``[F, H, W, C]``, or ``None`` if it cannot decode."""
        ...


class BackboneError(ValueError):
    """A backbone that cannot be opened: ``subject`` is the argument at fault (``weights``,
    ``text_embeddings``, ``vae``, ``latent_size``) or what was read (``the shipped toy weights``)."""

    def __init__(self, subject: str, problem: str):
        super().__init__(f"{subject}: {problem}")
        self.subject, self.problem = subject, problem


def _apply_graphdef(graphdef, params, x, t, cond):
    return nnx.merge(graphdef, params)(x, t, cond)


@dataclasses.dataclass(frozen=True)
class DenoiserDef:
    """The static half of a split denoiser: hashable, usable as a ``jax.jit`` static argument.

    Attributes:
      fn: ``fn(params, x, t, cond) -> out`` when ``graphdef`` is ``None``; otherwise unused.
      graphdef: an ``nnx.GraphDef``; then ``apply`` merges it with ``params`` and calls the module.
      prediction_type, frames_per_chunk, per_frame_timesteps: as in :class:`Denoiser`.
      check_cond: optional ``check_cond(cond, name)`` that raises ``ValueError`` for a
        conditioning pytree the backbone cannot take (ids out of range, ...). Samplers call it
        on concrete arrays before tracing (:func:`syncos_jax.samplers.base.check_inputs`); it
        takes no part in equality or hashing, so it never causes a recompilation.
    """

    prediction_type: str
    frames_per_chunk: Optional[int] = None
    per_frame_timesteps: bool = False
    fn: Optional[Callable[..., Array]] = None
    graphdef: Any = None
    check_cond: Optional[Callable[[Any, str], None]] = dataclasses.field(default=None, compare=False, hash=False)

    def __post_init__(self):
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type={self.prediction_type!r} is not supported; expected one of "
                f"{', '.join(map(repr, PREDICTION_TYPES))}."
            )
        if (self.fn is None) == (self.graphdef is None):
            raise ValueError("DenoiserDef needs exactly one of fn= (a pure function) or graphdef= (an nnx GraphDef).")

    def apply(self, params: Any, x: Array, t: Array, cond: Any) -> Array:
        """Returns the backbone output for ``x: [B, f, H, W, C]`` at ``t: [B] | [B, f]``."""
        check_denoiser_inputs(self, x, t)
        if self.graphdef is not None:
            return _apply_graphdef(self.graphdef, params, x, t, cond)
        return self.fn(params, x, t, cond)


def check_denoiser_inputs(denoiser, x: Array, t: Array) -> None:
    """Raises a ``ValueError`` if ``x`` / ``t`` do not fit ``denoiser`` (shapes are static, so this runs at trace time)."""
    x_shape, t_shape = tuple(jnp.shape(x)), tuple(jnp.shape(t))
    if len(x_shape) != 5:
        raise ValueError(f"x must be [B, f, H, W, C], got shape {x_shape}.")
    B, f = x_shape[:2]
    if denoiser.frames_per_chunk is not None and f != denoiser.frames_per_chunk:
        raise ValueError(f"this backbone takes chunks of {denoiser.frames_per_chunk} frames, got x with f={f}.")
    if t_shape == (B, f):
        if not denoiser.per_frame_timesteps:
            raise ValueError(
                f"this backbone does not accept per-frame timesteps (t of shape {t_shape}); "
                f"it needs one timestep per chunk, t: [B={B}]. Samplers that need per-frame timesteps "
                f"(FIFO-Diffusion) cannot use it."
            )
    elif t_shape != (B,):
        raise ValueError(f"t must be [B={B}] or, per frame, [B={B}, f={f}]; got shape {t_shape}.")


def check_ids(ids: Any, name: str, *, low: int, high: int, what: str) -> None:
    """Raises ``ValueError`` unless the concrete integer array ``ids`` lies in ``[low, high)``.

    For backbones whose conditioning is ids (prompt ids, token ids): JAX's indexing would clamp
    an id out of range silently, so a ``check_cond`` built on this reports it instead.
    """
    import numpy as np

    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer {what}, got dtype {a.dtype}.")
    if a.size and (a.min() < low or a.max() >= high):
        bad = a[(a < low) | (a >= high)].ravel()[0]
        raise ValueError(f"{name} holds {what} {int(bad)}, outside [{low}, {high - 1}].")


def split_denoiser(denoiser: Any) -> tuple[DenoiserDef, Any]:
    """Returns ``(DenoiserDef, params)`` for a denoiser, or passes an already split pair through."""
    if isinstance(denoiser, tuple) and len(denoiser) == 2 and isinstance(denoiser[0], DenoiserDef):
        return denoiser
    if hasattr(denoiser, "split"):
        return denoiser.split()
    raise TypeError(
        f"expected a Denoiser (with .split()) or a (DenoiserDef, params) pair, got {type(denoiser).__name__}."
    )


class NnxDenoiser:
    """Adapts a flax.nnx module ``module(x, t, cond) -> out`` to the :class:`Denoiser` protocol.

    Args:
      module: the nnx module; called as ``module(x, t, cond)``.
      prediction_type, frames_per_chunk, per_frame_timesteps: the metadata samplers need.
      frame_shape: optional ``(H, W, C)`` of one frame, so samplers need not be told it.
      check_cond: optional range check of concrete conditioning (see :class:`DenoiserDef`).
    """

    def __init__(
        self,
        module: nnx.Module,
        *,
        prediction_type: str,
        frames_per_chunk: Optional[int] = None,
        per_frame_timesteps: bool = False,
        frame_shape: Optional[tuple[int, int, int]] = None,
        check_cond: Optional[Callable[[Any, str], None]] = None,
    ):
        self.module = module
        self.frame_shape = None if frame_shape is None else tuple(int(s) for s in frame_shape)
        self.prediction_type = prediction_type
        self.frames_per_chunk = frames_per_chunk
        self.per_frame_timesteps = per_frame_timesteps
        graphdef, _ = nnx.split(module)
        self._def = DenoiserDef(
            prediction_type=prediction_type,
            frames_per_chunk=frames_per_chunk,
            per_frame_timesteps=per_frame_timesteps,
            graphdef=graphdef,
            check_cond=check_cond,
        )

    def split(self) -> tuple[DenoiserDef, Any]:
        """Returns ``(DenoiserDef, nnx.State)``; the state is the module's current parameters."""
        return self._def, nnx.state(self.module)

    def __call__(self, x: Array, t: Array, cond: Any) -> Array:
        check_denoiser_inputs(self, x, t)
        return self.module(x, t, cond)
