"""What every sampler shares: conditioning, state, result, the compiled loop, progress and finite checks.

A sampler is a pair of pure functions over a NamedTuple state —
``init(...) -> State`` and ``step(state, ...) -> State`` — and ``sample(...)``, the convenience
loop: ``init`` + one compiled ``lax.fori_loop`` of ``step`` inside one ``jax.jit``. The loop takes
dynamic bounds, so the same executable runs a whole trajectory, stops after step ``k``, or
resumes from a restored state (bit-identical results; see :mod:`syncos_jax.checkpoint`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from syncos_jax.chunking import ChunkLayout, assign_prompts
from syncos_jax.prompts import DEFAULT_TEMPLATE, StructuredPrompt, join_prompt

Array = jax.Array

__all__ = [
    "Conditioning",
    "build_conditioning",
    "SampleResult",
    "STAGE_NAMES",
    "chunk_conditioning",
    "check_inputs",
    "finite_error",
    "nonfinite_message",
    "recorded_nonfinite",
    "frame_shape_of",
    "progress_hook",
]

# Stage ids used by the finite-value guard and in error messages.
STAGE_NAMES = {0: "initial noise", 1: "stage 1 (fused x̂_0)", 2: "stage 2 (CSD refinement)", 3: "stage 3 (re-noising)"}


class Conditioning(NamedTuple):
    """Conditioning of a long video with ``P`` local prompts.

    Attributes:
      prompts: pytree whose leaves have leading axis ``P``: one entry per local prompt (already
        joined with the global prompt by the conditioning builder, e.g. text embeddings or, for the
        Gaussian backbone, prompt ids).
      uncond: pytree of the same structure with leading axis 1: the unconditional (null) prompt.
        Needed only when ``guidance_scale != 1``.

    Ids (prompt ids, token ids) must be in the backbone's range. ``sample`` and ``run`` check
    concrete arrays before tracing (:func:`check_inputs`) and raise ``ValueError``; a caller who
    steps a sampler inside their own ``jax.jit`` holds tracers, and ids out of range are then
    clamped by JAX's indexing, silently: that contract is the caller's.
    """

    prompts: Any
    uncond: Any = None

    @property
    def num_prompts(self) -> int:
        """``P``, the number of local prompts."""
        leaves = jax.tree_util.tree_leaves(self.prompts)
        if not leaves:
            raise ValueError("Conditioning.prompts has no arrays.")
        return int(jnp.shape(leaves[0])[0])

    def select(self, prompt_ids) -> Any:
        """Returns the conditional pytree for ``prompt_ids: [B]`` (leading axis ``B``)."""
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[prompt_ids], self.prompts)

    def null(self, batch: int) -> Any:
        """Returns the unconditional pytree broadcast to leading axis ``batch``."""
        if self.uncond is None:
            raise ValueError("guidance_scale != 1 needs Conditioning.uncond (the null prompt).")
        return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[:1], (batch,) + jnp.shape(a)[1:]), self.uncond)


def build_conditioning(
    encode: Callable[[list], Any],
    prompt: StructuredPrompt,
    *,
    structured: bool = True,
    template: str = DEFAULT_TEMPLATE,
    negative_prompt: str = "",
) -> Conditioning:
    """Returns the :class:`Conditioning` of a structured prompt: the conditioning builder.

    Args:
      encode: ``encode(texts) -> pytree`` with leading axis ``len(texts)`` (a text encoder,
        a tokenizer + embedding, ...).
      prompt: the :class:`~syncos_jax.prompts.StructuredPrompt`.
      structured: join each local prompt with the global one (``template``); ``False`` uses the
        local prompts alone (the paper's "w/o structured prompt" ablation).
      template: ``"{global} {local}"`` by default.
      negative_prompt: the text of the unconditional prompt (empty by default).
    """
    texts = [join_prompt(prompt.global_prompt, p, structured=structured, template=template) for p in prompt.local_prompts]
    return Conditioning(prompts=encode(texts), uncond=encode([negative_prompt]))


def chunk_conditioning(cond: Conditioning, layout: ChunkLayout, guided: bool) -> tuple[Any, Any]:
    """Returns ``(cond, uncond)`` per chunk, leading axis ``N`` (ALGORITHM.md §2 prompt assignment).

    ``uncond`` is ``None`` when not ``guided`` (``guidance_scale == 1``)."""
    ids = assign_prompts(layout, cond.num_prompts)
    uncond = cond.null(layout.num_chunks) if guided else None
    return cond.select(ids), uncond


class SampleResult(NamedTuple):
    """What ``sample`` returns.

    Attributes:
      latents: ``[F, H, W, C]`` (or ``[batch, F, H, W, C]``) the final latents.
      nfe: the number of backbone evaluations (a CFG pair counts as two).
      diagnostics: dict of per-step arrays the caller asked for (leading axis = steps).
      state: the final sampler state (for checkpointing or further steps).
    """

    latents: Array
    nfe: Array
    diagnostics: dict
    state: Any


def is_key_batch(key) -> bool:
    """Returns whether ``key`` is a ``[batch]`` of PRNG keys (typed ``[B]`` or raw ``[B, 2]``) rather than one key."""
    key = jnp.asarray(key)
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (1 if typed else 2)


def config_from_options(cls, options: dict, sampler: str):
    """Returns ``cls(**options)`` (a NamedTuple config), rejecting unknown keys and making sequences tuples."""
    unknown = sorted(set(options) - set(cls._fields))
    if unknown:
        raise TypeError(f"unknown {sampler} option(s) {unknown}; expected some of {list(cls._fields)}.")
    opts = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()}
    return cls(**opts)


def frame_shape_of(denoiser: Any, frame_shape: Optional[Sequence[int]], initial_noise) -> tuple[int, ...]:
    """Returns ``(H, W, C)``: given explicitly, from ``initial_noise``, or from ``denoiser.frame_shape``."""
    if frame_shape is not None:
        return tuple(int(s) for s in frame_shape)
    if initial_noise is not None:
        return tuple(int(s) for s in jnp.shape(initial_noise)[-3:])
    shape = getattr(denoiser, "frame_shape", None)
    if shape is None:
        raise ValueError("frame_shape=(H, W, C) is needed: the denoiser does not declare one and no initial_noise was given.")
    return tuple(int(s) for s in shape)


def progress_hook(progress: Optional[Callable[[int], None]], step: Array) -> None:
    """Calls ``progress(step + 1)`` from inside compiled code (``jax.debug.callback``), if given."""
    if progress is not None:
        jax.debug.callback(lambda s: progress(int(s) + 1), step, ordered=True)


def first_nonfinite(flag: Array, step: Array, stage: int, value: Array) -> Array:
    """Returns the updated ``[2]`` int32 record ``(step, stage)`` of the first non-finite value (``-1`` if none)."""
    bad = ~jnp.all(jnp.isfinite(value))
    fresh = (flag[0] < 0) & bad
    return jnp.where(fresh, jnp.array([0, stage], jnp.int32) + jnp.array([1, 0], jnp.int32) * step, flag)


def recorded_nonfinite(flag) -> Optional[tuple[int, int]]:
    """Returns ``(index, stage)`` of the first NaN/Inf recorded in ``flag`` (``[2]``, or ``[batch, 2]``:
    the first bad run), or ``None`` if none was recorded."""
    flag = np.asarray(flag)
    if flag.ndim > 1:
        bad = np.nonzero(flag[:, 0] >= 0)[0]
        if bad.size == 0:
            return None
        flag = flag[bad[0]]
    return None if int(flag[0]) < 0 else (int(flag[0]), int(flag[1]))


def nonfinite_message(flag, timesteps) -> Optional[str]:
    """Returns the sentence naming the step, grid time and stage recorded in ``flag`` (``[2]`` or
    ``[batch, 2]``, the first bad run), or ``None`` if no NaN/Inf was recorded."""
    found = recorded_nonfinite(flag)
    if found is None:
        return None
    step, stage = found
    ts = np.asarray(timesteps)
    t = ts[step] if step < ts.shape[0] else "end"
    return f"non-finite value (NaN/Inf) first appeared at step {step} (grid time t={t}) in {STAGE_NAMES.get(stage, stage)}."


def finite_error(flag, timesteps) -> None:
    """Raises ``FloatingPointError`` naming the step, grid time and stage recorded in ``flag`` (if any)."""
    message = nonfinite_message(flag, timesteps)
    if message:
        raise FloatingPointError(message)


def _is_concrete(tree) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def check_inputs(defn, schedule, cond: Conditioning) -> None:
    """Checks what a sampler can check before tracing; raises ``ValueError`` naming the problem.

    * the backbone's ``prediction_type`` must be the schedule's: its outputs are read through the
      schedule's conversion (a v-prediction model under a flow schedule would be read as a
      velocity of another process, silently);
    * where the conditioning arrays are concrete, the backbone's ``check_cond`` (if it declares
      one) range-checks them — prompt ids, token ids. Inside ``jax.jit`` they are tracers and the
      contract is the caller's: ids out of range are clamped by JAX's indexing, not reported.
    """
    if defn.prediction_type != schedule.prediction_type:
        raise ValueError(
            f"the backbone predicts {defn.prediction_type!r} but the schedule is a {schedule.kind!r} schedule of "
            f"{schedule.prediction_type!r} outputs; use the schedule the backbone was trained with."
        )
    check = getattr(defn, "check_cond", None)
    if check is None:
        return
    for name, tree in (("cond.prompts", cond.prompts), ("cond.uncond", cond.uncond)):
        if tree is not None and _is_concrete(tree):
            check(tree, name)


def run_loop(
    step_fn: Callable[[Any], tuple[Any, dict]],
    state: Any,
    stop: Array,
    num_steps: int,
    progress: Optional[Callable[[int], None]] = None,
) -> tuple[Any, dict]:
    """Runs ``step_fn`` from ``state.step`` up to ``stop`` (exclusive) in one ``lax.fori_loop``.

    Args:
      step_fn: ``state -> (state, diagnostics dict)``; may be vmapped (then ``state.step`` is ``[B]``,
        all equal).
      state: the start state (a NamedTuple with an int ``step`` field).
      stop: the step index to stop at (traced: the same executable runs, stops and resumes).
      num_steps: ``S``, the size of the per-step diagnostic buffers.
      progress: called with the number of finished steps after every step.

    Returns:
      ``(state, diagnostics)``; each diagnostic has leading axis ``S`` (entries outside the steps
      run are zero).
    """
    diag_shapes = jax.eval_shape(step_fn, state)[1]
    bufs = {n: jnp.zeros((num_steps,) + d.shape, d.dtype) for n, d in diag_shapes.items()}
    start = jnp.reshape(state.step, (-1,))[0]

    def body(i, carry):
        st, bf = carry
        st, d = step_fn(st)
        bf = {n: bf[n].at[i].set(d[n]) for n in bf}
        progress_hook(progress, i)
        return st, bf

    return jax.lax.fori_loop(start, stop, body, (state, bufs))
