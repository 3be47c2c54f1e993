"""An analytic Gaussian video backbone: the exact denoiser of a Gaussian-process video prior.

The prior over a video ``x_0: [F, H, W, C]`` conditioned on prompt ``p`` is Gaussian:

* mean: a per-prompt image ``m_p: [H, W, C]`` repeated over frames (so prompts matter);
* covariance: ``K ⊗ I`` — a stationary temporal covariance ``K_ij = k(|i − j|) + λ`` across frames,
  identity across pixels. ``k(lag) = v·ρ^lag`` (``exponential``, the default, an AR(1) process)
  or ``v·exp(−lag²/(2ℓ²))`` (``squared_exponential``) is the short-range part; ``λ ≥ 0``
  (``identity_variance``, default 0) is a shared identity: every frame of a video carries one latent
  vector ``u ~ N(0, λ·I)`` (per pixel), so ``x_0[i] = m_p + u + s[i]`` with ``s`` the short-range
  process. The covariance at any distance never falls below ``λ`` — an exact answer for how much
  long-range coherence a sampler should keep across chunks.
* optionally a **discrete identity** (``identities``: ``K`` atoms ``u_1 … u_K``, each ``[H, W, C]``):
  every video carries one atom ``u_k``, ``k`` uniform and never named by the prompt, in every frame:
  ``x_0[i] = m_p + u_k + s[i]``. The prior is then a mixture of ``K`` Gaussians — the posterior is
  nonlinear in ``x_t`` (it must *decide* ``k``), the unprompted attribute that drifts or stays in a
  long video (see ``experiments/discrete_identity.py``).

For a chunk ``x_t = A·x_0 + Σ^{1/2}·ε`` with per-frame ``A = diag(α)``, ``Σ = diag(σ²)`` the
posterior is exact: with ``r = (A K A + Σ)⁻¹ (x_t − A m)``,

    E[x_0 | x_t] = m + K A r,        E[ε | x_t] = σ ⊙ r,

returned in any of the four prediction types (:func:`syncos_jax.schedules.from_x0_eps`). With
``identities`` each atom's component has the same covariance, so with ``μ_k = m + u_k``

    w_k ∝ exp(−½ Σ_pixels (x_t − A μ_k)ᵀ (A K A + Σ)⁻¹ (x_t − A μ_k)),
    E[x_0 | x_t] = m + ū + K A r̄,   E[ε | x_t] = σ ⊙ r̄,   ū = Σ_k w_k u_k,   r̄ = (A K A + Σ)⁻¹ (x_t − A (m + ū)),

the mixture of the components' posteriors (each linear in ``x_t``, so their ``w``-average is). Being
stationary, the prior's marginal over any ``f`` consecutive frames is the same, so the backbone
accepts chunks of any length, one time per chunk or one per frame.

Conditioning is an ``int32 [B]`` vector of prompt ids in ``[0, P]``; id ``P`` (:attr:`null_id`)
is the unconditional prompt, whose mean is ``uncond_mean`` (zero by default).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from syncos_jax.backbones.protocol import DenoiserDef, check_denoiser_inputs, check_ids
from syncos_jax.schedules import Schedule, alpha_sigma, append_dims, from_x0_eps

Array = jax.Array

TEMPORAL_KERNELS = ("exponential", "squared_exponential")

__all__ = ["GaussianVideoPrior", "TEMPORAL_KERNELS"]


class PriorTable(nnx.Variable):
    """Fixed arrays of the analytic prior (not trained)."""


class GaussianVideoPrior(nnx.Module):
    """Exact denoiser of a Gaussian-process video prior; satisfies the Denoiser protocol.

    Args:
      means: ``[P, H, W, C]`` the mean image of each prompt.
      schedule: the noise schedule whose model times ``t`` the backbone receives (its
        ``(α_t, σ_t)`` lookup is copied; VP or flow).
      prediction_type: what to return; defaults to ``schedule.prediction_type``.
      temporal_kernel: ``exponential`` (``v·ρ^lag``) or ``squared_exponential`` (``v·exp(−lag²/2ℓ²)``).
      rho: correlation between neighbouring frames, in ``(−1, 1)`` (``exponential``).
      length_scale: ``ℓ`` in frames (``squared_exponential``).
      variance: per-pixel variance ``v`` of the short-range part (the marginal variance is ``v + λ``).
      identity_variance: ``λ ≥ 0``, the variance of the identity shared by all frames of a video; the
        temporal covariance is ``k(|lag|) + λ`` at every lag. ``0`` (default) is the plain process.
      uncond_mean: ``[H, W, C]`` mean of the unconditional prompt; zero when ``None``.
      identities: ``[K, H, W, C]`` atoms of a discrete identity (one per video, uniform over the
        ``K``, shared by every prompt); ``None`` (default) for none.
    """

    per_frame_timesteps = True
    frames_per_chunk = None

    def __init__(
        self,
        means: Array,
        schedule: Schedule,
        *,
        prediction_type: Optional[str] = None,
        temporal_kernel: str = "exponential",
        rho: float = 0.8,
        length_scale: float = 2.0,
        variance: float = 1.0,
        identity_variance: float = 0.0,
        uncond_mean: Optional[Array] = None,
        identities: Optional[Array] = None,
    ):
        means = jnp.asarray(means, jnp.float32)
        if means.ndim != 4:
            raise ValueError(f"means must be [P, H, W, C] (one mean image per prompt), got shape {tuple(means.shape)}.")
        if temporal_kernel not in TEMPORAL_KERNELS:
            raise ValueError(
                f"temporal_kernel={temporal_kernel!r} is not supported; expected one of "
                f"{', '.join(map(repr, TEMPORAL_KERNELS))}."
            )
        if temporal_kernel == "exponential" and not -1.0 < rho < 1.0:
            raise ValueError(f"rho={rho} must lie in (-1, 1) for a valid exponential temporal covariance.")
        if temporal_kernel == "squared_exponential" and not length_scale > 0:
            raise ValueError(f"length_scale={length_scale} must be positive.")
        if not variance > 0:
            raise ValueError(f"variance={variance} must be positive.")
        if not (np.isfinite(identity_variance) and identity_variance >= 0):
            raise ValueError(
                f"identity_variance={identity_variance} must be a finite number >= 0 (the variance λ of the "
                "identity shared by all frames; 0 turns it off)."
            )
        if uncond_mean is None:
            uncond_mean = jnp.zeros(means.shape[1:], jnp.float32)
        uncond_mean = jnp.asarray(uncond_mean, jnp.float32)
        if uncond_mean.shape != means.shape[1:]:
            raise ValueError(f"uncond_mean must have shape {tuple(means.shape[1:])}, got {tuple(uncond_mean.shape)}.")
        if identities is not None:
            identities = jnp.asarray(identities, jnp.float32)
            if identities.ndim != 4 or identities.shape[1:] != means.shape[1:] or identities.shape[0] < 1:
                raise ValueError(f"identities must be [K, H, W, C] with K >= 1 atoms of the means' frame shape "
                                 f"{tuple(means.shape[1:])}, got shape {tuple(identities.shape)}.")
            if not bool(jnp.all(jnp.isfinite(identities))):
                raise ValueError("identities must be finite.")
        self.identities = None if identities is None else PriorTable(identities)
        self.prediction_type = prediction_type or schedule.prediction_type
        from_x0_eps(jnp.zeros(()), jnp.zeros(()), 1.0, 0.0, self.prediction_type)  # validates the name
        self.temporal_kernel = temporal_kernel
        self.rho = float(rho)
        self.length_scale = float(length_scale)
        self.variance = float(variance)
        self.identity_variance = float(identity_variance)
        self.num_prompts = int(means.shape[0])
        self.means = PriorTable(jnp.concatenate([means, uncond_mean[None]], axis=0))
        # Only the (α, σ) lookup of the schedule is needed: model time → noise level.
        self.schedule = nnx.data(
            Schedule(
                timesteps=schedule.timesteps[:0],
                alphas=schedule.alphas[:0],
                sigmas=schedule.sigmas[:0],
                alphas_cumprod=schedule.alphas_cumprod,
                train_alphas=schedule.train_alphas,
                train_sigmas=schedule.train_sigmas,
                kind=schedule.kind,
                prediction_type=self.prediction_type,
                num_train_timesteps=schedule.num_train_timesteps,
            )
        )

    # -- the prior -----------------------------------------------------------------------------

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one frame."""
        return tuple(int(d) for d in self.means.shape[1:])

    @property
    def null_id(self) -> int:
        """The prompt id of the unconditional prompt (``P``)."""
        return self.num_prompts

    @property
    def num_identities(self) -> int:
        """``K``, the number of identity atoms (0 without a discrete identity)."""
        return 0 if self.identities is None else int(self.identities.shape[0])

    def lag_covariance(self, lags: Array) -> Array:
        """Returns ``k(|lag|) + λ`` elementwise (float32): the prior covariance of two frames ``lag`` apart."""
        lag = jnp.abs(jnp.asarray(lags, jnp.float32))
        if self.temporal_kernel == "exponential":
            k = self.variance * jnp.power(jnp.float32(self.rho), lag)
        else:
            k = self.variance * jnp.exp(-(lag**2) / (2.0 * self.length_scale**2))
        # A Python branch, not ``+ 0.0``: λ = 0 then leaves the traced program (and every result) unchanged.
        return k + self.identity_variance if self.identity_variance else k

    def temporal_covariance(self, frames) -> Array:
        """Returns ``[n, n]`` the exact prior covariance between frames (per pixel; pixels are independent).

        Args:
          frames: ``[n]`` frame indices (any integers: the prior is stationary), or an int ``n``
            meaning ``0 … n − 1``.
        """
        frames = jnp.arange(frames) if isinstance(frames, (int, np.integer)) else jnp.asarray(frames)
        return self.lag_covariance(frames[:, None] - frames[None, :])

    def prior_mean(self, prompt_ids) -> Array:
        """Returns ``[n, H, W, C]`` the exact prior mean of frames whose prompts are ``prompt_ids: [n]``."""
        return self.means[...][jnp.asarray(prompt_ids)]

    # -- the denoiser --------------------------------------------------------------------------

    def posterior(self, x: Array, t: Array, cond: Array) -> tuple[Array, Array]:
        """Returns the exact ``(E[x_0 | x_t], E[ε | x_t])``, each ``[B, f, H, W, C]``.

        Args:
          x: ``[B, f, H, W, C]`` noisy chunks.
          t: ``[B]`` or ``[B, f]`` model times.
          cond: ``int32 [B]`` prompt ids in ``[0, P]`` (``null_id`` = ``P`` for the unconditional
            prompt). Checked when concrete; under ``jax.jit`` an id out of range is clamped by
            JAX's indexing (samplers check concrete conditioning before tracing).
        """
        if not isinstance(cond, jax.core.Tracer):
            check_ids(cond, "cond", low=0, high=self.num_prompts + 1, what="prompt ids")
        x0, eps, _ = self._posterior(x, t, cond)
        return x0, eps

    def identity_posterior(self, x: Array, t: Array, cond: Array) -> Array:
        """Returns ``w: [B, K]``, the exact posterior ``p(k | x_t)`` of each chunk's identity atom.

        Same arguments as :meth:`posterior`; needs ``identities``.
        """
        if self.identities is None:
            raise ValueError("identity_posterior needs a prior built with identities=[K, H, W, C]; this one has none.")
        if not isinstance(cond, jax.core.Tracer):
            check_ids(cond, "cond", low=0, high=self.num_prompts + 1, what="prompt ids")
        return self._posterior(x, t, cond)[2]

    def _posterior(self, x: Array, t: Array, cond: Array) -> tuple[Array, Array, Array | None]:
        """``(E[x_0 | x_t], E[ε | x_t], w [B, K] or None)``; see the module docstring."""
        B, f = x.shape[:2]
        alpha, sigma = alpha_sigma(self.schedule, t)
        alpha = jnp.broadcast_to(append_dims(alpha, 2), (B, f)).astype(jnp.float32)
        sigma = jnp.broadcast_to(append_dims(sigma, 2), (B, f)).astype(jnp.float32)
        m = self.means[...][jnp.asarray(cond)][:, None]  # [B, 1, H, W, C]
        K = self.temporal_covariance(f)
        cov_xt = alpha[:, :, None] * K[None] * alpha[:, None, :] + jax.vmap(jnp.diag)(sigma**2)
        solve = jax.vmap(lambda c, b: jax.scipy.linalg.solve(c, b, assume_a="pos"))
        hi = jax.lax.Precision.HIGHEST
        resid = (x - append_dims(alpha, x.ndim) * m).reshape(B, f, -1)
        w = None
        if self.identities is None:
            r = solve(cov_xt, resid)
        else:
            # Every component has covariance C = A K A + Σ, so the log-weights differ only in the
            # quadratic form of each atom's residual r_k = x_t − A (m + u_k): −½ Σ_p r_kᵀ C⁻¹ r_k. One
            # solve per chunk takes all K residuals as extra columns, and r̄ = C⁻¹ (x_t − A (m + ū)) is
            # their w-average (linear in the residual), so no further solve.
            Kn = self.num_identities
            u = self.identities[...].reshape(Kn, -1)  # [K, P]
            res_k = resid[:, :, None] - alpha[:, :, None, None] * u[None, None]  # [B, f, K, P]
            sol_k = solve(cov_xt, res_k.reshape(B, f, -1)).reshape(res_k.shape)
            w = jax.nn.softmax(-0.5 * jnp.einsum("bfkp,bfkp->bk", res_k, sol_k, precision=hi), axis=-1)  # [B, K]
            r = jnp.einsum("bk,bfkp->bfp", w, sol_k, precision=hi)
            m = m + jnp.einsum("bk,kp->bp", w, u, precision=hi).reshape((B, 1) + x.shape[2:])
        x0 = m + jnp.einsum("ij,bjp->bip", K, alpha[..., None] * r, precision=hi).reshape(x.shape)
        eps = (sigma[..., None] * r).reshape(x.shape)
        return x0, eps, w

    def __call__(self, x: Array, t: Array, cond: Array) -> Array:
        """Returns the exact posterior mean as the backbone's ``prediction_type``, ``[B, f, H, W, C]``."""
        check_denoiser_inputs(self, x, t)
        x0, eps = self.posterior(x, t, cond)
        alpha, sigma = alpha_sigma(self.schedule, t)
        return from_x0_eps(x0, eps, alpha, sigma, self.prediction_type)

    def split(self) -> tuple[DenoiserDef, nnx.State]:
        """Returns the split form ``(DenoiserDef, state)`` for samplers."""
        graphdef, state = nnx.split(self)
        return (
            DenoiserDef(
                prediction_type=self.prediction_type,
                frames_per_chunk=None,
                per_frame_timesteps=True,
                graphdef=graphdef,
                check_cond=functools.partial(check_ids, low=0, high=self.num_prompts + 1, what="prompt ids"),
            ),
            state,
        )
