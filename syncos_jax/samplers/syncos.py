"""SynCoS — Synchronized Coupled Sampling (ALGORITHM.md §4), with every ablation a keyword.

One denoising step from grid time ``t`` to the next grid time ``s``:

* **Stage 1** — temporal co-denoising with DDIM: one batched (CFG-guided) backbone call over all
  ``N`` chunks of ``X_t``, fused ``X̂_0 = fuse({x̂_0(out_i)})``.
* **Stage 2** — if ``t > t_min``: CSD refinement of ``X̂_0`` at the *grounded* time ``t`` with a
  *fixed baseline noise* ``E`` drawn once per step: ``iters`` AdamW updates, each on ``B`` chunks
  drawn without replacement, ``z_j = α_t·take(Y)_j + σ_t·take(E)_j``, residual
  ``g_j = ε̂(z_j) − take(E)_j``, the Stein-variational gradient fused over the minibatch.
  Skipped with ``lax.cond`` (not computed) when ``t ≤ t_min``.
* **Stage 3** — ``X_s = α_s·X̂_0 + σ_s·E`` if stage 2 ran, else plain DDIM on the fused ``X̂_0``.
  The last step returns ``X̂_0``.

``stages=(1, 3)`` is Gen-L-Video exactly, ``stages=(2,)`` CSD-only, ``(1, 2, 3)`` SynCoS.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from syncos_jax import schedules as S
from syncos_jax.backbones.protocol import DenoiserDef, split_denoiser
from syncos_jax.chunking import ChunkLayout, fuse, fuse_subset, take, take_subset
from syncos_jax.csd import csd_gradient
from syncos_jax.guidance import calls_per_chunk, guided, step_guidance
from syncos_jax.parallel import shard_batch
from syncos_jax import validate as V
from syncos_jax.samplers.base import (
    Conditioning,
    SampleResult,
    check_inputs,
    chunk_conditioning,
    config_from_options,
    finite_error,
    first_nonfinite,
    frame_shape_of,
    is_key_batch,
    run_loop,
)

Array = jax.Array

DIAGNOSTICS = ("x0", "x0_fused", "base_noise", "grad_norm", "stage2_t", "stage2_ran", "nfe")
WEIGHTINGS = ("sigma2", "one")
KERNEL_ON = ("noisy", "clean")
OPTIMIZERS = ("adamw", "sgd")

__all__ = ["DIAGNOSTICS", "SynCoSConfig", "SynCoSState", "expected_nfe", "init", "sample", "step"]


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
      diagnostics: names from :data:`DIAGNOSTICS` to record per step: ``x0`` the ``X̂_0`` of the step
        (after stage 2), ``x0_fused`` the fused stage-1 ``X̂_0`` before stage 2 (``X_t`` when stage 1
        is off), ``base_noise`` the stage-2 noise ``E``, ``grad_norm`` / ``stage2_t`` per stage-2
        iteration, ``stage2_ran``, ``nfe`` of the step.
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
    diagnostics: tuple = ()


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
    "diagnostics": V.names(DIAGNOSTICS),
}


def make_config(**options) -> SynCoSConfig:
    """Returns a validated :class:`SynCoSConfig` from keyword options.

    Raises:
      TypeError: for an unknown option.
      OptionError: (a ``ValueError``) for a value of the wrong type or out of range, naming it —
        e.g. ``lr=nan: expected a finite number >= 0`` (rules: :data:`RULES`).
    """
    opts = dict(options)
    if "fusion_weights" in opts and not isinstance(opts["fusion_weights"], str):
        fw = V.check_options(RULES, {"fusion_weights": opts["fusion_weights"]})["fusion_weights"]
        opts["fusion_weights"] = tuple(float(w) for w in fw)
    if isinstance(opts.get("guidance_scale"), list):
        opts["guidance_scale"] = tuple(opts["guidance_scale"])
    config_from_options(SynCoSConfig, opts, "SynCoS")  # unknown names first
    opts = V.check_options(RULES, opts)
    cfg = config_from_options(SynCoSConfig, opts, "SynCoS")
    if not cfg.stages or not set(cfg.stages) <= {1, 2, 3} or tuple(sorted(set(cfg.stages))) != cfg.stages:
        raise ValueError(f"stages={cfg.stages!r} must be an increasing subset of (1, 2, 3), e.g. (1, 2, 3), (1, 3) or (2,).")
    if cfg.eta_above_t_min is not None and cfg.t_min is None:
        raise V.OptionError("eta_above_t_min", cfg.eta_above_t_min, f"needs a t_min (got t_min={cfg.t_min})")
    return cfg


def _batch_chunks(cfg: SynCoSConfig, layout: ChunkLayout) -> int:
    B = min(layout.num_chunks, 4) if cfg.batch_chunks is None else int(cfg.batch_chunks)
    if not 1 <= B <= layout.num_chunks:
        raise ValueError(f"batch_chunks={cfg.batch_chunks} must be between 1 and the number of chunks N={layout.num_chunks}.")
    return B


def expected_nfe(schedule: S.Schedule, layout: ChunkLayout, **options) -> int:
    """Returns the closed-form NFE: ``S·N·c·[1∈stages] + Σ_{t>t_min} iters·B·c·[2∈stages]``, ``c = 1 + [γ≠1]``."""
    cfg = make_config(**options)
    c = calls_per_chunk(cfg.guidance_scale)
    ts = np.asarray(schedule.timesteps, np.float64)
    total = schedule.num_steps * layout.num_chunks * c if 1 in cfg.stages else 0
    if _stage2_possible(cfg, schedule):
        runs = ts.size if cfg.t_min is None else int(np.sum(ts > cfg.t_min))
        total += runs * cfg.iters * _batch_chunks(cfg, layout) * c
    return int(total)


def init(
    key: Array,
    layout: ChunkLayout,
    frame_shape: Sequence[int],
    *,
    initial_noise: Optional[Array] = None,
) -> SynCoSState:
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


def _stage2_possible(cfg: SynCoSConfig, schedule: S.Schedule) -> bool:
    # Model times never exceed T, so t_min >= T switches stage 2 off statically: the compiled
    # program is then Gen-L-Video's, bit for bit (a never-taken lax.cond still changes XLA's fusion).
    return 2 in cfg.stages and not (cfg.t_min is not None and cfg.t_min >= schedule.num_train_timesteps)


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


def _refine(denoise, schedule, layout, cfg, cond_c, cond_u, t, X0, E, key, gamma):
    """Stage 2: ``iters`` AdamW steps of fused CSD gradients from ``Y = X̂_0``. Returns ``(Y, diagnostics)``."""
    B = _batch_chunks(cfg, layout)
    N = layout.num_chunks
    lr = optax.exponential_decay(cfg.lr, cfg.decay_iter, cfg.decay_rate, staircase=True)
    if cfg.optimizer == "adamw":
        opt = optax.adamw(lr, weight_decay=cfg.weight_decay)
    else:
        opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(lr))
    E_shape = (B, layout.chunk_frames) + X0.shape[1:]

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
        c_sel = jax.tree_util.tree_map(lambda a: a[ids], cond_c)
        u_sel = None if cond_u is None else jax.tree_util.tree_map(lambda a: a[ids], cond_u)
        out = guided(denoise, z, tb, c_sel, u_sel, gamma)
        _, eps_hat = schedule.to_x0_eps(out, z, tb)
        G = csd_gradient(z, eps_hat - e, _weight(cfg, schedule.prediction_type, ap, sp), cfg.kernel_gamma,
                         repulsion=cfg.repulsion, kernel_points=y if cfg.kernel_on == "clean" else None)
        grad = fuse_subset(layout, G, ids, cfg.fusion_weights)
        updates, opt_state = opt.update(grad, opt_state, Y)
        Y = optax.apply_updates(Y, updates)
        return Y, opt_state, norms.at[i].set(jnp.linalg.norm(grad)), times.at[i].set(jnp.asarray(tp, jnp.float32))

    zeros = jnp.zeros((cfg.iters,), jnp.float32)
    Y, _, norms, times = jax.lax.fori_loop(0, cfg.iters, body, (X0, opt.init(X0), zeros, zeros))
    return Y, norms, times


def step(
    state: SynCoSState,
    denoiser: tuple[DenoiserDef, Any],
    schedule: S.Schedule,
    layout: ChunkLayout,
    cond: Conditioning,
    config: SynCoSConfig = SynCoSConfig(),
    *,
    base_noise: Optional[Array] = None,
    mesh=None,
) -> tuple[SynCoSState, dict]:
    """Returns ``(next state, diagnostics of this step)``: one SynCoS step from grid index ``state.step``.

    Args:
      state: the current :class:`SynCoSState`.
      denoiser: the split denoiser ``(DenoiserDef, params)``.
      schedule: the sampling schedule.
      layout: the chunk layout.
      cond: the :class:`Conditioning` (per local prompt); chunks get prompts by ALGORITHM.md §2.
      config: a :class:`SynCoSConfig`.
      base_noise: ``[S, F, H, W, C]`` explicit stage-2 baseline noise per step (replaces the draw).
      mesh: optional device mesh; chunk batches are sharded over its ``data`` axis.
    """
    defn, params = denoiser
    cfg = config
    k = state.step
    S_steps = schedule.num_steps
    t = schedule.timesteps[k]
    a_t, s_t = schedule.alphas[k], schedule.sigmas[k]
    a_s, s_s = schedule.alphas[k + 1], schedule.sigmas[k + 1]
    k_E, k_iter, k_eta = jax.random.split(jax.random.fold_in(state.key, k), 3)
    c = calls_per_chunk(cfg.guidance_scale)
    cond_c, cond_u = chunk_conditioning(cond, layout, guided=c == 2)

    def denoise(x, tt, cc):
        return shard_batch(defn.apply(params, shard_batch(x, mesh), shard_batch(tt, mesh), shard_batch(cc, mesh)), mesh)

    X_t = state.x
    nfe = state.nfe
    flag = state.nonfinite
    diag = {}

    if 1 in cfg.stages:
        chunks = take(layout, X_t)
        tt = jnp.full((layout.num_chunks,), t, schedule.timesteps.dtype)
        out = guided(denoise, chunks, tt, cond_c, cond_u, step_guidance(cfg.guidance_scale, k))
        x0_chunks, _ = schedule.to_x0_eps(out, chunks, tt)
        X0 = fuse(layout, x0_chunks, cfg.fusion_weights)
        nfe = nfe + layout.num_chunks * c
        if cfg.check_finite:
            flag = first_nonfinite(flag, k, 1, X0)
    else:
        X0 = X_t
    eps = (X_t - a_t * X0) / s_t  # plain DDIM on the fused x̂_0
    X0_fused = X0

    E = jnp.zeros_like(X0)
    norms = times = jnp.zeros((cfg.iters,), jnp.float32)
    ran = jnp.zeros((), bool)
    if _stage2_possible(cfg, schedule):
        if base_noise is not None:
            E = jnp.asarray(base_noise, X0.dtype)[k]
        elif cfg.fixed_baseline_noise:
            E = jax.random.normal(k_E, X0.shape, X0.dtype)
        ran = jnp.asarray(True) if cfg.t_min is None else t > cfg.t_min

        def refine(ops):
            X0_in, _ = ops
            Y, nrm, tms = _refine(denoise, schedule, layout, cfg, cond_c, cond_u, t, X0_in, E, k_iter, step_guidance(cfg.guidance_scale, k))
            eps_out = E if cfg.fixed_baseline_noise else (X_t - a_t * Y) / s_t
            return (Y, eps_out), nrm, tms

        def skip(ops):
            return ops, norms, times

        (X0, eps), norms, times = jax.lax.cond(ran, refine, skip, (X0, eps))
        nfe = nfe + jnp.where(ran, cfg.iters * _batch_chunks(cfg, layout) * c, 0).astype(jnp.int32)
        if cfg.check_finite:
            flag = first_nonfinite(flag, k, 2, X0)

    if 3 in cfg.stages:
        x_next = S.ddim_step(X0, eps, a_s, s_s, eta=cfg.eta, alpha_t=a_t, sigma_t=s_t, key=k_eta)
        if cfg.eta_above_t_min is not None:  # both steps with static η, selected by the grid time
            x_high = S.ddim_step(X0, eps, a_s, s_s, eta=cfg.eta_above_t_min, alpha_t=a_t, sigma_t=s_t, key=k_eta)
            x_next = jnp.where(t > cfg.t_min, x_high, x_next)
        x_next = jnp.where(k == S_steps - 1, X0, x_next)  # the last step returns x̂_0
        if cfg.check_finite:
            flag = first_nonfinite(flag, k, 3, x_next)
    else:
        x_next = X0

    wanted = {
        "x0": lambda: X0,
        "x0_fused": lambda: X0_fused,
        "base_noise": lambda: E,
        "grad_norm": lambda: norms,
        "stage2_t": lambda: times,
        "stage2_ran": lambda: ran,
        "nfe": lambda: nfe - state.nfe,
    }
    diag = {name: wanted[name]() for name in cfg.diagnostics}
    new_state = SynCoSState(x=x_next, step=k + 1, key=state.key, nfe=nfe.astype(jnp.int32), nonfinite=flag)
    return new_state, diag


@functools.partial(jax.jit, static_argnames=("defn", "layout", "config", "progress", "mesh", "batched"))
def _run(params, schedule, cond, state, stop, base_noise, *, defn, layout, config, progress, mesh, batched):
    def one(st, bn):
        return step(st, (defn, params), schedule, layout, cond, config, base_noise=bn, mesh=mesh)

    if batched:
        step_fn = jax.vmap(one, in_axes=(0, None if base_noise is None else 0))
    else:
        step_fn = one
    return run_loop(lambda st: step_fn(st, base_noise), state, stop, schedule.num_steps, progress)


def run(
    denoiser,
    schedule: S.Schedule,
    layout: ChunkLayout,
    cond: Conditioning,
    state: SynCoSState,
    *,
    config: SynCoSConfig,
    stop: Optional[int] = None,
    base_noise: Optional[Array] = None,
    progress: Optional[Callable[[int], None]] = None,
    mesh=None,
) -> tuple[SynCoSState, dict]:
    """Runs compiled steps from ``state.step`` to ``stop`` (default: the end). Returns ``(state, diagnostics)``.

    The same executable serves a full run, a run stopped after step ``k`` and a resumed run, so a
    resumed trajectory is bit-identical to an uninterrupted one.
    """
    defn, params = split_denoiser(denoiser)
    check_inputs(defn, schedule, cond)
    stop = schedule.num_steps if stop is None else int(stop)
    if not 0 <= stop <= schedule.num_steps:
        raise ValueError(f"stop={stop} must be between 0 and the number of steps {schedule.num_steps}.")
    if base_noise is not None:
        expected = (schedule.num_steps,) + tuple(state.x.shape[-4:])
        if tuple(jnp.shape(base_noise)[-5:]) != expected:
            raise ValueError(f"base_noise has shape {tuple(jnp.shape(base_noise))}, expected [..., S, F, H, W, C] = {expected}.")
    batched = jnp.ndim(state.step) == 1
    return _run(
        params, schedule, cond, state, jnp.asarray(stop, jnp.int32), base_noise,
        defn=defn, layout=layout, config=config, progress=progress, mesh=mesh, batched=batched,
    )


def sample(
    denoiser,
    schedule: S.Schedule,
    layout: ChunkLayout,
    cond: Conditioning,
    *,
    key: Array,
    progress: Optional[Callable[[int], None]] = None,
    initial_noise: Optional[Array] = None,
    base_noise: Optional[Array] = None,
    frame_shape: Optional[Sequence[int]] = None,
    mesh=None,
    **options,
) -> SampleResult:
    """Returns a :class:`SampleResult`: a long video sampled with SynCoS (or an ablation via ``options``).

    Args:
      denoiser: a :class:`~syncos_jax.backbones.protocol.Denoiser` or a split ``(DenoiserDef, params)``.
      schedule: the sampling schedule (its grid, its prediction type).
      layout: the chunk layout ``(F, f, stride)``.
      cond: the :class:`Conditioning`.
      key: a PRNG key, or ``[batch]`` keys to sample a batch of videos (vmapped).
      progress: called with the number of finished steps, from inside the compiled loop.
      initial_noise: explicit ``X_T`` ``[F, H, W, C]`` (``[batch, F, H, W, C]`` with batched keys).
      base_noise: explicit stage-2 baseline noise ``[S, F, H, W, C]`` (batched likewise).
      frame_shape: ``(H, W, C)`` when neither the denoiser nor ``initial_noise`` says it.
      mesh: optional device mesh (see :mod:`syncos_jax.parallel`).
      **options: fields of :class:`SynCoSConfig`.
    """
    config = make_config(**options)
    state = init_state(key, layout, frame_shape_of(denoiser, frame_shape, initial_noise), initial_noise=initial_noise)
    state, diag = run(denoiser, schedule, layout, cond, state, config=config, base_noise=base_noise, progress=progress, mesh=mesh)
    return finish(state, diag, schedule, config.check_finite)


def init_state(key, layout, frame_shape, *, initial_noise=None, init_fn=init):
    """Returns ``init_fn``'s state for one key, or the vmapped states for a ``[batch]`` of keys."""
    if not is_key_batch(key):
        return init_fn(key, layout, frame_shape, initial_noise=initial_noise)
    if initial_noise is None:
        return jax.vmap(lambda k: init_fn(k, layout, frame_shape))(key)
    return jax.vmap(lambda k, n: init_fn(k, layout, frame_shape, initial_noise=n))(key, initial_noise)


def finish(state, diag, schedule, check_finite: bool) -> SampleResult:
    """Returns the :class:`SampleResult` of a finished run (raising if a non-finite value was recorded)."""
    if check_finite:
        finite_error(state.nonfinite, schedule.timesteps)
    if jnp.ndim(state.step) == 1:  # batched: per-run diagnostics first
        diag = {n: jnp.moveaxis(v, 1, 0) for n, v in diag.items()}
    return SampleResult(latents=state.x, nfe=state.nfe, diagnostics=diag, state=state)
