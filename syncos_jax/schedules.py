"""Noise schedules, sampling grids, prediction-type conversions and the DDIM / Euler step.

Every schedule is written as ``x_t = α_t·x_0 + σ_t·ε`` with ``ε ~ N(0, I)`` (ALGORITHM.md §1):

* VP / DDPM with ``T`` discrete training steps: ``α_t = sqrt(ᾱ_t)``, ``σ_t = sqrt(1 − ᾱ_t)``.
* Rectified flow: ``α_t = 1 − σ``, ``σ_t = σ`` with ``σ = t / T`` in model time ``t ∈ [0, T]``.

A :class:`Schedule` is a pytree: the sampling grid (the model times the backbone sees, descending),
``α`` and ``σ`` at every grid point plus the final target, and for VP the training table ``ᾱ``.
The named constructors (:func:`cogvideox_2b`, :func:`stable_diffusion`, :func:`flow_matching`)
reproduce the diffusers schedulers bit for bit in their timesteps (``DDIMScheduler``,
``CogVideoXDDIMScheduler``, ``FlowMatchEulerDiscreteScheduler``).

The conversion between a backbone's raw output and ``(x̂_0, ε̂)`` lives here and nowhere else:
:func:`to_x0_eps` and its inverse :func:`from_x0_eps`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow")
BETA_SCHEDULES = ("linear", "scaled_linear")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
KINDS = ("vp", "flow")

__all__ = [
    "PREDICTION_TYPES",
    "Schedule",
    "alpha_sigma",
    "append_dims",
    "cogvideox_2b",
    "ddim_step",
    "ddim_timesteps",
    "ddpm",
    "ddpm_alphas_cumprod",
    "eps_from_x0",
    "flow",
    "flow_matching",
    "from_x0_eps",
    "modelscope",
    "stable_diffusion",
    "to_x0_eps",
]


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {', '.join(map(repr, choices))}.")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A sampling schedule: grid times and the ``(α, σ)`` of every grid point.

    Attributes:
      timesteps: ``[S]`` model time of each grid point, descending (``int32`` for VP, ``float32``
        for flow). This is what the backbone receives.
      alphas: ``[S + 1]`` ``α`` at each grid point, then at the final target of the last step.
      sigmas: ``[S + 1]`` ``σ`` likewise.
      alphas_cumprod: ``[T]`` the VP training table ``ᾱ_t`` (``None`` for flow).
      train_alphas, train_sigmas: ``[T]`` ``sqrt(ᾱ_t)`` and ``sqrt(1 − ᾱ_t)`` (computed in float64,
        stored in float32; ``None`` for flow). The grid's ``alphas``/``sigmas`` are entries of
        these tables, so :func:`alpha_sigma` at a grid time returns exactly the grid's values.
      kind: ``"vp"`` or ``"flow"`` (static).
      prediction_type: what the backbone predicts, one of :data:`PREDICTION_TYPES` (static).
      num_train_timesteps: ``T`` (static).

    Step ``k`` of a sampler goes from ``timesteps[k]`` (``alphas[k]``, ``sigmas[k]``) to
    ``alphas[k + 1]``, ``sigmas[k + 1]``. For VP grids the final target is ``ᾱ = 1`` with
    ``set_alpha_to_one`` and ``ᾱ_0`` otherwise; for flow it is ``σ = 0``.
    """

    timesteps: Array
    alphas: Array
    sigmas: Array
    alphas_cumprod: Optional[Array]
    train_alphas: Optional[Array] = None
    train_sigmas: Optional[Array] = None
    kind: str = dataclasses.field(default="vp", metadata=dict(static=True))
    prediction_type: str = dataclasses.field(default="epsilon", metadata=dict(static=True))
    num_train_timesteps: int = dataclasses.field(default=1000, metadata=dict(static=True))

    @property
    def num_steps(self) -> int:
        """The number of sampling steps ``S``."""
        return int(self.timesteps.shape[0])

    def alpha_sigma(self, t) -> tuple[Array, Array]:
        """``(α_t, σ_t)`` at model time(s) ``t`` of any shape; see :func:`alpha_sigma`."""
        return alpha_sigma(self, t)

    def to_x0_eps(self, out: Array, x_t: Array, t) -> tuple[Array, Array]:
        """``(x̂_0, ε̂)`` from a backbone output at model time ``t``; see :func:`to_x0_eps`."""
        alpha, sigma = alpha_sigma(self, t)
        return to_x0_eps(out, x_t, alpha, sigma, self.prediction_type)

    def from_x0_eps(self, x0: Array, eps: Array, t) -> Array:
        """The backbone output that ``(x̂_0, ε̂)`` corresponds to; see :func:`from_x0_eps`."""
        alpha, sigma = alpha_sigma(self, t)
        return from_x0_eps(x0, eps, alpha, sigma, self.prediction_type)


