"""One sampler interface: :class:`Sampler`, the backbone at the edge, and the generic compiled loop.

A sampler is built once from its context and then stepped, as in blackjax::

    sampler = syncos.build(defn, schedule, layout, cond, iters=20, frame_shape=(H, W, C))
    state = sampler.init(key)
    for _ in range(sampler.num_steps):
        state, info = sampler.step(state, params)

``build(denoiser_def, schedule, layout, cond, **options) -> Sampler`` validates every option
before anything is traced. ``init(key, params=None, ...) -> State`` and ``step(state, params) ->
(State, Info)`` are pure; ``State`` and ``Info`` are NamedTuples; params stay an argument, never
a baked constant. :func:`sample` is the one-line form (batched over keys and over conditioning,
one compiled loop, progress, finite checks), :func:`run` the resumable one: the same executable
runs a whole trajectory, stops after step ``k`` or resumes from a restored state, bit for bit
(see :mod:`syncos_jax.checkpoint`).

The compiled loop never closes over arrays: a :class:`Sampler` keeps its arrays in ``context``
(schedule, conditioning, explicit noise) and its static recipe in ``spec``, and :func:`run`
rebuilds it from both inside ``jax.jit``. So one executable serves every prompt, key and weight.

The backbone is converted at the edge (k-diffusion's rule): :func:`make_predict` turns the
denoiser, schedule, conditioning, guidance and mesh into ``predict(x, t, prompt_ids) -> (x̂_0, ε̂)``,
and the samplers see only that.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from syncos_jax import validate as V
from syncos_jax.backbones.protocol import DenoiserDef, split_denoiser
from syncos_jax.guidance import calls_per_chunk, guided, step_guidance
from syncos_jax.parallel import shard_batch
from syncos_jax.prompts import Conditioning

Array = jax.Array

__all__ = [
    "Context",
    "SampleResult",
    "STAGE_NAMES",
    "Sampler",
    "Spec",
    "UnknownOption",
    "check_inputs",
    "config_from_options",
    "count_above",
    "denoiser_def",
    "first_nonfinite",
    "declared_frame_shape",
    "is_key_batch",
    "make_predict",
    "make_spec",
    "nonfinite_message",
    "progress_hook",
    "rebuild",
    "start_frame_shape",
    "recorded_nonfinite",
    "run",
    "run_loop",
    "sample",
]

# Stage ids used by the finite-value guard and in error messages.
STAGE_NAMES = {0: "initial noise", 1: "stage 1 (fused x̂_0)", 2: "stage 2 (CSD refinement)", 3: "stage 3 (re-noising)"}


class Spec(NamedTuple):
    """The static (hashable) half of a built sampler: how to build it again inside ``jax.jit``.

    Attributes:
      build: the sampler module's ``build`` function.
      defn: the :class:`~syncos_jax.backbones.protocol.DenoiserDef`.
      layout: the chunk layout.
      options: the validated options as sorted ``(name, value)`` pairs (values hashable).
    """

    build: Callable[..., "Sampler"]
    defn: DenoiserDef
    layout: Any
    options: tuple


class Context(NamedTuple):
    """The array half of a built sampler (a pytree): what its functions close over.

    Attributes:
      schedule: the :class:`~syncos_jax.schedules.Schedule`.
      cond: the :class:`~syncos_jax.prompts.Conditioning`.
      noise: dict of explicit noise arrays bound at build time (e.g. SynCoS's ``base_noise``).
    """

    schedule: Any
    cond: Any
    noise: dict


class Sampler(NamedTuple):
    """A built sampler: pure functions bound to their context (blackjax's ``SamplingAlgorithm``).

    Attributes:
      init: ``init(key, params=None, **noise) -> State`` (FIFO needs ``params``: its queue starts
        from a sampled base video; the other samplers ignore them).
      step: ``step(state, params) -> (State, Info)``, one grid step (FIFO: one queue iteration).
      num_steps: how many steps make a whole run.
      expected_nfe: the closed-form number of backbone evaluations of a whole run (``None`` when
        the sampler was rebuilt from traced arrays inside ``jax.jit``).
      spec, context: the static recipe and the arrays, from which :func:`run` rebuilds the sampler
        inside its compiled loop (:func:`rebuild`).
      output: ``output(state) -> latents`` ``[F, H, W, C]``.
      nonfinite_message: ``nonfinite_message(flag) -> str | None``: the sentence naming where the
        NaN/Inf recorded in ``state.nonfinite`` appeared (``check_finite=True``).
      info_fields: the names of ``Info``'s fields (what ``diagnostics=`` may record).
    """

    init: Callable[..., Any]
    step: Callable[[Any, Any], tuple[Any, Any]]
    num_steps: int
    expected_nfe: Optional[int]
    spec: Spec
    context: Context
    output: Callable[[Any], Array]
    nonfinite_message: Callable[[Any], Optional[str]]
    info_fields: tuple


class SampleResult(NamedTuple):
    """What :func:`sample` returns.

    Attributes:
      latents: ``[F, H, W, C]`` (or ``[batch, F, H, W, C]``) the final latents.
      nfe: the number of backbone evaluations (a CFG pair counts as two).
      diagnostics: dict of the recorded ``Info`` fields (leading axis = steps; batch first when batched).
      state: the final sampler state (for checkpointing or further steps).
    """

    latents: Array
    nfe: Array
    diagnostics: dict
    state: Any


class UnknownOption(V.OptionError, TypeError):
    """An option the sampler does not have (a ``TypeError``, like an unknown keyword, and an
    :class:`~syncos_jax.validate.OptionError` naming the sampler's settings)."""


# ---------------------------------------------------------------------------------------------
# Building blocks of the builders
# ---------------------------------------------------------------------------------------------


def denoiser_def(denoiser: Any) -> DenoiserDef:
    """Returns the :class:`DenoiserDef` of a ``DenoiserDef``, a split pair or a ``Denoiser``."""
    if isinstance(denoiser, DenoiserDef):
        return denoiser
    return split_denoiser(denoiser)[0]


def config_from_options(cls, options: dict, sampler: str, rules: Optional[dict] = None):
    """Returns ``cls(**options)`` (a NamedTuple config): unknown names first (:class:`UnknownOption`),
    then each value against ``rules`` (:class:`~syncos_jax.validate.OptionError`); sequences become tuples."""
    unknown = sorted(set(options) - set(cls._fields))
    if unknown:
        raise UnknownOption(unknown[0], options[unknown[0]],
                            f"not a setting of {sampler} (its settings: {', '.join(cls._fields)})")
    if rules is not None:
        options = V.check_options(rules, options)
    return cls(**{k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()})


def _hashable(value):
    """``value`` with sequences as tuples and arrays (numpy, JAX, 0-d) as nested tuples of Python numbers."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return _hashable(np.asarray(value).tolist())
    return value


def make_spec(build: Callable[..., "Sampler"], defn: DenoiserDef, layout, options: dict) -> Spec:
    """Returns the :class:`Spec` that rebuilds a sampler: ``build``, ``defn``, ``layout`` and the
    static ``options`` it was given (sequences made tuples, so the spec can key ``jax.jit``)."""
    return Spec(build, defn, layout, tuple(sorted((k, _hashable(v)) for k, v in options.items())))


def is_key_batch(key) -> bool:
    """Returns whether ``key`` is a ``[batch]`` of PRNG keys (typed ``[B]`` or raw ``[B, 2]``) rather than one key."""
    key = jnp.asarray(key)
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (1 if typed else 2)


def declared_frame_shape(denoiser: Any, frame_shape: Optional[Sequence[int]]) -> Optional[tuple[int, ...]]:
    """Returns ``(H, W, C)``: ``frame_shape`` if given, else the denoiser's own ``frame_shape`` if it
    declares one (a ``Denoiser`` object; a bare ``DenoiserDef`` does not), else ``None``."""
    shape = frame_shape if frame_shape is not None else getattr(denoiser, "frame_shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def start_frame_shape(frame_shape: Optional[tuple], initial_noise=None) -> tuple[int, ...]:
    """Returns the ``(H, W, C)`` an ``init`` draws: the declared one, else ``initial_noise``'s; raises if neither."""
    if frame_shape is not None:
        return tuple(frame_shape)
    if initial_noise is not None:
        return tuple(int(s) for s in jnp.shape(initial_noise)[-3:])
    raise ValueError("frame_shape=(H, W, C) is needed: pass it to build (the denoiser does not declare one) "
                     "or give initial_noise.")


def _is_concrete(tree) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def check_inputs(defn, schedule, cond: Conditioning) -> None:
    """Checks what a builder can check before tracing; raises ``ValueError`` naming the problem.

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


def count_above(timesteps, threshold: Optional[float]) -> Optional[int]:
    """Returns how many grid times exceed ``threshold`` (all of them for ``None``), or ``None`` if
    ``timesteps`` is traced (a sampler rebuilt inside ``jax.jit`` has no closed-form NFE)."""
    if not _is_concrete(timesteps):
        return None
    ts = np.asarray(timesteps, np.float64)
    return int(ts.size if threshold is None else np.sum(ts > threshold))


def make_predict(defn: DenoiserDef, params: Any, schedule, cond: Conditioning, guidance_scale, mesh=None):
    """Returns ``predict(x, t, prompt_ids, step=0) -> (x̂_0, ε̂)``: the backbone at the edge.

    The one place where the denoiser's raw output meets the samplers: the conditioning of each
    item is selected by its local-prompt id, classifier-free guidance is applied
    (:func:`~syncos_jax.guidance.guided`; a per-step guidance tuple is indexed by ``step``), the
    batch is sharded over ``mesh``'s data axis, and the output is read through the schedule's
    prediction type (:meth:`~syncos_jax.schedules.Schedule.to_x0_eps`).

    Args (of ``predict``):
      x: ``[B, f, H, W, C]`` noisy chunks.
      t: ``[B]`` or ``[B, f]`` model times.
      prompt_ids: ``[B]`` int local-prompt index of each chunk (into ``cond.prompts``).
      step: the grid step (selects the guidance of a per-step guidance tuple).
    """

    def denoise(x, t, c):
        return shard_batch(defn.apply(params, shard_batch(x, mesh), shard_batch(t, mesh), shard_batch(c, mesh)), mesh)

    def predict(x, t, prompt_ids, step=0):
        B = x.shape[0]
        uncond = cond.null(B) if calls_per_chunk(guidance_scale) == 2 else None
        out = guided(denoise, x, t, cond.select(prompt_ids), uncond, step_guidance(guidance_scale, step))
        return schedule.to_x0_eps(out, x, t)

    return predict


# ---------------------------------------------------------------------------------------------
# Finite checks
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The generic loop: run and sample
# ---------------------------------------------------------------------------------------------


def progress_hook(progress: Optional[Callable[[int], None]], step: Array) -> None:
    """Calls ``progress(step + 1)`` from inside compiled code (``jax.debug.callback``), if given.

    The callback is unordered, so that a program sharded over several devices may carry it (JAX
    supports ordered effects on one device only): it runs once per step, but a consumer should not
    rely on the calls arriving in step order (take the largest count seen, as a progress bar does).
    """
    if progress is not None:
        jax.debug.callback(lambda s: progress(int(s) + 1), step)


def run_loop(
    step_fn: Callable[[Any], tuple[Any, Any]],
    state: Any,
    stop: Array,
    num_steps: int,
    progress: Optional[Callable[[int], None]] = None,
    record: Sequence[str] = (),
) -> tuple[Any, dict]:
    """Runs ``step_fn`` from ``state.step`` up to ``stop`` (exclusive) in one ``lax.fori_loop``.

    Args:
      step_fn: ``state -> (state, Info)``; may be vmapped (then ``state.step`` is ``[B]``, all equal).
      state: the start state (a NamedTuple with an int ``step`` field).
      stop: the step index to stop at (traced: the same executable runs, stops and resumes).
      num_steps: ``S``, the size of the per-step record buffers.
      progress: called with the number of finished steps after every step.
      record: names of ``Info`` fields to keep for every step.

    Returns:
      ``(state, diagnostics)``; each recorded field has leading axis ``S`` (entries outside the
      steps run are zero).
    """
    info_shapes = jax.eval_shape(step_fn, state)[1]._asdict()
    bufs = {n: jnp.zeros((num_steps,) + info_shapes[n].shape, info_shapes[n].dtype) for n in record}
    start = jnp.reshape(state.step, (-1,))[0]

    def body(i, carry):
        st, bf = carry
        st, info = step_fn(st)
        bf = {n: bf[n].at[i].set(getattr(info, n)) for n in bf}
        progress_hook(progress, i)
        return st, bf

    return jax.lax.fori_loop(start, stop, body, (state, bufs))


def rebuild(spec: Spec, context: Context) -> Sampler:
    """Returns the sampler of ``spec`` bound to ``context`` (traced arrays inside ``jax.jit`` or concrete)."""
    return spec.build(spec.defn, context.schedule, spec.layout, context.cond, **context.noise, **dict(spec.options))


@functools.partial(jax.jit, static_argnames=("spec", "num_steps", "batched", "cond_batched", "record", "progress"))
def _compiled_run(context, params, state, stop, *, spec, num_steps, batched, cond_batched, record, progress):
    def one(st, ctx):
        return rebuild(spec, ctx).step(st, params)

    if not batched:
        step_fn = functools.partial(one, ctx=context)
    else:  # the sampler is rebuilt per video, so a batched conditioning is sliced before the builder sees it
        axes = Context(None, jax.tree_util.tree_map(lambda _: 0, context.cond) if cond_batched else None, None)
        step_fn = functools.partial(_vmapped_step, one, axes=axes, context=context)
    return run_loop(step_fn, state, stop, num_steps, progress, record)


def _vmapped_step(one, st, *, axes, context):
    """``one`` vmapped over a batch of states, with the step counter shared (unbatched).

    Every video of a batch is at the same step, so the counter goes in once, not per video: a
    ``lax.cond`` on the step (SynCoS's stage 2 above ``t_min``) then stays a branch. With a batched
    counter, vmap would turn it into a select and run stage 2 at every step.
    """
    def shared(s, k, ctx):
        return one(s._replace(step=k), ctx)

    return jax.vmap(shared, in_axes=(0, None, axes))(st, st.step[0], context)


def _check_record(sampler: Sampler, record) -> tuple:
    """Returns ``record`` as a tuple of ``Info`` field names; raises ``OptionError`` for another name."""
    return tuple(V.check_options({"diagnostics": V.names(sampler.info_fields)}, {"diagnostics": tuple(record)})["diagnostics"])


def run(sampler: Sampler, state: Any, params: Any, *, stop: Optional[int] = None,
        progress: Optional[Callable[[int], None]] = None, diagnostics: Sequence[str] = (),
        cond_batched: bool = False) -> tuple[Any, dict]:
    """Runs compiled steps from ``state.step`` to ``stop`` (default: the end). Returns ``(state, diagnostics)``.

    One executable serves a full run, a run stopped after step ``k`` and a resumed one, so a
    resumed trajectory is bit-identical to an uninterrupted one. A batched state (from a vmapped
    ``init``) is stepped vmapped; with ``cond_batched`` the sampler's conditioning carries the
    same leading batch axis (one conditioning per video).

    Args:
      sampler: a built :class:`Sampler`.
      state: its state (``state.step`` scalar, or ``[batch]``).
      params: the backbone's params.
      stop: the step to stop before (``0 ≤ stop ≤ num_steps``).
      progress: called with the number of finished steps, from inside the compiled loop.
      diagnostics: ``Info`` fields to record for every step.
      cond_batched: the conditioning has a leading batch axis.
    """
    total = sampler.num_steps
    stop = total if stop is None else stop
    if isinstance(stop, bool) or not isinstance(stop, (int, np.integer)) or not 0 <= stop <= total:
        raise ValueError(f"stop={stop!r} must be an int between 0 and the number of steps {total}.")
    record = _check_record(sampler, diagnostics)
    batched = jnp.ndim(state.step) == 1
    if cond_batched and not batched:
        raise ValueError("cond_batched=True needs a batched state (from a vmapped init, one video per conditioning).")
    return _compiled_run(sampler.context, params, state, jnp.asarray(stop, jnp.int32), spec=sampler.spec,
                         num_steps=total, batched=batched, cond_batched=cond_batched, record=record, progress=progress)


def sample(sampler: Sampler, params: Any, key: Array, *, cond: Optional[Conditioning] = None,
           progress: Optional[Callable[[int], None]] = None, diagnostics: Sequence[str] = (), **init_noise) -> SampleResult:
    """Returns a :class:`SampleResult`: ``init`` and a whole compiled run of ``sampler``.

    Args:
      sampler: a built :class:`Sampler` (e.g. ``syncos.build(defn, schedule, layout, cond)``).
      params: the backbone's params (a jit argument: new weights never recompile).
      key: a PRNG key, or ``[batch]`` keys to sample a batch of videos (vmapped).
      cond: optional conditioning with a leading ``[batch]`` axis, one per key (e.g. one caption
        per video); replaces the sampler's own.
      progress: called with the number of finished steps, from inside the compiled loop.
      diagnostics: ``Info`` fields to record per step (``sampler.info_fields``).
      **init_noise: explicit start noise for ``init`` (e.g. ``initial_noise=``), with a leading
        batch axis when ``key`` is batched.

    Raises:
      FloatingPointError: with ``check_finite=True`` when a NaN/Inf appeared, naming where.
    """
    batched = is_key_batch(key)
    if cond is not None:
        if not batched:
            raise ValueError("cond= replaces the conditioning with one per video; it needs a [batch] of keys.")
        sizes = {int(jnp.shape(a)[0]) for a in jax.tree_util.tree_leaves((cond.prompts, cond.uncond))}
        if sizes != {int(jnp.shape(key)[0])}:
            raise ValueError(f"cond= must have leading axis batch={int(jnp.shape(key)[0])} on every array, got {sorted(sizes)}.")
        check_inputs(sampler.spec.defn, sampler.context.schedule, cond)
        sampler = sampler._replace(context=sampler.context._replace(cond=cond))  # init and step are rebuilt from it
    record = _check_record(sampler, diagnostics)
    if not batched:
        state = sampler.init(key, params, **init_noise)
    else:
        given = {n: v for n, v in init_noise.items() if v is not None}

        def init_one(k, ctx, noise):
            return rebuild(sampler.spec, ctx).init(k, params, **noise)

        ctx_axes = Context(None, None if cond is None else jax.tree_util.tree_map(lambda _: 0, cond), None)
        state = jax.vmap(init_one, in_axes=(0, ctx_axes, 0))(key, sampler.context, given)
    state, diag = run(sampler, state, params, progress=progress, diagnostics=record, cond_batched=cond is not None)
    message = sampler.nonfinite_message(state.nonfinite)
    if message:
        raise FloatingPointError(message)
    if batched:  # per-run diagnostics first
        diag = {n: jnp.moveaxis(v, 1, 0) for n, v in diag.items()}
    return SampleResult(latents=sampler.output(state), nfe=state.nfe, diagnostics=diag, state=state)
