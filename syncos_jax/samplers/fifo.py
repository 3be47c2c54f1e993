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
With several local prompts the whole queue switches prompt when the output index crosses an
event boundary (:func:`~syncos_jax.chunking.prompt_of_frame`; events may have any length).

:func:`build` returns a :class:`~syncos_jax.samplers.base.Sampler`. Its ``init(key, params)``
needs the backbone's params, because the queue starts from a sampled base video: whole-video
DDIM (:mod:`~syncos_jax.samplers.ddim`: :func:`~syncos_jax.samplers.syncos.codenoise`, then the
DDIM step) on ``f`` frames with the first local prompt.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from syncos_jax import schedules as S
from syncos_jax.chunking import ChunkLayout, prompt_of_frame
from syncos_jax.guidance import calls_per_chunk
from syncos_jax.prompts import Conditioning
from syncos_jax import validate as V
from syncos_jax.samplers import ddim
from syncos_jax.samplers.base import (
    Context,
    Sampler,
    check_inputs,
    config_from_options,
    declared_frame_shape,
    denoiser_def,
    first_nonfinite,
    make_predict,
    make_spec,
    recorded_nonfinite,
    run,
    start_frame_shape,
)

Array = jax.Array

STAGE_BASE, STAGE_QUEUE = 4, 5  # stage ids of FIFOState.nonfinite: the base video's DDIM, a queue iteration

__all__ = ["DIAGNOSTICS", "SETTINGS", "FIFOConfig", "FIFOInfo", "FIFOState", "QueuePlan", "RULES", "STAGE_BASE", "STAGE_QUEUE",
           "build", "check_backbone", "expected_nfe", "fifo_levels", "init_queue", "make_config", "nonfinite_message",
           "num_iterations", "queue_plan", "queue_step"]


class FIFOConfig(NamedTuple):
    """Static settings of FIFO-Diffusion.

    Attributes:
      num_partitions: ``n``; ``S = n·f`` queue levels.
      lookahead: lookahead denoising (needs an even chunk length).
      eta: DDIM ``η`` of the per-frame steps (FIFO's code uses 1; VP schedules only, else 0).
      guidance_scale: classifier-free guidance ``γ``.
      check_finite: raise after the run naming the first iteration with a NaN/Inf.
    """

    num_partitions: int = 4
    lookahead: bool = True
    eta: float = 1.0
    guidance_scale: float = 6.0
    check_finite: bool = False


class FIFOInfo(NamedTuple):
    """What one queue iteration reports.

    Attributes:
      frame: ``[H, W, C]`` the clean frame popped at this iteration (an output frame after warm-up).
      prompt: int32, the local prompt of the queue at this iteration.
      nfe: int32 backbone evaluations of this iteration.
    """

    frame: Array
    prompt: Array
    nfe: Array


DIAGNOSTICS = FIFOInfo._fields
SETTINGS = FIFOConfig._fields  # what build validates


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
}


def make_config(**options) -> FIFOConfig:
    """Returns a validated :class:`FIFOConfig`.

    Raises:
      UnknownOption: (a ``TypeError``) for an unknown option.
      OptionError: (a ``ValueError``) for a value of the wrong type or out of range (:data:`RULES`).
    """
    return config_from_options(FIFOConfig, options, "fifo", RULES)


class QueuePlan(NamedTuple):
    """Static index arrays of the queue (numpy)."""

    context: int  # L = f/2 with lookahead, else 0
    size: int  # Q
    windows: np.ndarray  # [R, f] slot indices
    write: np.ndarray  # [R, w] slot indices written back
    write_pos: np.ndarray  # [w] positions within a window that are written
    level: np.ndarray  # [Q] index into τ of each slot's level
    target: np.ndarray  # [Q] index into τ of each slot's step target


def queue_plan(f: int, cfg: FIFOConfig) -> QueuePlan:
    """Returns the queue's static index arrays for chunk length ``f``; raises for lookahead with an odd ``f``."""
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
    return QueuePlan(L, Q, windows, windows[:, write_pos], write_pos, p, np.maximum(p - 1, 0))


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