jax.tree_util.register_dataclass(
    Schedule,
    data_fields=["timesteps", "alphas", "sigmas", "alphas_cumprod", "train_alphas", "train_sigmas"],
    meta_fields=["kind", "prediction_type", "num_train_timesteps"],
)


# ---------------------------------------------------------------------------------------------
# VP (DDPM) tables and DDIM grids
# ---------------------------------------------------------------------------------------------


def ddpm_alphas_cumprod(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    beta_schedule: str = "scaled_linear",
    *,
    snr_shift_scale: Optional[float] = None,
    rescale_betas_zero_snr: bool = False,
) -> np.ndarray:
    """Returns the VP training table ``ᾱ_t``, ``[T]`` float64, computed as diffusers does.

    Betas are ``linspace(beta_start, beta_end, T)`` (``linear``) or
    ``linspace(sqrt(beta_start), sqrt(beta_end), T)²`` (``scaled_linear``), in float64.
    ``snr_shift_scale = s`` (CogVideoX) maps ``ᾱ ← ᾱ / (s + (1 − s)·ᾱ)``, applied before
    ``rescale_betas_zero_snr`` (Lin et al. 2023, Algorithm 1), which shifts and rescales
    ``sqrt(ᾱ)`` so that the terminal SNR is exactly zero.
    """
    if num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps={num_train_timesteps} must be at least 1.")
    _check_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
    if beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    else:
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    if snr_shift_scale is not None:
        s = float(snr_shift_scale)
        alphas_cumprod = alphas_cumprod / (s + (1.0 - s) * alphas_cumprod)
    if rescale_betas_zero_snr:
        root = np.sqrt(alphas_cumprod)
        root_0, root_T = root[0], root[-1]
        root = (root - root_T) * (root_0 / (root_0 - root_T))
        alphas_cumprod = root**2
    return alphas_cumprod


def ddim_timesteps(
    num_inference_steps: int,
    num_train_timesteps: int = 1000,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
) -> np.ndarray:
    """Returns the DDIM sampling grid, ``[S]`` int64, descending, exactly as diffusers builds it.

    * ``leading``: ``arange(S)·(T // S) + steps_offset``, reversed.
    * ``trailing``: ``round(arange(T, 0, −T/S)) − 1``.
    * ``linspace``: ``round(linspace(0, T − 1, S))``, reversed.
    """
    _check_choice("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps={num_inference_steps} must be between 1 and num_train_timesteps="
            f"{num_train_timesteps} (a sampler cannot take more steps than the model was trained with)."
        )
    if timestep_spacing == "linspace":
        ts = np.linspace(0, num_train_timesteps - 1, num_inference_steps).round()[::-1].astype(np.int64)
    elif timestep_spacing == "leading":
        ratio = num_train_timesteps // num_inference_steps
        ts = (np.arange(0, num_inference_steps) * ratio).round()[::-1].astype(np.int64) + steps_offset
    else:
        ratio = num_train_timesteps / num_inference_steps
        ts = np.round(np.arange(num_train_timesteps, 0, -ratio)).astype(np.int64) - 1
    if ts.min() < 0 or ts.max() >= num_train_timesteps:
        raise ValueError(
            f"steps_offset={steps_offset} moves the {timestep_spacing!r} grid outside [0, {num_train_timesteps - 1}]."
        )
    return np.ascontiguousarray(ts)


