"""Training the toy model: the v-prediction loss, one optimiser step, EMA, and batches.

The loss is the mean squared error of the predicted velocity ``v = α_t·ε − σ_t·x_0`` on the
training table of :func:`syncos_jax.schedules.cogvideox_2b` (zero terminal SNR), with times drawn
uniformly from ``{0, …, T − 1}``, except that a fraction ``high_noise_fraction`` of the clips draws
its time from ``{high_noise_min, …, T − 1}``: the noise levels where the layout — where the object
is in each frame, hence its motion, and its shape — is decided from the caption alone, and where
the caption's signal in the loss is weakest against the irreducible error; and a fraction
``mid_noise_fraction`` from ``{mid_noise_min, …, mid_noise_max}``: the middle noise levels (around
SNR 1, ``t ≈ 200`` on this schedule) where an object's outline and pattern are drawn, which uniform
times on a zero-terminal-SNR table visit rarely (``α_t ≤ 0.31`` for every ``t ≥ 500``); and a fraction
``low_noise_fraction`` from ``{0, …, low_noise_max}``: the last steps of sampling, where a denoiser
should copy the object's colour and pattern from its input. A fraction of the
batch (``per_frame_fraction``) gets per-frame
times — a random ramp across the clip, as a FIFO-Diffusion queue presents — so the per-frame
adaLN path is trained; a fraction of captions (``uncond_fraction``) is replaced by the empty text
for classifier-free guidance. A fraction ``long_fraction`` of the clips are windows cut from long
multi-event tracks (:func:`~syncos_jax.backbones.toy.world.random_long_window`): the object enters
the clip wherever an earlier event left it, with the identity it had before.

:class:`TrainState` holds the params, the EMA params, the optimiser state and the step; it is
what :mod:`experiments.train_toy <experiments>` checkpoints with orbax.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from syncos_jax.backbones.toy import world
from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT
from syncos_jax.backbones.toy.tokenizer import Tokenizer
from syncos_jax.schedules import Schedule, append_dims, cogvideox_2b

Array = jax.Array

__all__ = ["Batch", "TrainConfig", "TrainState", "ema_decay", "init_train_state", "make_batch", "make_optimizer",
           "object_loss_weights", "train_step", "v_loss", "weighted_mean"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (static).

    The times a clip trains at: ``high_noise_fraction`` of the clips from ``{high_noise_min, …, 999}``,
    ``mid_noise_fraction`` from ``{mid_noise_min, …, mid_noise_max}``, ``low_noise_fraction`` from
    ``{0, …, low_noise_max}``, the rest uniform (:func:`sample_times`). ``image_batch_size``
    single frames join each step's clips.
    ``object_weight`` (≥ 0) weighs the object's pixels ``1 + object_weight`` times the others in the
    loss (:func:`object_loss_weights`; 0, the default, is the plain mean); the loss a run logs is
    then the weighted one.
    """

    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    total_steps: int = 4400
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    uncond_fraction: float = 0.1
    per_frame_fraction: float = 0.2
    event_probability: float = 0.2
    high_noise_fraction: float = 0.3
    high_noise_min: int = 500
    long_fraction: float = 0.3
    image_batch_size: int = 0
    mid_noise_fraction: float = 0.0
    mid_noise_min: int = 50
    mid_noise_max: int = 450
    low_noise_fraction: float = 0.0
    low_noise_max: int = 60
    object_weight: float = 0.0

    def __post_init__(self):
        for name in ("uncond_fraction", "per_frame_fraction", "event_probability", "high_noise_fraction", "long_fraction",
                     "mid_noise_fraction", "low_noise_fraction"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ValueError(f"TrainConfig.{name} must be a number in [0, 1], got {str(v)[:40]!r}")
        for name in ("batch_size", "total_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {str(v)[:40]!r}")
        for name in ("learning_rate", "weight_decay", "grad_clip", "ema_decay", "object_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"TrainConfig.{name} must be a number >= 0, got {str(v)[:40]!r}")
        if not isinstance(self.image_batch_size, int) or isinstance(self.image_batch_size, bool) or self.image_batch_size < 0:
            raise ValueError(f"TrainConfig.image_batch_size must be an integer >= 0, got {str(self.image_batch_size)[:40]!r}")
        if self.high_noise_fraction + self.mid_noise_fraction + self.low_noise_fraction > 1.0 + 1e-9:  # (float sums)
            raise ValueError(f"TrainConfig.high_noise_fraction + mid_noise_fraction + low_noise_fraction must be <= 1, got "
                             f"{self.high_noise_fraction} + {self.mid_noise_fraction} + {self.low_noise_fraction}")
        for name in ("high_noise_min", "mid_noise_min", "mid_noise_max", "low_noise_max"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {str(v)[:40]!r}")
        if self.mid_noise_min > self.mid_noise_max:
            raise ValueError(f"TrainConfig.mid_noise_min must be <= mid_noise_max, got {self.mid_noise_min} > {self.mid_noise_max}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be an integer >= 0, got {str(self.warmup_steps)[:40]!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Batch(NamedTuple):
    """A training batch: clips ``[B, f, H, W, 3]`` in ``[−1, 1]`` and token ids ``[B, L]``; and
    single frames of other clips, ``images [Bi, 1, H, W, 3]`` with ``image_tokens [Bi, L]``
    (``Bi = image_batch_size``, possibly 0). With ``TrainConfig.object_weight > 0``, the per-pixel
    loss weights ``clip_weights [B, f, H, W, 1]`` and ``image_weights [Bi, 1, H, W, 1]``
    (:func:`object_loss_weights`); ``None`` otherwise (the plain mean)."""

    clips: np.ndarray
    tokens: np.ndarray
    images: np.ndarray
    image_tokens: np.ndarray
    clip_weights: np.ndarray | None = None
    image_weights: np.ndarray | None = None


class TrainState(NamedTuple):
    """``params`` and ``ema`` (nnx.State pytrees), ``opt_state`` and ``step`` (int32 scalar)."""

    params: Any
    ema: Any
    opt_state: Any
    step: Array


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warm-up then cosine decay to 10 %, and global-norm clipping."""
    lr = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.total_steps, cfg.warmup_steps + 1), end_value=0.1 * cfg.learning_rate
    )
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adamw(lr, b2=0.99, weight_decay=cfg.weight_decay))


def init_train_state(model_cfg: ToyConfig, train_cfg: TrainConfig, seed: int = 0) -> tuple[nnx.GraphDef, TrainState]:
    """A fresh model's ``(graphdef, TrainState)``; the EMA starts equal to the params."""
    model = ToyVideoDiT(model_cfg, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model)
    opt_state = make_optimizer(train_cfg).init(params)
    return graphdef, TrainState(params, jax.tree.map(jnp.copy, params), opt_state, jnp.zeros((), jnp.int32))


def ema_decay(step: Array, decay: float) -> Array:
    """The EMA decay at ``step``: ``min(decay, (1 + step) / (10 + step))`` (fast early tracking)."""
    step = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def sample_times(key: Array, batch: int, frames: int, num_train_timesteps: int, per_frame_fraction: float,
                 high_noise_fraction: float = 0.0, high_noise_min: int = 0, mid_noise_fraction: float = 0.0,
                 mid_noise_range: tuple[int, int] = (0, 0), low_noise_fraction: float = 0.0, low_noise_max: int = 0) -> Array:
    """Training times ``[B, f]`` int32: one time per clip — for ``high_noise_fraction`` of the clips
    uniform on ``{high_noise_min, …, T − 1}``, for ``mid_noise_fraction`` of them uniform on
    ``{lo, …, hi}`` (``mid_noise_range = (lo, hi)``), for ``low_noise_fraction`` of them uniform on
    ``{0, …, low_noise_max}``, for the rest uniform on ``{0, …, T − 1}`` — or for ``per_frame_fraction``
    of the clips a random increasing ramp across frames (as in a FIFO queue)."""
    k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
    k7 = jax.random.fold_in(key, 7)  # (not in the split: runs without a mid band keep their times)
    k8 = jax.random.fold_in(key, 8)  # (likewise for the low band)
    T = num_train_timesteps
    if not 0 <= high_noise_min < T:
        raise ValueError(f"high_noise_min must be in [0, {T}), got {high_noise_min}")
    lo_mid, hi_mid = mid_noise_range
    if mid_noise_fraction and not 0 <= lo_mid <= hi_mid < T:
        raise ValueError(f"mid_noise_range must satisfy 0 <= lo <= hi < {T}, got {tuple(mid_noise_range)}")
    if low_noise_fraction and not 0 <= low_noise_max < T:
        raise ValueError(f"low_noise_max must be in [0, {T}), got {low_noise_max}")
    if high_noise_fraction + mid_noise_fraction + low_noise_fraction > 1.0 + 1e-9:  # (float sums of fractions)
        raise ValueError(f"high_noise_fraction + mid_noise_fraction + low_noise_fraction must be <= 1, got "
                         f"{high_noise_fraction} + {mid_noise_fraction} + {low_noise_fraction}")
    uniform = jax.random.randint(k1, (batch, 1), 0, T)
    high = jax.random.randint(k5, (batch, 1), high_noise_min, T)
    mid = jax.random.randint(k7, (batch, 1), lo_mid, hi_mid + 1)
    u = jax.random.uniform(k6, (batch, 1))
    low = jax.random.randint(k8, (batch, 1), 0, low_noise_max + 1)
    rest = jnp.where(u < high_noise_fraction + mid_noise_fraction + low_noise_fraction, low, uniform)
    scalar = jnp.where(u < high_noise_fraction, high, jnp.where(u < high_noise_fraction + mid_noise_fraction, mid, rest))
    lo = jax.random.uniform(k2, (batch, 1), maxval=T)
    span = jax.random.uniform(k3, (batch, 1), maxval=T - lo)
    ramp = lo + span * jnp.linspace(0.0, 1.0, frames)[None]
    use_ramp = jax.random.uniform(k4, (batch, 1)) < per_frame_fraction
    t = jnp.where(use_ramp, jnp.floor(ramp), scalar)
    return jnp.clip(t, 0, T - 1).astype(jnp.int32)


def weighted_mean(values: Array, weights: Array | None) -> Array:
    """``Σ w·v / Σ w`` with ``weights`` broadcast against ``values`` (``[B, f, H, W, 1]`` against
    ``[B, f, H, W, C]``); the plain mean when ``weights`` is ``None``."""
    if weights is None:
        return jnp.mean(values)
    w = jnp.broadcast_to(weights, values.shape).astype(values.dtype)
    return jnp.sum(w * values) / jnp.sum(w)


def v_loss(model: ToyVideoDiT, schedule: Schedule, clips: Array, tokens: Array, key: Array, per_frame_fraction: float,
           high_noise_fraction: float = 0.0, high_noise_min: int = 0, mid_noise_fraction: float = 0.0,
           mid_noise_range: tuple[int, int] = (0, 0), low_noise_fraction: float = 0.0, low_noise_max: int = 0,
           weights: Array | None = None) -> Array:
    """Mean squared error of the predicted velocity; ``clips: [B, f, H, W, C]``, ``tokens: [B, L]``.
    Times as :func:`sample_times` draws them. ``weights`` (``[B, f, H, W, 1]``, optional) weigh the
    pixels' squared errors (:func:`weighted_mean`)."""
    B, f = clips.shape[:2]
    kt, ke = jax.random.split(key)
    t = sample_times(kt, B, f, schedule.num_train_timesteps, per_frame_fraction, high_noise_fraction, high_noise_min,
                     mid_noise_fraction, mid_noise_range, low_noise_fraction, low_noise_max)
    alpha = append_dims(schedule.train_alphas[t], clips.ndim)
    sigma = append_dims(schedule.train_sigmas[t], clips.ndim)
    eps = jax.random.normal(ke, clips.shape, clips.dtype)
    x_t = alpha * clips + sigma * eps
    v = alpha * eps - sigma * clips
    return weighted_mean((model(x_t, t, tokens) - v) ** 2, weights)


@functools.partial(jax.jit, static_argnames=("graphdef", "train_cfg"), donate_argnames=("state",))
def train_step(graphdef, train_cfg: TrainConfig, state: TrainState, clips: Array, tokens: Array, key: Array,
               images: Array | None = None, image_tokens: Array | None = None, clip_weights: Array | None = None,
               image_weights: Array | None = None):
    """One AdamW step and EMA update. Returns ``(new_state, loss)``.

    With ``images`` (``[Bi, 1, H, W, C]``, single frames, and their ``image_tokens``) the loss is the
    mean of the clips' loss and the images' (joint image-video training: an image costs an eighth
    of a clip and shows an independent object, so appearance is learnt from more of them).
    ``clip_weights`` / ``image_weights`` are the per-pixel loss weights of :class:`Batch`."""
    schedule = cogvideox_2b()

    def loss_fn(params):
        model = nnx.merge(graphdef, params)
        times = (train_cfg.high_noise_fraction, train_cfg.high_noise_min, train_cfg.mid_noise_fraction,
                 (train_cfg.mid_noise_min, train_cfg.mid_noise_max), train_cfg.low_noise_fraction, train_cfg.low_noise_max)
        loss = v_loss(model, schedule, clips, tokens, key, train_cfg.per_frame_fraction, *times, weights=clip_weights)
        if images is not None and images.shape[0]:
            loss = 0.5 * (loss + v_loss(model, schedule, images, image_tokens, jax.random.fold_in(key, 1), 0.0, *times,
                                        weights=image_weights))
        return loss

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = make_optimizer(train_cfg).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    d = ema_decay(state.step, train_cfg.ema_decay)
    ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema, params)
    return TrainState(params, ema, opt_state, state.step + 1), loss


def object_loss_weights(tracks, object_weight: float, size: int) -> np.ndarray:
    """Per-pixel loss weights ``[B, F, size, size, 1]`` float32: ``1 + object_weight`` on the
    object's pixels (:func:`world.object_masks`), 1 elsewhere. The object — and in it the
    unprompted shade and pattern — covers about 4–28 % of a frame, so the plain mean gives it little of
    the gradient; this gives it more."""
    masks = np.stack([world.object_masks(t, size) for t in tracks])
    return (1.0 + object_weight * masks[..., None]).astype(np.float32)


def make_batch(seed: int, train_cfg: TrainConfig, model_cfg: ToyConfig, tokenizer: Tokenizer) -> Batch:
    """A deterministic batch for ``seed``: rendered clips and tokens, some captions dropped; with
    ``train_cfg.object_weight > 0`` also the per-pixel loss weights (:func:`object_loss_weights`)."""
    texts, clips, tracks = world.sample_batch(seed, train_cfg.batch_size, model_cfg.frames, train_cfg.event_probability,
                                         train_cfg.long_fraction)
    rng = np.random.default_rng((seed, 1))
    drop = rng.uniform(size=len(texts)) < train_cfg.uncond_fraction
    texts = ["" if d else t for t, d in zip(texts, drop)]
    tokens = tokenizer(texts)
    n = train_cfg.image_batch_size
    images, image_tokens = np.zeros((0, 1) + clips.shape[2:], clips.dtype), np.zeros((0, tokens.shape[1]), tokens.dtype)
    if n:  # one frame each of n fresh clips without a background change (a single frame cannot show one)
        img_texts, images, img_tracks = world.sample_batch(seed * 7919 + 13, n, 1, 0.0, 0.0)
        img_drop = np.random.default_rng((seed, 2)).uniform(size=n) < train_cfg.uncond_fraction
        image_tokens = tokenizer(["" if d else t for t, d in zip(img_texts, img_drop)])
    if not train_cfg.object_weight:
        return Batch(clips, tokens, images, image_tokens)
    size = clips.shape[2]
    image_weights = object_loss_weights(img_tracks, train_cfg.object_weight, size) if n else None
    return Batch(clips, tokens, images, image_tokens, object_loss_weights(tracks, train_cfg.object_weight, size),
                 image_weights)