def expected_nfe(cfg: FIFOConfig, schedule: S.Schedule, layout: ChunkLayout) -> int:
    """Returns ``c·(S_base + (F + S − f)·R)``: base video steps plus one call per window per iteration."""
    c = calls_per_chunk(cfg.guidance_scale)
    plan = queue_plan(layout.chunk_frames, cfg)
    return int(c * (schedule.num_steps + num_iterations(layout, cfg) * plan.windows.shape[0]))


def init_queue(key: Array, base_video: Array, schedule: S.Schedule, layout: ChunkLayout, cfg: FIFOConfig,
               queue_noise: Optional[Array] = None) -> Array:
    """Returns the initial queue ``Q[p] = α_{τ_p}·x̂[max(0, p − (S − f))] + σ_{τ_p}·ε``, ``[Q, H, W, C]``,
    from the base video ``x̂: [f, H, W, C]`` (``queue_noise`` replaces the draw of ``ε``)."""
    f = layout.chunk_frames
    plan = queue_plan(f, cfg)
    frame_shape = tuple(base_video.shape[1:])
    tau = fifo_levels(schedule, cfg.num_partitions * f)
    alpha, sigma = schedule.alpha_sigma(tau[plan.level])  # [Q]
    src = np.maximum(0, plan.level - (cfg.num_partitions * f - f))
    eps = jax.random.normal(key, (plan.size,) + frame_shape) if queue_noise is None else jnp.asarray(queue_noise)
    if eps.shape != (plan.size,) + frame_shape:
        raise ValueError(f"queue_noise has shape {tuple(eps.shape)}, expected {(plan.size,) + frame_shape}.")
    return S.append_dims(alpha, 4) * base_video[src] + S.append_dims(sigma, 4) * eps


def queue_step(state: FIFOState, predict, schedule: S.Schedule, layout: ChunkLayout, bounds, cfg: FIFOConfig,
               push_noise: Optional[Array] = None) -> tuple[FIFOState, FIFOInfo]:
    """One FIFO iteration: every window through ``predict`` in one batched call, a DDIM step of
    every slot down one level, the clean slot popped as an output frame, fresh noise pushed.

    Args:
      predict: the backbone at the edge (:func:`~syncos_jax.samplers.base.make_predict`).
      bounds: ``(start, end)`` of each local prompt's frames; the queue takes the prompt of its output frame.
      push_noise: ``[F + S − f, H, W, C]`` explicit pushed noise (replaces the draws).
    """
    f, F = layout.chunk_frames, layout.num_frames
    plan = queue_plan(f, cfg)
    S_levels = cfg.num_partitions * f
    i = state.step
    k_push, k_eta = jax.random.split(jax.random.fold_in(state.key, i))
    tau = fifo_levels(schedule, S_levels)
    R = plan.windows.shape[0]

    out_index = i - (S_levels - f)
    prompt = jnp.asarray(prompt_of_frame(out_index, bounds), jnp.int32)
    xw = state.queue[plan.windows]  # [R, f, H, W, C]
    tw = tau[plan.level[plan.windows]]  # [R, f] per-frame model times
    a_t, s_t = schedule.alpha_sigma(tw)
    a_s, s_s = schedule.alpha_sigma(tau[plan.target[plan.windows]])
    x0, eps = predict(xw, tw, jnp.full((R,), prompt))
    new = S.ddim_step(x0, eps, a_s, s_s, eta=cfg.eta, alpha_t=a_t, sigma_t=s_t, key=k_eta)
    queue = state.queue.at[plan.write.ravel()].set(new[:, plan.write_pos].reshape((-1,) + new.shape[2:]))
    frame = queue[plan.context]
    outputs = jax.lax.dynamic_update_index_in_dim(state.outputs, frame, jnp.clip(out_index, 0, F - 1), 0)
    outputs = jnp.where(out_index >= 0, outputs, state.outputs)
    fresh = jax.random.normal(k_push, frame.shape, frame.dtype) if push_noise is None else push_noise[i]
    queue = jnp.concatenate([queue[1:], fresh[None]], axis=0)
    nfe = state.nfe + R * calls_per_chunk(cfg.guidance_scale)
    flag = first_nonfinite(state.nonfinite, i, STAGE_QUEUE, queue) if cfg.check_finite else state.nonfinite
    return FIFOState(queue, outputs, i + 1, state.key, nfe.astype(jnp.int32), flag), FIFOInfo(frame, prompt, nfe - state.nfe)


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