def ddpm(
    num_inference_steps: int = 50,
    *,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
    set_alpha_to_one: bool = True,
    prediction_type: str = "epsilon",
    **table,
) -> Schedule:
    """Returns a VP schedule with a DDIM grid (arguments as in diffusers' DDIM schedulers).

    ``table``: the training table's arguments, those of :func:`ddpm_alphas_cumprod`
    (``num_train_timesteps=1000``, ``beta_start=0.00085``, ``beta_end=0.012``,
    ``beta_schedule="scaled_linear"``, ``snr_shift_scale=None``, ``rescale_betas_zero_snr=False``).

    The target of each step is the next grid time; the last step goes to ``ᾱ = 1`` when
    ``set_alpha_to_one`` and to ``ᾱ_0`` otherwise. (diffusers steps to ``t − T // S``, which is
    the next grid time for the ``leading`` and ``trailing`` grids whenever ``S`` divides ``T``.)
    """
    _check_choice("prediction_type", prediction_type, ("epsilon", "v_prediction", "sample"))
    acp = ddpm_alphas_cumprod(**table)
    num_train_timesteps = acp.shape[0]
    ts = ddim_timesteps(num_inference_steps, num_train_timesteps, timestep_spacing, steps_offset)
    train_alphas = np.sqrt(acp).astype(np.float32)
    train_sigmas = np.sqrt(1.0 - acp).astype(np.float32)
    final_alpha, final_sigma = (1.0, 0.0) if set_alpha_to_one else (train_alphas[0], train_sigmas[0])
    return Schedule(
        timesteps=jnp.asarray(ts, dtype=jnp.int32),
        alphas=jnp.asarray(np.append(train_alphas[ts], np.float32(final_alpha)), dtype=jnp.float32),
        sigmas=jnp.asarray(np.append(train_sigmas[ts], np.float32(final_sigma)), dtype=jnp.float32),
        alphas_cumprod=jnp.asarray(acp, dtype=jnp.float32),
        train_alphas=jnp.asarray(train_alphas),
        train_sigmas=jnp.asarray(train_sigmas),
        kind="vp",
        prediction_type=prediction_type,
        num_train_timesteps=num_train_timesteps,
    )


def cogvideox_2b(num_inference_steps: int = 50) -> Schedule:
    """Returns CogVideoX-2B's schedule (``CogVideoXDDIMScheduler`` with the released config).

    scaled_linear betas 0.00085–0.012, ``snr_shift_scale = 3``, zero terminal SNR,
    v-prediction, ``trailing`` spacing, ``set_alpha_to_one``.
    """
    return ddpm(
        num_inference_steps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        snr_shift_scale=3.0,
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        steps_offset=0,
        set_alpha_to_one=True,
        prediction_type="v_prediction",
    )


def stable_diffusion(num_inference_steps: int = 50) -> Schedule:
    """Returns the Stable-Diffusion / ModelScope DDIM schedule.

    scaled_linear betas 0.00085–0.012, ε-prediction, ``leading`` spacing with
    ``steps_offset = 1``, no ``set_alpha_to_one`` (the last step targets ``ᾱ_0``).
    """
    return ddpm(
        num_inference_steps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
        set_alpha_to_one=False,
        prediction_type="epsilon",
    )


modelscope = stable_diffusion
cogvideox = cogvideox_2b


# ---------------------------------------------------------------------------------------------
# Rectified flow
# ---------------------------------------------------------------------------------------------


def _shift_sigma(sigma, shift: float):
    return shift * sigma / (1 + (shift - 1) * sigma)


