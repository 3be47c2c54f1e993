"""FIFO-Diffusion (Kim et al. 2024): diagonal denoising over a queue of frames (ALGORITHM.md §6).

Chunk length ``f``, ``n`` partitions, ``S = n·f`` levels on an ascending grid ``τ_0 < … < τ_{S−1}``
(``round(linspace(0, T − 1, S))`` for VP; for flow the schedule's own grid of ``S`` steps).
Queue slot ``p`` always sits at level ``τ_p``; with lookahead (default, even ``f``) ``f/2``
context slots at ``τ_0`` are prepended. One iteration: every window of ``f`` slots (starts
``r·f``, or ``r·f/2`` with lookahead) goes through the backbone in **one** batched call with
per-frame timesteps, each frame takes a DDIM step ``τ_p → τ_{p−1}`` (slot 0 stays at ``τ_0``;
``η`` defaults to 1 as in FIFO's code), with lookahead only the last ``f/2`` frames of each window
are written. Then the clean slot is popped as the next output frame, the queue shifts by one and
fresh ``N(0, I)`` noise enters at the noisiest end. ``F + S − f`` iterations; the first ``S − f``
outputs are warm-up. The queue is initialised from a base ``f``-frame video (DDIM, first prompt).
With several local prompts the whole queue switches prompt when the output index crosses a
segment boundary.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from syncos_jax import schedules as S
from syncos_jax.backbones.protocol import split_denoiser
from syncos_jax.chunking import ChunkLayout
from syncos_jax.guidance import calls_per_chunk, guided
from syncos_jax.parallel import shard_batch
from syncos_jax import validate as V
from syncos_jax.samplers import syncos
from syncos_jax.samplers.base import (
    Conditioning,
    SampleResult,
    config_from_options,
    check_inputs,
    first_nonfinite,
    frame_shape_of,
    is_key_batch,
    recorded_nonfinite,
    run_loop,
)

Array = jax.Array

DIAGNOSTICS = ("frame", "prompt", "nfe")
STAGE_BASE, STAGE_QUEUE = 4, 5  # stage ids of FIFOState.nonfinite: the base video's DDIM, a queue iteration

__all__ = ["FIFOConfig", "FIFONoise", "FIFOState", "RULES", "expected_nfe", "check_backbone", "fifo_levels", "init", "make_config",
           "nonfinite_message", "num_iterations", "run", "sample", "step"]


class FIFOConfig(NamedTuple):
    """Static settings of FIFO-Diffusion.

    Attributes:
      num_partitions: ``n``; ``S = n·f`` queue levels.
      lookahead: lookahead denoising (needs an even chunk length).
      eta: DDIM ``η`` of the per-frame steps (FIFO's code uses 1).
      guidance_scale: classifier-free guidance ``γ``.
      check_finite: raise after the run naming the first iteration with a NaN/Inf.
      diagnostics: names from :data:`DIAGNOSTICS` to record per iteration.
    """

    num_partitions: int = 4
    lookahead: bool = True
    eta: float = 1.0
    guidance_scale: float = 6.0
    check_finite: bool = False
    diagnostics: tuple = ()


class FIFONoise(NamedTuple):
    """Explicit noise replacing FIFO's random draws (each optional).

    Attributes:
      base: ``[f, H, W, C]`` ``x_T`` of the base video.
      queue: ``[Q, H, W, C]`` the noise of the initial queue (``Q = S + f/2`` with lookahead, else ``S``).
      push: ``[F + S − f, H, W, C]`` the fresh noise pushed at each iteration.
    """

    base: Optional[Array] = None
    queue: Optional[Array] = None
    push: Optional[Array] = None


class FIFOState(NamedTuple):
    """FIFO state between iterations.

    Attributes:
      queue: ``[Q, H, W, C]`` frame latents; slot ``q`` sits at level ``τ_{max(q − L, 0)}``.
      outputs: ``[F, H, W, C]`` the output video so far.
      step: int32 iteration index.
      key: PRNG key; iteration ``i`` uses ``fold_in(key, i)``.
      nfe: int32 backbone evaluations so far (the base video's included).
      nonfinite: int32 ``[2]`` ``(index, stage)`` of the first NaN/Inf, ``-1`` if none: ``(DDIM step,
        STAGE_BASE)`` in the base video or ``(iteration, STAGE_QUEUE)`` in the queue
        (:func:`nonfinite_message` words it).
    """

    queue: Array
    outputs: Array
    step: Array
    key: Array
    nfe: Array
    nonfinite: Array


# Type and range of every setting (see syncos_jax.validate).
RULES = {
    "num_partitions": V.integer(1, 10_000),
    "lookahead": V.boolean(),
    "eta": V.real(0.0, 1.0),
    "guidance_scale": V.real(0.0),
    "check_finite": V.boolean(),
    "diagnostics": V.names(DIAGNOSTICS),
}


def make_config(**options) -> FIFOConfig:
    """Returns a validated :class:`FIFOConfig`.

    Raises:
      TypeError: for an unknown option.
      OptionError: (a ``ValueError``) for a value of the wrong type or out of range (:data:`RULES`).
    """
    config_from_options(FIFOConfig, options, "FIFO")  # unknown names first
    return config_from_options(FIFOConfig, V.check_options(RULES, options), "FIFO")


class _Plan(NamedTuple):
    """Static index arrays of the queue (numpy)."""

    context: int  # L = f/2 with lookahead, else 0
    size: int  # Q
    windows: np.ndarray  # [R, f] slot indices
    write: np.ndarray  # [R, w] slot indices written back
    write_pos: np.ndarray  # [w] positions within a window that are written
    level: np.ndarray  # [Q] index into τ of each slot's level
    target: np.ndarray  # [Q] index into τ of each slot's step target


def _plan(f: int, cfg: FIFOConfig) -> _Plan:
    S_levels = cfg.num_partitions * f
    if cfg.lookahead:
        if f % 2:
            raise ValueError(f"lookahead needs an even chunk length, got chunk_frames={f}; pass lookahead=False.")
        L, hop = f // 2, f // 2
    else:
        L, hop = 0, f
    Q = S_levels + L
    starts = np.arange(0, Q - f + 1, hop)
    windows = starts[:, None] + np.arange(f)[None]
    write_pos = np.arange(f // 2, f) if cfg.lookahead else np.arange(f)
    p = np.maximum(np.arange(Q) - L, 0)
    return _Plan(L, Q, windows, windows[:, write_pos], write_pos, p, np.maximum(p - 1, 0))


def fifo_levels(schedule: S.Schedule, num_levels: int) -> Array:
    """Returns the ascending FIFO grid ``τ: [S]`` in model time.

    VP: ``round(linspace(0, T − 1, S))`` (FIFO's code). Flow: the schedule's own grid, reversed,
    which must then have exactly ``S`` steps.
    """
    if schedule.kind == "vp":
        return jnp.asarray(np.round(np.linspace(0, schedule.num_train_timesteps - 1, num_levels)), schedule.timesteps.dtype)
    if schedule.num_steps != num_levels:
        raise ValueError(
            f"FIFO on a flow schedule uses its grid as the queue levels: build it with num_inference_steps="
            f"{num_levels} (num_partitions × chunk_frames), got {schedule.num_steps}."
        )
    return schedule.timesteps[::-1]


def check_backbone(defn, layout: ChunkLayout) -> None:
    """Raises ``ValueError`` unless the backbone takes per-frame timesteps and chunks of the layout's length."""
    if not defn.per_frame_timesteps:
        raise ValueError(
            "FIFO-Diffusion needs a backbone that accepts per-frame timesteps (t: [B, f]); this one does not "
            "(per_frame_timesteps=False)."
        )
    if defn.frames_per_chunk is not None and defn.frames_per_chunk != layout.chunk_frames:
        raise ValueError(
            f"the layout's chunk_frames={layout.chunk_frames} differs from the backbone's frames_per_chunk="
            f"{defn.frames_per_chunk}."
        )


def num_iterations(layout: ChunkLayout, cfg: FIFOConfig) -> int:
    """Returns ``F + S − f``, the number of queue iterations."""
    return layout.num_frames + cfg.num_partitions * layout.chunk_frames - layout.chunk_frames


def expected_nfe(schedule: S.Schedule, layout: ChunkLayout, **options) -> int:
    """Returns ``c·(S_base + (F + S − f)·R)``: base video steps plus one call per window per iteration."""
    cfg = make_config(**options)
    c = calls_per_chunk(cfg.guidance_scale)
    plan = _plan(layout.chunk_frames, cfg)
    return int(c * (schedule.num_steps + num_iterations(layout, cfg) * plan.windows.shape[0]))


def init(
    key: Array,
    denoiser,
    schedule: S.Schedule,
    layout: ChunkLayout,
    cond: Conditioning,
    frame_shape: Sequence[int],
    config: FIFOConfig = FIFOConfig(),
    *,
    noise: FIFONoise = FIFONoise(),
    mesh=None,
) -> FIFOState:
    """Returns the initial state: a base ``f``-frame video (DDIM over the schedule's grid, first
    local prompt) noised into the queue, ``Q[p] = α_{τ_p}·x̂[max(0, p − (S − f))] + σ_{τ_p}·ε``."""
    defn, params = split_denoiser(denoiser)
    check_backbone(defn, layout)
    f = layout.chunk_frames
    plan = _plan(f, config)
    k_base, k_queue, k_run = jax.random.split(key, 3)
    first = Conditioning(prompts=cond.select(jnp.zeros((1,), jnp.int32)), uncond=cond.uncond)
    base_layout = ChunkLayout(f, f, f)
    base_cfg = syncos.make_config(stages=(1, 3), guidance_scale=config.guidance_scale, check_finite=config.check_finite)
    st = syncos.init(k_base, base_layout, frame_shape, initial_noise=noise.base)
    st, _ = syncos.run((defn, params), schedule, base_layout, first, st, config=base_cfg, mesh=mesh)
    base = st.x
    # a NaN/Inf in the base video is recorded as (its DDIM step, STAGE_BASE)
    flag = jnp.where(st.nonfinite[0] >= 0, jnp.stack([st.nonfinite[0], jnp.int32(STAGE_BASE)]), -1).astype(jnp.int32)
    tau = fifo_levels(schedule, config.num_partitions * f)
    alpha, sigma = schedule.alpha_sigma(tau[plan.level])  # [Q]
    S_levels = config.num_partitions * f
    src = np.maximum(0, plan.level - (S_levels - f))
    eps = jax.random.normal(k_queue, (plan.size,) + tuple(frame_shape)) if noise.queue is None else jnp.asarray(noise.queue)
    if eps.shape != (plan.size,) + tuple(frame_shape):
        raise ValueError(f"noise.queue has shape {tuple(eps.shape)}, expected {(plan.size,) + tuple(frame_shape)}.")
    queue = S.append_dims(alpha, 4) * base[src] + S.append_dims(sigma, 4) * eps
    return FIFOState(
        queue=queue,
        outputs=jnp.zeros((layout.num_frames,) + tuple(frame_shape), jnp.float32),
        step=jnp.zeros((), jnp.int32),
        key=k_run,
        nfe=st.nfe,
        nonfinite=flag,
    )


def step(
    state: FIFOState,
    denoiser,
    schedule: S.Schedule,
    layout: ChunkLayout,
    cond: Conditioning,
    config: FIFOConfig = FIFOConfig(),
    *,
    push_noise: Optional[Array] = None,
    mesh=None,
) -> tuple[FIFOState, dict]:
    """Returns ``(next state, diagnostics)``: one FIFO iteration (all windows in one backbone call)."""
    defn, params = split_denoiser(denoiser)
    f, F = layout.chunk_frames, layout.num_frames
    plan = _plan(f, config)
    S_levels = config.num_partitions * f
    i = state.step
    k_push, k_eta = jax.random.split(jax.random.fold_in(state.key, i))
    tau = fifo_levels(schedule, S_levels)
    R = plan.windows.shape[0]

    out_index = i - (S_levels - f)
    prompt = jnp.clip((out_index * cond.num_prompts) // F, 0, cond.num_prompts - 1)
    cond_c = cond.select(jnp.full((R,), prompt))
    cond_u = cond.null(R) if calls_per_chunk(config.guidance_scale) == 2 else None

    xw = state.queue[plan.windows]  # [R, f, H, W, C]
    tw = tau[plan.level[plan.windows]]  # [R, f] per-frame model times
    a_t, s_t = schedule.alpha_sigma(tw)
    a_s, s_s = schedule.alpha_sigma(tau[plan.target[plan.windows]])

    def denoise(x, tt, cc):
        return shard_batch(defn.apply(params, shard_batch(x, mesh), shard_batch(tt, mesh), shard_batch(cc, mesh)), mesh)

    out = guided(denoise, xw, tw, cond_c, cond_u, config.guidance_scale)
    x0, eps = S.to_x0_eps(out, xw, a_t, s_t, schedule.prediction_type)
    if config.eta > 0 and schedule.kind != "vp":
        raise ValueError(f"eta={config.eta} is only defined for VP schedules; use eta=0 with a flow schedule.")
    new = S.ddim_step(x0, eps, a_s, s_s, eta=config.eta, alpha_t=a_t, sigma_t=s_t, key=k_eta)
    queue = state.queue.at[plan.write.ravel()].set(new[:, plan.write_pos].reshape((-1,) + new.shape[2:]))
    frame = queue[plan.context]
    outputs = jax.lax.dynamic_update_index_in_dim(state.outputs, frame, jnp.clip(out_index, 0, F - 1), 0)
    outputs = jnp.where(out_index >= 0, outputs, state.outputs)
    fresh = jax.random.normal(k_push, frame.shape, frame.dtype) if push_noise is None else push_noise[i]
    queue = jnp.concatenate([queue[1:], fresh[None]], axis=0)
    nfe = state.nfe + R * calls_per_chunk(config.guidance_scale)
    flag = first_nonfinite(state.nonfinite, i, STAGE_QUEUE, queue) if config.check_finite else state.nonfinite
    wanted = {"frame": lambda: frame, "prompt": lambda: prompt, "nfe": lambda: nfe - state.nfe}
    diag = {n: wanted[n]() for n in config.diagnostics}
    return FIFOState(queue, outputs, i + 1, state.key, nfe.astype(jnp.int32), flag), diag


@functools.partial(jax.jit, static_argnames=("defn", "layout", "config", "progress", "mesh", "batched"))
def _run(params, schedule, cond, state, stop, push, *, defn, layout, config, progress, mesh, batched):
    def one(st, pn):
        return step(st, (defn, params), schedule, layout, cond, config, push_noise=pn, mesh=mesh)

    step_fn = jax.vmap(one, in_axes=(0, None if push is None else 0)) if batched else one
    return run_loop(lambda st: step_fn(st, push), state, stop, num_iterations(layout, config), progress)


def run(
    denoiser,
    schedule: S.Schedule,
    layout: ChunkLayout,
    cond: Conditioning,
    state: FIFOState,
    *,
    config: FIFOConfig,
    stop: Optional[int] = None,
    push_noise: Optional[Array] = None,
    progress: Optional[Callable[[int], None]] = None,
    mesh=None,
) -> tuple[FIFOState, dict]:
    """Runs compiled iterations from ``state.step`` to ``stop`` (default: the end). Returns ``(state, diagnostics)``.

    One executable serves a full run, a run stopped after iteration ``k`` and a resumed one, so
    a resumed video is bit-identical to an uninterrupted one (as :func:`syncos_jax.samplers.syncos.run`).
    """
    defn, params = split_denoiser(denoiser)
    check_inputs(defn, schedule, cond)
    total = num_iterations(layout, config)
    stop = total if stop is None else int(stop)
    if not 0 <= stop <= total:
        raise ValueError(f"stop={stop} must be between 0 and the number of iterations {total}.")
    if push_noise is not None:
        expected = (total,) + tuple(state.queue.shape[-3:])
        if tuple(jnp.shape(push_noise)[-4:]) != expected:
            raise ValueError(f"noise.push has shape {tuple(jnp.shape(push_noise))}, expected [..., {expected}].")
    batched = jnp.ndim(state.step) == 1
    return _run(params, schedule, cond, state, jnp.asarray(stop, jnp.int32), push_noise, defn=defn, layout=layout,
                config=config, progress=progress, mesh=mesh, batched=batched)


def nonfinite_message(flag, schedule: S.Schedule, layout: ChunkLayout, config: FIFOConfig) -> Optional[str]:
    """Returns the sentence naming where the first NaN/Inf of ``flag`` (``FIFOState.nonfinite``) appeared, or ``None``."""
    found = recorded_nonfinite(flag)
    if found is None:
        return None
    index, stage = found
    if stage == STAGE_BASE:
        t = np.asarray(schedule.timesteps)[index]
        return (f"non-finite value (NaN/Inf) first appeared in FIFO's base video, at DDIM step {index} "
                f"(grid time t={t}) of {schedule.num_steps}.")
    S_levels = config.num_partitions * layout.chunk_frames
    tau = np.asarray(fifo_levels(schedule, S_levels))
    frame = index - (S_levels - layout.chunk_frames)
    where = f"output frame {frame}" if frame >= 0 else f"warm-up, {-frame} iterations before the first output frame"
    return (f"non-finite value (NaN/Inf) first appeared at FIFO iteration {index} of {num_iterations(layout, config)} "
            f"({where}) in the queue update (every slot steps down one level; levels t={tau[0]}..{tau[-1]}).")


def sample(
    denoiser,
    schedule: S.Schedule,
    layout: ChunkLayout,
    cond: Conditioning,
    *,
    key: Array,
    progress: Optional[Callable[[int], None]] = None,
    noise: FIFONoise = FIFONoise(),
    frame_shape: Optional[Sequence[int]] = None,
    mesh=None,
    **options,
) -> SampleResult:
    """Returns a :class:`SampleResult` sampled with FIFO-Diffusion (options: :class:`FIFOConfig`).

    ``layout`` gives ``F`` and the window length ``f`` (its stride is unused). ``key`` may be a
    ``[batch]`` of keys (then every given noise array has a leading batch axis).
    """
    cfg = make_config(**options)
    defn, params = split_denoiser(denoiser)
    check_backbone(defn, layout)
    check_inputs(defn, schedule, cond)
    shape = frame_shape_of(denoiser, frame_shape, noise.base)
    if noise.push is not None:
        expected = (num_iterations(layout, cfg),) + shape
        if tuple(jnp.shape(noise.push)[-4:]) != expected:
            raise ValueError(f"noise.push has shape {tuple(jnp.shape(noise.push))}, expected [..., {expected}].")
    batched = is_key_batch(key)
    make = functools.partial(init, denoiser=(defn, params), schedule=schedule, layout=layout, cond=cond,
                             frame_shape=shape, config=cfg, mesh=mesh)
    if batched:
        axes = FIFONoise(*(None if a is None else 0 for a in (noise.base, noise.queue, None)))
        state = jax.vmap(lambda k, nz: make(k, noise=nz), in_axes=(0, axes))(key, noise._replace(push=None))
    else:
        state = make(key, noise=noise._replace(push=None))
    state, diag = run((defn, params), schedule, layout, cond, state, config=cfg, push_noise=noise.push,
                      progress=progress, mesh=mesh)
    if cfg.check_finite:
        message = nonfinite_message(state.nonfinite, schedule, layout, cfg)
        if message:
            raise FloatingPointError(message)
    if batched:
        diag = {n: jnp.moveaxis(v, 1, 0) for n, v in diag.items()}
    return SampleResult(latents=state.outputs, nfe=state.nfe, diagnostics=diag, state=state)
