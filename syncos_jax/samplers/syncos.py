"""SynCoS — Synchronized Coupled Sampling (ALGORITHM.md §4), composed of its three stages.

One denoising step from grid time ``t`` to the next grid time ``s`` (the paper's Algorithm 1):

* :func:`codenoise` (**stage 1**, temporal co-denoising): one batched (CFG-guided) backbone call
  over all ``N`` chunks of ``X_t``, fused ``X̂_0 = fuse({x̂_0(chunk_i)})``.
* :func:`refine` (**stage 2**, CSD-based synchronisation), if ``t > t_min``: CSD refinement of
  ``X̂_0`` at the *grounded* time ``t`` with a *fixed baseline noise* ``E`` drawn once per step:
  ``iters`` AdamW updates, each on ``B`` chunks drawn without replacement,
  ``z_j = α_t·take(Y)_j + σ_t·take(E)_j``, residual ``g_j = ε̂(z_j) − take(E)_j``, the
  Stein-variational gradient fused over the minibatch. Skipped with ``lax.cond`` (not computed)
  when ``t ≤ t_min``.
* :func:`renoise` (**stage 3**, grounded re-noising): ``X_s = α_s·X̂_0 + σ_s·E`` if stage 2 ran,
  else plain DDIM on the fused ``X̂_0``. The last step returns ``X̂_0``.

``stages=`` selects the composition: ``(1, 2, 3)`` SynCoS, ``(1, 3)`` Gen-L-Video exactly,
``(2,)`` CSD-only. :func:`build` binds the denoiser, schedule, layout and conditioning once and
returns a :class:`~syncos_jax.samplers.base.Sampler`::

    sampler = syncos.build(defn, schedule, layout, cond, iters=20, frame_shape=(H, W, C))
    state = sampler.init(key)
    for _ in range(sampler.num_steps):
        state, info = sampler.step(state, params)   # info: a SynCoSInfo
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from syncos_jax import schedules as S
from syncos_jax.chunking import ChunkLayout, assign_prompts, fuse, fuse_subset, take, take_subset
from syncos_jax.csd import csd_gradient
from syncos_jax.guidance import calls_per_chunk
from syncos_jax.prompts import Conditioning
from syncos_jax import validate as V
from syncos_jax.samplers.base import (
    Sampler,
    UnknownOption,
    check_inputs,
    config_from_options,
    count_above,
    declared_frame_shape,
    denoiser_def,
    first_nonfinite,
    make_predict,
    make_spec,
    nonfinite_message,
    start_frame_shape,
    Context,
)

Array = jax.Array

WEIGHTINGS = ("sigma2", "one")
KERNEL_ON = ("noisy", "clean")
OPTIMIZERS = ("adamw", "sgd")

__all__ = ["BUILD_KEYWORDS", "DIAGNOSTICS", "RULES", "SETTINGS", "settings_of", "SynCoSConfig", "SynCoSInfo", "SynCoSState", "batch_chunks", "build",
           "codenoise", "expected_nfe", "fixed_options", "init", "make_config", "refine", "renoise", "stage2_possible",
           "synchronized_step"]


class SynCoSConfig(NamedTuple):
    """Static settings of SynCoS and its ablations (ALGORITHM.md §4 defaults).

    Attributes:
      stages: which stages run: ``(1, 2, 3)`` SynCoS, ``(1, 3)`` Gen-L-Video, ``(2,)`` CSD-only.
      t_min: stage 2 runs only at grid times ``t > t_min`` (model time; flow: ``σ·T``);
        ``None`` runs it at every step ("w/o t_min").
      iters: stage-2 AdamW iterations per step.
      lr, weight_decay: AdamW learning rate and decoupled weight decay.
      decay_iter, decay_rate: staircase exponential decay of the learning rate.
      batch_chunks: ``B`` chunks per stage-2 iteration, drawn without replacement; ``None`` → ``min(N, 4)``.
      guidance_scale: classifier-free guidance ``γ`` (``1`` skips the unconditional pass), or a tuple
        of one ``γ`` per grid step (e.g. :func:`syncos_jax.guidance.dynamic_cfg_scales`, diffusers'
        dynamic CFG; stage 2 uses its step's value).
      grounded_timestep: stage 2 at the step's own ``t``; ``False`` draws ``t' ~ U[t_range]`` per iteration.
      t_range: ``(lo, hi)`` model-time range for ungrounded stage-2 timesteps (CSD's 20..980).
      fixed_baseline_noise: one noise array per step shared by stage 2 and stage 3; ``False`` draws
        fresh noise each iteration and stage 3 uses the ``ε̂`` implied by ``X_t`` and the refined ``X̂_0``.
      fusion_weights: ``uniform`` | ``triangular`` | ``gaussian`` | a tuple of ``f`` weights.
      kernel_gamma: fixed RBF ``γ``; ``None`` uses the median heuristic.
      weighting: ``w(t)``: ``sigma2`` (``σ_t²``, as the CSD code) or ``one``.
      native_residual: fold the objective-native factor ``1/α_t`` of ``v``/flow residuals into ``w(t)``
        (``α_t`` clipped at ``1e-3``: the factor diverges at zero terminal SNR).
      eta: DDIM ``η`` for stage 3 (VP only); 0 is deterministic.
      repulsion: keep the kernel's repulsion term in the CSD gradient (the paper). *Extension*:
        ``False`` keeps only the kernel-smoothed score (mechanism study: SVGD's repulsion keeps
        particles apart, and here the particles are chunks of one video).
      kernel_on: the points of the RBF kernel: ``noisy`` (the paper: the noisy chunks ``z_j``) or,
        as an *extension*, ``clean`` (the chunks of the current estimate ``Y`` they were made from;
        at high noise the noisy chunks are almost pure baseline noise and the kernel is blind).
      optimizer: ``adamw`` (the paper, after the CSD code) or, as an *extension*, ``sgd`` (plain
        gradient descent with the same learning-rate schedule: AdamW normalises each element, so
        ``w(t)`` and the ``1/B`` factor have no effect under it).
      eta_above_t_min: *extension*: the DDIM ``η`` of stage 3 at grid times ``t > t_min`` (``None``:
        ``eta`` everywhere). With ``stages=(1, 3)`` and ``1.0`` this is Gen-L-Video with fresh noise
        only where SynCoS would run stage 2 (mechanism study).
      check_finite: record the first NaN/Inf and raise after the run (naming step, time and stage).
    """

    stages: tuple = (1, 2, 3)
    t_min: Optional[float] = 800
    iters: int = 20
    lr: float = 0.5
    weight_decay: float = 0.0
    decay_iter: int = 20
    decay_rate: float = 0.9
    batch_chunks: Optional[int] = None
    guidance_scale: float = 6.0
    grounded_timestep: bool = True
    t_range: tuple = (20, 980)
    fixed_baseline_noise: bool = True
    fusion_weights: Any = "uniform"
    kernel_gamma: Optional[float] = None
    weighting: str = "sigma2"
    native_residual: bool = False
    eta: float = 0.0
    repulsion: bool = True
    kernel_on: str = "noisy"
    optimizer: str = "adamw"
    eta_above_t_min: Optional[float] = None
    check_finite: bool = False


class SynCoSInfo(NamedTuple):
    """What one step reports (always returned; :func:`~syncos_jax.samplers.base.run` records the
    fields asked for with ``diagnostics=``).

    Attributes:
      x0: ``[F, H, W, C]`` the step's ``X̂_0`` (after stage 2).
      x0_fused: ``[F, H, W, C]`` the fused stage-1 ``X̂_0`` before stage 2 (``X_t`` when stage 1 is off).
      base_noise: ``[F, H, W, C]`` the stage-2 baseline noise ``E`` (zeros when stage 2 cannot run).
      grad_norm: ``[iters]`` the fused CSD gradient's norm at each stage-2 iteration (0 when skipped).
      stage2_t: ``[iters]`` the model time of each stage-2 iteration (0 when skipped).
      stage2_ran: bool, whether stage 2 ran at this step.
      nfe: int32 backbone evaluations of this step.
    """

    x0: Array
    x0_fused: Array
    base_noise: Array
    grad_norm: Array
    stage2_t: Array
    stage2_ran: Array
    nfe: Array


DIAGNOSTICS = SynCoSInfo._fields


class SynCoSState(NamedTuple):
    """Sampler state between steps.

    Attributes:
      x: ``[F, H, W, C]`` the current latents ``X_t`` (for CSD-only: the optimised estimate ``Y``).
      step: int32 grid index of the next step.
      key: PRNG key; step ``k`` uses ``fold_in(key, k)``, so resuming needs nothing else.
      nfe: int32 backbone evaluations so far.
      nonfinite: int32 ``[2]`` ``(step, stage)`` of the first NaN/Inf, ``-1`` if none.
    """

    x: Array
    step: Array
    key: Array
    nfe: Array
    nonfinite: Array


GUIDANCE_RULE = V.either(V.real(0.0), V.reals(V.real(0.0)))

# Type and range of every setting, checked before anything is traced (see syncos_jax.validate).
RULES = {
    "stages": V.reals(V.integer(1, 3), max_len=3),
    "t_min": V.optional(V.real()),
    "iters": V.integer(1, 1_000_000),
    "lr": V.real(0.0),
    "weight_decay": V.real(0.0),
    "decay_iter": V.integer(1),
    "decay_rate": V.real(0.0, 1.0, lo_open=True),
    "batch_chunks": V.optional(V.integer(1)),
    "guidance_scale": GUIDANCE_RULE,
    "grounded_timestep": V.boolean(),
    "t_range": V.real_pair(0.0),
    "fixed_baseline_noise": V.boolean(),
    "fusion_weights": V.either(V.choice("uniform", "triangular", "gaussian"), V.reals(V.real(0.0, lo_open=True))),
    "kernel_gamma": V.optional(V.real(0.0)),
    "weighting": V.choice(*WEIGHTINGS),
    "native_residual": V.boolean(),
    "eta": V.real(0.0, 1.0),
    "repulsion": V.boolean(),
    "kernel_on": V.choice(*KERNEL_ON),
    "optimizer": V.choice(*OPTIMIZERS),
    "eta_above_t_min": V.optional(V.real(0.0, 1.0)),
    "check_finite": V.boolean(),
}


def make_config(**options) -> SynCoSConfig:
    """Returns a validated :class:`SynCoSConfig` from keyword options.

    Raises:
      UnknownOption: (a ``TypeError`` and an ``OptionError``) for an unknown option.
      OptionError: (a ``ValueError``) for a value of the wrong type or out of range, naming it —
        e.g. ``lr=nan: expected a finite number >= 0`` (rules: :data:`RULES`).
    """
    opts = dict(options)
    if "fusion_weights" in opts and not isinstance(opts["fusion_weights"], str):
        fw = V.check_options(RULES, {"fusion_weights": opts["fusion_weights"]})["fusion_weights"]
        opts["fusion_weights"] = tuple(float(w) for w in fw)
    if isinstance(opts.get("guidance_scale"), list):
        opts["guidance_scale"] = tuple(opts["guidance_scale"])
    cfg = config_from_options(SynCoSConfig, opts, "syncos", RULES)
    if not cfg.stages or not set(cfg.stages) <= {1, 2, 3} or tuple(sorted(set(cfg.stages))) != cfg.stages:
        raise ValueError(f"stages={cfg.stages!r} must be an increasing subset of (1, 2, 3), e.g. (1, 2, 3), (1, 3) or (2,).")
    if cfg.eta_above_t_min is not None and cfg.t_min is None:
        raise V.OptionError("eta_above_t_min", cfg.eta_above_t_min, f"needs a t_min (got t_min={cfg.t_min})")
    return cfg




BUILD_KEYWORDS = ("mesh", "frame_shape", "base_noise")


def settings_of(fixed: dict, extra: tuple = ()) -> tuple:
    """The settings of a sampler that is SynCoS with ``fixed`` stages: :class:`SynCoSConfig`'s fields
    but ``stages``, then ``extra`` (e.g. FreeNoise's ``window``)."""
    return tuple(f for f in SynCoSConfig._fields if not (f == "stages" and "stages" in fixed)) + tuple(extra)


def fixed_options(name: str, fixed: dict, options: dict, extra: tuple = ()) -> dict:
    """Returns ``{**fixed, **options}`` for a sampler ``name`` that is SynCoS with the settings
    ``fixed`` (Gen-L-Video, CSD-only, DDIM, FreeNoise's trajectory; ``extra``: its own settings, for messages).

    Raises:
      UnknownOption: for a name that is neither a :class:`SynCoSConfig` field nor a ``build`` keyword.
      ValueError: for an option that ``name`` fixes (e.g. ``stages``).
    """
    known = SynCoSConfig._fields + BUILD_KEYWORDS
    for option, value in options.items():
        if option not in known:
            raise UnknownOption(option, value, f"not a setting of {name} (its settings: {', '.join(settings_of(fixed, extra))})")
    if "stages" in fixed and "stages" in options:
        raise ValueError(f"{name} fixes stages={fixed['stages']}; use the syncos sampler to choose stages.")
    return {**fixed, **options}


SETTINGS = SynCoSConfig._fields  # what build validates (its other keywords are BUILD_KEYWORDS)


def batch_chunks(cfg: SynCoSConfig, layout: ChunkLayout) -> int:
    """Returns ``B``, the chunks per stage-2 iteration (``min(N, 4)`` by default); raises unless ``1 ≤ B ≤ N``."""
    B = min(layout.num_chunks, 4) if cfg.batch_chunks is None else int(cfg.batch_chunks)
    if not 1 <= B <= layout.num_chunks:
        raise ValueError(f"batch_chunks={cfg.batch_chunks} must be between 1 and the number of chunks N={layout.num_chunks}.")
    return B


def stage2_possible(cfg: SynCoSConfig, schedule: S.Schedule) -> bool:
    """Whether stage 2 is compiled at all.

    Model times never exceed ``T``, so ``t_min ≥ T`` switches stage 2 off statically: the compiled
    program is then Gen-L-Video's, bit for bit (a never-taken ``lax.cond`` still changes XLA's fusion).
    """
    return 2 in cfg.stages and not (cfg.t_min is not None and cfg.t_min >= schedule.num_train_timesteps)


def expected_nfe(cfg: SynCoSConfig, schedule: S.Schedule, layout: ChunkLayout) -> Optional[int]:
    """Returns the closed-form NFE ``S·N·c·[1∈stages] + Σ_{t>t_min} iters·B·c·[2∈stages]``, ``c = 1 + [γ≠1]``
    (``None`` for a traced schedule)."""
    c = calls_per_chunk(cfg.guidance_scale)
    total = schedule.num_steps * layout.num_chunks * c if 1 in cfg.stages else 0
    if stage2_possible(cfg, schedule):
        runs = count_above(schedule.timesteps, cfg.t_min)
        if runs is None:
            return None
        total += runs * cfg.iters * batch_chunks(cfg, layout) * c
    return int(total)


def init(key: Array, layout: ChunkLayout, frame_shape: Sequence[int], *, initial_noise: Optional[Array] = None) -> SynCoSState:
    """Returns the initial state: ``X_T ~ N(0, I)`` of shape ``[F, H, W, C]`` (or ``initial_noise``)."""
    k_init, k_run = jax.random.split(key)
    shape = (layout.num_frames,) + tuple(frame_shape)
    if initial_noise is None:
        x = jax.random.normal(k_init, shape, jnp.float32)
    else:
        x = jnp.asarray(initial_noise, jnp.float32)
        if x.shape != shape:
            raise ValueError(f"initial_noise has shape {tuple(x.shape)}, expected {shape} for {layout}.")
    return SynCoSState(
        x=x,
        step=jnp.zeros((), jnp.int32),
        key=k_run,
        nfe=jnp.zeros((), jnp.int32),
        nonfinite=jnp.full((2,), -1, jnp.int32),
    )


def _weight(cfg: SynCoSConfig, prediction_type: str, alpha, sigma):
    w = sigma**2 if cfg.weighting == "sigma2" else jnp.ones_like(sigma)
    if cfg.native_residual and prediction_type in ("v_prediction", "flow"):
        w = w / jnp.maximum(alpha, 1e-3)
    return w


def _stage2_time(cfg: SynCoSConfig, schedule: S.Schedule, t, key):
    if cfg.grounded_timestep:
        return t
    lo, hi = cfg.t_range
    if schedule.kind == "vp":
        return jax.random.randint(key, (), int(lo), int(hi) + 1, dtype=schedule.timesteps.dtype)
    return jax.random.uniform(key, (), schedule.timesteps.dtype, float(lo), float(hi))


def _optimizer(cfg: SynCoSConfig):
    lr = optax.exponential_decay(cfg.lr, cfg.decay_iter, cfg.decay_rate, staircase=True)
    if cfg.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=cfg.weight_decay)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(lr))


def codenoise(predict, layout: ChunkLayout, chunk_prompts, x_t: Array, t, step, fusion_weights="uniform") -> Array:
    """Stage 1, temporal co-denoising: returns the fused ``X̂_0 = fuse({x̂_0(take(X_t)_i)})``, ``[F, H, W, C]``.

    Args:
      predict: the backbone at the edge (:func:`~syncos_jax.samplers.base.make_predict`).
      layout: the chunk layout.
      chunk_prompts: ``[N]`` the local prompt of each chunk (:func:`~syncos_jax.chunking.assign_prompts`).
      x_t: ``[F, H, W, C]`` the video at grid time ``t``.
      t: the model time (scalar).
      step: the grid step (for a per-step guidance).
      fusion_weights: see :func:`~syncos_jax.chunking.chunk_weights`.
    """
    chunks = take(layout, x_t)
    tt = jnp.full((layout.num_chunks,), t, jnp.asarray(t).dtype)
    x0_chunks, _ = predict(chunks, tt, chunk_prompts, step)
    return fuse(layout, x0_chunks, fusion_weights)


def refine(predict, schedule: S.Schedule, layout: ChunkLayout, cfg: SynCoSConfig, chunk_prompts, t, X0: Array, E: Array,
           key: Array, step) -> tuple[Array, Array, Array]:
    """Stage 2, CSD-based synchronisation: ``iters`` optimiser steps of fused CSD gradients from ``Y = X̂_0``.

    Each iteration draws ``B`` distinct chunks, noises them to ``z_j = α·take(Y)_j + σ·e_j`` (``e``
    the fixed baseline noise ``E``, or fresh noise), and applies the Stein-variational gradient of
    the residuals ``ε̂(z_j) − e_j`` (:func:`~syncos_jax.csd.csd_gradient`), fused over the minibatch.

    Returns:
      ``(Y [F, H, W, C], grad norms [iters], stage-2 times [iters])``.
    """
    B = batch_chunks(cfg, layout)
    N = layout.num_chunks
    opt = _optimizer(cfg)
    E_shape = (B, layout.chunk_frames) + X0.shape[1:]
    chunk_prompts = jnp.asarray(chunk_prompts)

    def body(i, carry):
        Y, opt_state, norms, times = carry
        k_sel, k_t, k_e = jax.random.split(jax.random.fold_in(key, i), 3)
        ids = jax.random.permutation(k_sel, N)[:B]
        tp = _stage2_time(cfg, schedule, t, k_t)
        ap, sp = schedule.alpha_sigma(tp)
        e = take_subset(layout, E, ids) if cfg.fixed_baseline_noise else jax.random.normal(k_e, E_shape, X0.dtype)
        y = take_subset(layout, Y, ids)
        z = ap * y + sp * e
        tb = jnp.full((B,), tp, schedule.timesteps.dtype)
        _, eps_hat = predict(z, tb, chunk_prompts[ids], step)
        G = csd_gradient(z, eps_hat - e, _weight(cfg, schedule.prediction_type, ap, sp), cfg.kernel_gamma,
                         repulsion=cfg.repulsion, kernel_points=y if cfg.kernel_on == "clean" else None)
        grad = fuse_subset(layout, G, ids, cfg.fusion_weights)
        updates, opt_state = opt.update(grad, opt_state, Y)
        Y = optax.apply_updates(Y, updates)
        return Y, opt_state, norms.at[i].set(jnp.linalg.norm(grad)), times.at[i].set(jnp.asarray(tp, jnp.float32))

    zeros = jnp.zeros((cfg.iters,), jnp.float32)
    Y, _, norms, times = jax.lax.fori_loop(0, cfg.iters, body, (X0, opt.init(X0), zeros, zeros))
    return Y, norms, times


def renoise(schedule: S.Schedule, cfg: SynCoSConfig, X0: Array, eps: Array, k, key: Array) -> Array:
    """Stage 3, grounded re-noising: ``X_s = DDIM(X̂_0, ε)`` to the next grid time; ``X̂_0`` itself at the last step.

    ``eps`` is the fixed baseline noise ``E`` when stage 2 ran, else the ``ε̂`` implied by ``X_t``
    and ``X̂_0`` (plain DDIM). With ``eta_above_t_min`` the step above ``t_min`` uses that ``η``.
    """
    t = schedule.timesteps[k]
    a_t, s_t = schedule.alphas[k], schedule.sigmas[k]
    a_s, s_s = schedule.alphas[k + 1], schedule.sigmas[k + 1]
    x_next = S.ddim_step(X0, eps, a_s, s_s, eta=cfg.eta, alpha_t=a_t, sigma_t=s_t, key=key)
    if cfg.eta_above_t_min is not None:  # both steps with static η, selected by the grid time
        x_high = S.ddim_step(X0, eps, a_s, s_s, eta=cfg.eta_above_t_min, alpha_t=a_t, sigma_t=s_t, key=key)
        x_next = jnp.where(t > cfg.t_min, x_high, x_next)
    return jnp.where(k == schedule.num_steps - 1, X0, x_next)  # the last step returns x̂_0


def synchronized_step(state: SynCoSState, predict, schedule: S.Schedule, layout: ChunkLayout, chunk_prompts,
                      cfg: SynCoSConfig, base_noise: Optional[Array] = None) -> tuple[SynCoSState, SynCoSInfo]:
    """One step of Algorithm 1 from grid index ``state.step``: the stages of ``cfg.stages``, composed.

    ``base_noise``: ``[S, F, H, W, C]`` explicit stage-2 baseline noise per step (replaces the draw).
    """
    k = state.step
    t = schedule.timesteps[k]
    a_t, s_t = schedule.alphas[k], schedule.sigmas[k]
    k_E, k_iter, k_eta = jax.random.split(jax.random.fold_in(state.key, k), 3)
    c = calls_per_chunk(cfg.guidance_scale)
    X_t, nfe, flag = state.x, state.nfe, state.nonfinite

    if 1 in cfg.stages:  # stage 1
        X0 = codenoise(predict, layout, chunk_prompts, X_t, t, k, cfg.fusion_weights)
        nfe = nfe + layout.num_chunks * c
        flag = first_nonfinite(flag, k, 1, X0) if cfg.check_finite else flag
    else:
        X0 = X_t
    eps = S.eps_from_x0(X_t, X0, a_t, s_t)  # plain DDIM on the fused x̂_0
    X0_fused = X0

    E = jnp.zeros_like(X0)
    norms = times = jnp.zeros((cfg.iters,), jnp.float32)
    ran = jnp.zeros((), bool)
    if stage2_possible(cfg, schedule):  # stage 2, where t > t_min
        if base_noise is not None:
            E = jnp.asarray(base_noise, X0.dtype)[k]
        elif cfg.fixed_baseline_noise:
            E = jax.random.normal(k_E, X0.shape, X0.dtype)
        ran = jnp.asarray(True) if cfg.t_min is None else t > cfg.t_min

        def run_refine(ops):
            Y, nrm, tms = refine(predict, schedule, layout, cfg, chunk_prompts, t, ops[0], E, k_iter, k)
            return (Y, E if cfg.fixed_baseline_noise else S.eps_from_x0(X_t, Y, a_t, s_t)), nrm, tms

        (X0, eps), norms, times = jax.lax.cond(ran, run_refine, lambda ops: (ops, norms, times), (X0, eps))
        nfe = nfe + jnp.where(ran, cfg.iters * batch_chunks(cfg, layout) * c, 0).astype(jnp.int32)
        flag = first_nonfinite(flag, k, 2, X0) if cfg.check_finite else flag

    if 3 in cfg.stages:  # stage 3
        x_next = renoise(schedule, cfg, X0, eps, k, k_eta)
        flag = first_nonfinite(flag, k, 3, x_next) if cfg.check_finite else flag
    else:
        x_next = X0

    info = SynCoSInfo(X0, X0_fused, E, norms, times, ran, nfe - state.nfe)
    return SynCoSState(x=x_next, step=k + 1, key=state.key, nfe=nfe.astype(jnp.int32), nonfinite=flag), info


def build(denoiser, schedule: S.Schedule, layout: ChunkLayout, cond: Conditioning, *, mesh=None,
          frame_shape: Optional[Sequence[int]] = None, base_noise: Optional[Array] = None, **options) -> Sampler:
    """Returns SynCoS (or an ablation, via ``options``) bound to its context, as a :class:`Sampler`.

    Args:
      denoiser: a :class:`~syncos_jax.backbones.protocol.DenoiserDef`, a split ``(def, params)``
        pair or a ``Denoiser`` (only its definition is kept: params are ``step``'s argument).
      schedule: the sampling schedule (its grid, its prediction type).
      layout: the chunk layout ``(F, f, stride)``.
      cond: the :class:`~syncos_jax.prompts.Conditioning`; chunks take the prompt of their centre
        frame's event (ALGORITHM.md §2, :func:`~syncos_jax.chunking.assign_prompts`).
      mesh: optional device mesh; chunk batches are sharded over its ``data`` axis.
      frame_shape: ``(H, W, C)`` when the denoiser does not declare it (``init`` can also read it
        from ``initial_noise``).
      base_noise: explicit stage-2 baseline noise ``[S, F, H, W, C]`` (replaces the draws).
      **options: fields of :class:`SynCoSConfig`, validated here (:func:`make_config`).

    The sampler's ``init(key, params=None, *, initial_noise=None)`` draws ``X_T``; its ``step``
    returns a :class:`SynCoSInfo`.
    """
    cfg = make_config(**options)
    defn = denoiser_def(denoiser)
    check_inputs(defn, schedule, cond)
    if stage2_possible(cfg, schedule):
        batch_chunks(cfg, layout)  # raises unless 1 ≤ B ≤ N
    shape = declared_frame_shape(denoiser, frame_shape)
    if base_noise is not None and shape is not None:
        expected = (schedule.num_steps, layout.num_frames) + tuple(shape)
        if tuple(jnp.shape(base_noise)) != expected:
            raise ValueError(f"base_noise has shape {tuple(jnp.shape(base_noise))}, expected [S, F, H, W, C] = {expected}.")
    chunk_prompts = assign_prompts(layout, cond.segments(layout.num_frames))

    def init_fn(key, params=None, *, initial_noise=None):
        return init(key, layout, start_frame_shape(shape, initial_noise), initial_noise=initial_noise)

    def step(state, params):
        predict = make_predict(defn, params, schedule, cond, cfg.guidance_scale, mesh)
        return synchronized_step(state, predict, schedule, layout, chunk_prompts, cfg, base_noise)

    spec = make_spec(build, defn, layout, dict(cfg._asdict(), mesh=mesh, frame_shape=shape))  # the validated settings
    context = Context(schedule, cond, {} if base_noise is None else {"base_noise": base_noise})
    return Sampler(init_fn, step, schedule.num_steps, expected_nfe(cfg, schedule, layout), spec, context,
                   lambda state: state.x, lambda flag: nonfinite_message(flag, schedule.timesteps), SynCoSInfo._fields)