def flow(num_inference_steps: int = 50, *, shift: float = 1.0, num_train_timesteps: int = 1000) -> Schedule:
    """Returns a rectified-flow schedule, as diffusers' ``FlowMatchEulerDiscreteScheduler``.

    ``α = 1 − σ``, model time ``t = σ·T``; the grid is ``σ = shift(linspace(σ_max, σ_min, S))``
    with ``shift(σ) = shift·σ / (1 + (shift − 1)·σ)``, where ``σ_max``, ``σ_min`` are the shifted
    ends of the training grid ``1 … 1/T`` (so, as in diffusers, the lower end is shifted twice).
    The final target is ``σ = 0``. The prediction type is ``flow`` (velocity ``u = ε − x_0``).
    """
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps={num_inference_steps} must be between 1 and num_train_timesteps="
            f"{num_train_timesteps}."
        )
    if shift <= 0:
        raise ValueError(f"shift={shift} must be positive.")
    T = num_train_timesteps
    train_t = np.linspace(1, T, T, dtype=np.float32)[::-1]
    train_sigmas = _shift_sigma(train_t / np.float32(T), np.float32(shift)).astype(np.float32)
    sigma_max, sigma_min = float(train_sigmas[0]), float(train_sigmas[-1])
    grid_t = np.linspace(sigma_max * T, sigma_min * T, num_inference_steps)
    sigmas = _shift_sigma(grid_t / T, shift).astype(np.float32)
    timesteps = sigmas * np.float32(T)
    sigmas = np.concatenate([sigmas, np.zeros(1, np.float32)])
    return Schedule(
        timesteps=jnp.asarray(timesteps, dtype=jnp.float32),
        alphas=jnp.asarray(1.0 - sigmas, dtype=jnp.float32),
        sigmas=jnp.asarray(sigmas, dtype=jnp.float32),
        alphas_cumprod=None,
        kind="flow",
        prediction_type="flow",
        num_train_timesteps=T,
    )


def flow_matching(num_inference_steps: int = 50, *, shift: float = 3.0) -> Schedule:
    """Returns the flow-matching schedule with ``shift = 3`` (SD3-style); see :func:`flow`."""
    return flow(num_inference_steps, shift=shift)


# ---------------------------------------------------------------------------------------------
# Lookups, conversions and the step
# ---------------------------------------------------------------------------------------------


def alpha_sigma(schedule: Schedule, t) -> tuple[Array, Array]:
    """Returns ``(α_t, σ_t)`` at model times ``t`` (any shape, traced or not).

    VP: the training table at the integer time ``t`` (clipped to ``[0, T − 1]``).
    Flow: ``σ = t / T``, ``α = 1 − σ`` (``t`` is already shifted: it is what the backbone sees).
    """
    t = jnp.asarray(t)
    if schedule.kind == "vp":
        idx = jnp.clip(jnp.round(t).astype(jnp.int32), 0, schedule.num_train_timesteps - 1)
        return schedule.train_alphas[idx], schedule.train_sigmas[idx]
    sigma = t.astype(jnp.float32) / schedule.num_train_timesteps
    return 1.0 - sigma, sigma


def append_dims(a: Array, ndim: int) -> Array:
    """Returns ``a`` with trailing singleton axes appended up to ``ndim`` axes.

    Broadcasts a per-sample ``[B]`` or per-frame ``[B, f]`` coefficient against ``[B, f, H, W, C]``.
    """
    a = jnp.asarray(a)
    if a.ndim > ndim:
        raise ValueError(f"cannot broadcast a coefficient of shape {a.shape} against an array with {ndim} axes.")
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def to_x0_eps(out: Array, x_t: Array, alpha, sigma, prediction_type: str) -> tuple[Array, Array]:
    """Returns ``(x̂_0, ε̂)`` from a backbone output (ALGORITHM.md §1, table of conversions).

    Args:
      out: the backbone output, shape of ``x_t``.
      x_t: the noisy input ``[B, ...]``.
      alpha, sigma: ``α_t``, ``σ_t``: scalars, ``[B]`` or ``[B, f]`` (broadcast from the left).
      prediction_type: ``epsilon`` | ``v_prediction`` | ``sample`` | ``flow``.
    """
    _check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    a = append_dims(alpha, x_t.ndim)
    s = append_dims(sigma, x_t.ndim)
    if prediction_type == "epsilon":
        return (x_t - s * out) / a, out
    if prediction_type == "v_prediction":
        return a * x_t - s * out, s * x_t + a * out
    if prediction_type == "sample":
        return out, eps_from_x0(x_t, out, a, s)
    return x_t - s * out, x_t + a * out