def build(denoiser, schedule: S.Schedule, layout: ChunkLayout, cond: Conditioning, *, mesh=None,
          frame_shape: Optional[Sequence[int]] = None, push_noise: Optional[Array] = None, **options) -> Sampler:
    """Returns FIFO-Diffusion as a :class:`~syncos_jax.samplers.base.Sampler` (options: :class:`FIFOConfig`).

    ``layout`` gives ``F`` and the window length ``f`` (its stride is unused). ``push_noise``
    (``[F + S − f, H, W, C]``) replaces the pushed noise draws. The sampler's
    ``init(key, params, *, base_video_noise=None, queue_noise=None)`` samples the base video with the
    backbone's params (``base_video_noise``: its ``x_T``, ``[f, H, W, C]``; ``queue_noise``: the initial
    queue's noise, ``[Q, H, W, C]``).
    """
    cfg = make_config(**options)
    defn = denoiser_def(denoiser)
    check_backbone(defn, layout)
    check_inputs(defn, schedule, cond)
    if cfg.eta > 0 and schedule.kind != "vp":
        raise V.OptionError("eta", cfg.eta, "0 with a flow schedule (η > 0 is only defined for VP schedules)")
    f = layout.chunk_frames
    queue_plan(f, cfg)  # lookahead needs an even f
    fifo_levels(schedule, cfg.num_partitions * f)  # a flow grid must have S = n·f steps
    total = num_iterations(layout, cfg)
    shape = start_frame_shape(declared_frame_shape(denoiser, frame_shape))
    if push_noise is not None and tuple(jnp.shape(push_noise)) != (total,) + shape:
        raise ValueError(f"push_noise has shape {tuple(jnp.shape(push_noise))}, expected {(total,) + shape}.")
    bounds = cond.segments(layout.num_frames)
    first = Conditioning(prompts=cond.select(jnp.zeros((1,), jnp.int32)), uncond=cond.uncond)
    base_video = ddim.build(defn, schedule, ChunkLayout(f, f, f), first, guidance_scale=cfg.guidance_scale,
                            check_finite=cfg.check_finite, mesh=mesh, frame_shape=shape)

    def init(key, params=None, *, base_video_noise=None, queue_noise=None):
        if params is None:
            raise ValueError("FIFO's init samples its base video: pass the backbone's params, init(key, params).")
        k_base, k_queue, k_run = jax.random.split(key, 3)
        st, _ = run(base_video, base_video.init(k_base, initial_noise=base_video_noise), params)
        # a NaN/Inf in the base video is recorded as (its DDIM step, STAGE_BASE)
        flag = jnp.where(st.nonfinite[0] >= 0, jnp.stack([st.nonfinite[0], jnp.int32(STAGE_BASE)]), -1).astype(jnp.int32)
        return FIFOState(
            queue=init_queue(k_queue, st.x, schedule, layout, cfg, queue_noise),
            outputs=jnp.zeros((layout.num_frames,) + shape, jnp.float32),
            step=jnp.zeros((), jnp.int32),
            key=k_run,
            nfe=st.nfe,
            nonfinite=flag,
        )

    def step(state, params):
        predict = make_predict(defn, params, schedule, cond, cfg.guidance_scale, mesh)
        return queue_step(state, predict, schedule, layout, bounds, cfg, push_noise)

    spec = make_spec(build, defn, layout, dict(cfg._asdict(), mesh=mesh, frame_shape=shape))  # the validated settings
    context = Context(schedule, cond, {} if push_noise is None else {"push_noise": push_noise})
    return Sampler(init, step, total, expected_nfe(cfg, schedule, layout), spec, context, lambda state: state.outputs,
                   lambda flag: nonfinite_message(flag, schedule, layout, cfg), FIFOInfo._fields)