def from_x0_eps(x0: Array, eps: Array, alpha, sigma, prediction_type: str) -> Array:
    """Returns the backbone output that corresponds to ``(x̂_0, ε̂)`` (the inverse of :func:`to_x0_eps`).

    ``epsilon → ε``, ``v_prediction → α·ε − σ·x_0``, ``sample → x_0``, ``flow → ε − x_0``.
    """
    _check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    if prediction_type == "flow":
        return eps - x0
    a = append_dims(alpha, x0.ndim)
    s = append_dims(sigma, x0.ndim)
    return a * eps - s * x0


def eps_from_x0(x_t: Array, x0: Array, alpha, sigma) -> Array:
    """Returns the ``ε̂ = (x_t − α·x̂_0) / σ`` implied by ``x_t`` and an estimate ``x̂_0`` (``σ > 0``).

    Coefficients are scalars, ``[B]`` or ``[B, f]``, broadcast from the left against ``x_t``.
    """
    return (x_t - append_dims(alpha, jnp.ndim(x_t)) * x0) / append_dims(sigma, jnp.ndim(x_t))


def ddim_step(
    x0: Array,
    eps: Array,
    alpha_s,
    sigma_s,
    *,
    eta: float = 0.0,
    alpha_t=None,
    sigma_t=None,
    key: Optional[Array] = None,
    noise: Optional[Array] = None,
) -> Array:
    """Returns ``x_s``, the DDIM (VP) or Euler (flow) step to the target ``(α_s, σ_s)``.

    Deterministic (``eta = 0``): ``x_s = α_s·x̂_0 + σ_s·ε̂`` — for flow this is exactly the Euler
    step ``x_s = x_t + (σ_s − σ_t)·û``.

    ``eta > 0`` (VP only) is DDIM's stochastic step: with ``ᾱ = α²``,
    ``σ_η² = η²·(1 − ᾱ_s)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_s)`` and
    ``x_s = α_s·x̂_0 + sqrt(1 − ᾱ_s − σ_η²)·ε̂ + σ_η·z``, ``z ~ N(0, I)`` drawn from ``key``.
    It needs ``alpha_t``, ``sigma_t`` and either ``key`` or an explicit ``noise`` array ``z``
    (for step-by-step comparisons with another implementation).

    Coefficients are scalars, ``[B]`` or ``[B, f]`` (per-frame timesteps), broadcast from the left.
    """
    a_s = append_dims(alpha_s, x0.ndim)
    if isinstance(eta, (int, float)) and eta == 0:
        return a_s * x0 + append_dims(sigma_s, x0.ndim) * eps
    if (key is None and noise is None) or alpha_t is None or sigma_t is None:
        raise ValueError(f"ddim_step with eta={eta} needs alpha_t, sigma_t and a PRNG key (or noise) for its noise.")
    acp_s = a_s**2
    acp_t = append_dims(alpha_t, x0.ndim) ** 2
    var = (1.0 - acp_s) / append_dims(sigma_t, x0.ndim) ** 2 * (1.0 - acp_t / acp_s)
    std = eta * jnp.sqrt(jnp.maximum(var, 0.0))
    direction = jnp.sqrt(jnp.maximum(1.0 - acp_s - std**2, 0.0)) * eps
    z = jax.random.normal(key, x0.shape, x0.dtype) if noise is None else noise
    return a_s * x0 + direction + std * z
