"""The ``syncos`` command line.

    syncos generate SCENARIO.yaml [--sampler syncos|gen-l-video|fifo|csd-only|freenoise|ddim]
                    [--frames N] [--seed S] [--out DIR] [--steps K] [--guidance G] [--stride s]
                    [--set NAME=VALUE ...] [--weights FILE] [--overwrite] [--checkpoint-every K]
                    [--backbone cogvideox --weights DST [--text-embeddings FILE] [--vae DST/vae] [--latent-size HxW]]
    syncos generate --resume RUN_DIR
    syncos convert cogvideox SRC DST [--dtype bf16]

``generate`` samples a long video for a scenario file (:func:`syncos_jax.prompts.load_scenario`)
with the shipped toy model (or a converted CogVideoX), showing a progress bar, and writes into ``DIR``:

* ``video.mp4`` and ``video.gif``;
* ``contact_sheet.png``: every frame with its index, and the local prompt of each segment;
* ``run.json``: the resolved settings, the NFE, the wall time, a SHA-256 of the final latents and
  the probes' per-segment readings next to what the prompts ask for (:mod:`syncos_jax.metrics`;
  toy model only);
* with CogVideoX, ``latents.npy`` too; prompts are encoded by the converted T5 (``DST/text_encoder``)
  and the video decoded by the converted VAE (``DST/vae``), all in JAX (torch is never imported);
  without a VAE only the latents and ``run.json`` are written, and the command says so.

Settings resolve in this order: command-line flags, then the scenario's ``sampler`` mapping, then
the defaults (``frames`` = 4 chunks, ``stride`` = half a chunk, the backbone's guidance scale,
50 steps). **Everything is checked before sampling**: the grammar of every joined prompt, the
seed (``[0, 2**32 − 1]``), the type and range of every sampler setting, the number of prompts
against the frames, the weights (loadable and finite), the backbone's prediction type against the
schedule, and the destination (see :mod:`syncos_jax.outdir` for ``--overwrite``'s rule).

**Sampling runs in segments** of one compiled loop — ``--checkpoint-every K`` steps, or by default
as many steps as take about ``SEGMENT_SECONDS`` (5 s) — and after each the sampler state is saved
with orbax into the run folder ``.NAME.resume`` beside ``DIR``. Ctrl-C (or SIGTERM) stops at the end of the segment, keeps that checkpoint, prints the
command that resumes and exits 130; a second Ctrl-C stops without saving that segment (the last
checkpoint is kept).
``syncos generate --resume RUN_DIR`` continues a stopped or killed run; its video is
bit-identical to an uninterrupted run (the same executable runs every segment). NaN/Inf are
checked after every segment (``--set check_finite=false`` turns it off): the run stops with one
line naming the step, the grid time and the stage.

Exit status: 0 done; 2 an error (bad input, an unusable destination, non-finite values): one
line ``error: ...`` on stderr and no output written; 130 interrupted (a checkpoint is kept and
the resume command printed). Any other status is a bug: please report it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np

__all__ = ["CLIError", "Interrupted", "build_parser", "generate", "main"]

SAMPLER_NAMES = ("syncos", "gen-l-video", "fifo", "csd-only", "freenoise", "ddim")
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
SEGMENT_SECONDS = 5.0  # the default segment length: each costs ~0.085 s to stop, sync and save (bench_cli.py)
RESUME_FORMAT = "syncos_jax.resume/1"
# generate's arguments that do not change the video; all others are recorded and must match on --resume
_FREE_ARGS = ("resume", "progress", "checkpoint_every")
_PATH_ARGS = ("scenario", "out", "weights", "text_embeddings", "vae")


class CLIError(Exception):
    """An error reported as one line and exit status 2."""


class Interrupted(Exception):
    """A run stopped by a signal after saving its checkpoint; ``str()`` says how to resume (exit 130)."""


# ---------------------------------------------------------------------------------------------
# Signals: Ctrl-C before sampling aborts; during sampling it asks to stop after the segment.
# ---------------------------------------------------------------------------------------------


class _Signals:
    """SIGINT / SIGTERM handling for one command.

    Before sampling (``deferred`` false) a signal raises ``KeyboardInterrupt`` as usual: nothing
    has been computed. During sampling the first signal only sets ``stop_requested`` (checked
    between segments, never inside compiled code or a compilation); a second one exits with
    status 130 as soon as Python regains control (the compiled loop cannot be cut short), without
    saving another checkpoint, after printing ``hint``.
    """

    def __init__(self):
        self.deferred = False
        self.stop_requested = False
        self.hint = ""
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame):
        if not self.deferred:
            raise KeyboardInterrupt
        if self.stop_requested:
            sys.stderr.write(f"\nstopped without saving; the last checkpoint is kept; {self.hint}\n")
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        self.stop_requested = True
        sys.stderr.write("\nstopping after the current segment (Ctrl-C again: stop without saving it) ...\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Settings: where each came from, so that a bad value is reported against its source
# ---------------------------------------------------------------------------------------------


class _Settings(NamedTuple):
    values: dict  # name -> value, the scenario's sampler mapping overridden by flags
    origin: dict  # name -> ("flag", "--set lr") | ("scenario", "sampler.lr")


def _brief(value) -> str:
    from syncos_jax.validate import brief

    return brief(value)


def _reject(scenario, settings: _Settings, name: str, value, problem: str):
    """Returns the error for setting ``name`` (to raise), worded for where the value came from."""
    from syncos_jax.prompts import ScenarioError

    kind, label = settings.origin.get(name, ("flag", f"--set {name}"))
    if kind == "scenario":
        return ScenarioError(scenario.path, label, f"{problem}, got {_brief(value)}")
    return CLIError(f"{label}={_brief(value)}: {problem}")


_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _number_or_value(value):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; such a string is taken as the number it spells."""
    return float(value) if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()) else value


def _collect_settings(args, scenario) -> _Settings:
    from syncos_jax.prompts import parse_yaml

    values, origin = {}, {}
    for name, value in scenario.sampler.items():
        values[name], origin[name] = _number_or_value(value), ("scenario", f"sampler.{name}")
    for item in args.set or ():
        if "=" not in item:
            raise CLIError(f"--set {_brief(item)}: expected NAME=VALUE")
        name, text = (part.strip() for part in item.split("=", 1))
        if not name:
            raise CLIError(f"--set {_brief(item)}: expected NAME=VALUE")
        values[name] = _number_or_value(parse_yaml(text, "--set", name))
        origin[name] = ("flag", f"--set {name}")
    for flag, name in (("steps", "steps"), ("stride", "stride"), ("guidance", "guidance_scale")):
        if getattr(args, flag) is not None:
            values[name], origin[name] = getattr(args, flag), ("flag", f"--{flag}")
    return _Settings(values, origin)


def _checked(scenario, settings: _Settings, name: str, default, rule):
    """The setting ``name`` (or ``default``) checked by ``rule`` (a :mod:`syncos_jax.validate` rule)."""
    from syncos_jax import validate as V

    value = settings.values.pop(name, default)
    try:
        return V.check_options({name: rule}, {name: value})[name]
    except V.OptionError as e:
        raise _reject(scenario, settings, name, value, e.problem) from None


def _check_prompts(scenario, backbone) -> None:
    """Every prompt of the scenario one the backbone can take (its ``check_prompt``: words, grammar,
    embeddings), or a ``ScenarioError`` naming the field at fault."""
    from syncos_jax.prompts import PromptError, ScenarioError

    from syncos_jax.backbones import BackboneError

    try:
        backbone.check_prompt(scenario.prompt)
    except PromptError as e:
        raise ScenarioError(scenario.path, e.field, e.problem) from None
    except BackboneError as e:  # e.g. a damaged converted text encoder, found when it first encodes
        raise CLIError(f"--{e.subject.replace('_', '-')}: {e.problem}") from None


def _load_backbone(args):
    """The backbone ``--backbone`` names, opened with its flags (a ``BackboneError`` becomes one line naming the flag)."""
    from syncos_jax.backbones import BackboneError, open_backbone

    flags = {"weights": args.weights, "text_embeddings": args.text_embeddings, "vae": args.vae, "latent_size": args.latent_size}
    try:
        return open_backbone(args.backbone, **flags)
    except BackboneError as e:
        subject = f"--{e.subject.replace('_', '-')}" if e.subject in flags or e.subject == "backbone" else e.subject
        raise CLIError(f"{subject}: {e.problem}") from None


# ---------------------------------------------------------------------------------------------
# A sampler driven in segments: init, run to a step, read the video, word a NaN
# ---------------------------------------------------------------------------------------------


class _Job(NamedTuple):
    """One sampler bound to its inputs, as the command line drives it.

    Attributes:
      total: the number of steps (FIFO: queue iterations).
      init: ``() -> state`` at step 0.
      run: ``(state, stop) -> state`` after step ``stop`` (one compiled executable for every segment).
      latents: ``state -> [F, H, W, C]`` the video so far.
      nonfinite: ``state -> message or None`` (the first NaN/Inf recorded).
      options: the resolved sampler options (for the record).
    """

    total: int
    init: Callable[[], Any]
    run: Callable[[Any, int], Any]
    latents: Callable[[Any], Any]
    nonfinite: Callable[[Any], Optional[str]]
    options: dict


def _make_job(name, backbone, schedule, layout, cond, options: dict, key, progress) -> _Job:
    """Builds sampler ``name`` (its builder validates ``options``: ``OptionError`` for an unknown or
    bad setting, ``ValueError`` for a combination it refuses) and binds it to ``key`` and the weights."""
    from syncos_jax import validate as V
    from syncos_jax.samplers import SAMPLERS, SETTINGS, run

    for option, value in options.items():  # settings only: build's other keywords (mesh, noise arrays) are not --set-able
        if option not in SETTINGS[name]:
            raise V.OptionError(option, value, f"not a setting of {name} (its settings: {', '.join(SETTINGS[name])})")
    defn, params = backbone.denoiser.split()
    sampler = SAMPLERS[name](defn, schedule, layout, cond, frame_shape=backbone.frame_shape, **options)
    return _Job(
        total=sampler.num_steps,
        init=lambda: sampler.init(key, params),
        run=lambda st, stop: run(sampler, st, params, stop=stop, progress=progress)[0],
        latents=sampler.output,
        nonfinite=lambda st: sampler.nonfinite_message(st.nonfinite),
        options=dict(options),
    )


# ---------------------------------------------------------------------------------------------
# The run folder (.NAME.resume): what was asked, and the checkpoints
# ---------------------------------------------------------------------------------------------


def _digest(path: Optional[str]) -> Optional[str]:
    """SHA-256 of a file; for a folder, of every file's relative name, size and mtime."""
    if path is None or not os.path.exists(path):
        return None
    h = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            p = os.path.join(root, name)
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _resume_command(run_dir: str) -> str:
    return f"syncos generate --resume {shlex.quote(run_dir)}"


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=False)
    os.replace(tmp, path)


def _recorded_args(args) -> dict:
    rec = {k: v for k, v in vars(args).items() if k not in _FREE_ARGS and k != "command"}
    for k in _PATH_ARGS:
        if rec.get(k):
            rec[k] = os.path.abspath(rec[k])
    return rec


# the recorded arguments and their types (None allowed for all but these three)
_ARG_TYPES = {"scenario": str, "sampler": str, "frames": int, "seed": int, "out": str, "steps": int, "guidance": float,
              "stride": int, "set": list, "weights": str, "overwrite": bool, "backbone": str, "text_embeddings": str,
              "vae": str, "latent_size": str}
_ARG_REQUIRED = ("scenario", "sampler", "overwrite")


def _check_resume_record(record) -> None:
    """Raises ``ValueError`` unless ``record`` is a ``resume.json`` this command wrote (types included)."""
    if not isinstance(record, dict) or record.get("format") != RESUME_FORMAT:
        raise ValueError("format")
    rec, digests = record.get("args"), record.get("digests")
    if not isinstance(rec, dict) or set(rec) != set(_ARG_TYPES) or not isinstance(digests, dict):
        raise ValueError("fields")
    for k, kind in _ARG_TYPES.items():
        v = rec[k]
        if v is None and k not in _ARG_REQUIRED:
            continue
        ok = isinstance(v, kind) and (kind is bool or not isinstance(v, bool)) or (kind is float and isinstance(v, int))
        if not ok or (kind is list and not all(isinstance(x, str) for x in v)):
            raise ValueError(k)
    if not all(isinstance(v, (str, type(None))) for v in digests.values()):
        raise ValueError("digests")


def _args_from_run_dir(args, parser) -> argparse.Namespace:
    """The arguments recorded in ``args.resume``; explicitly given ones must match them."""
    run_dir = args.resume
    path = os.path.join(run_dir, "resume.json")
    try:
        if not _is_run_dir(run_dir):
            raise ValueError
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        _check_resume_record(record)
    except (OSError, ValueError):
        raise CLIError(f"--resume {run_dir!r}: not a run folder of syncos generate (no valid resume.json)") from None
    recorded = record["args"]
    defaults = vars(parser.parse_args(["generate", "x"]))
    given = _recorded_args(args)
    for k, v in given.items():
        if k == "scenario" and args.scenario is None:
            continue
        if v != defaults.get(k) and v != recorded.get(k):
            raise CLIError(f"--resume {run_dir!r}: {k}={_brief(v)} differs from the recorded run ({_brief(recorded.get(k))}); "
                           f"give only --resume (and --no-progress)")
    merged = argparse.Namespace(**{**defaults, **recorded})
    merged.command, merged.resume, merged.progress = "generate", run_dir, args.progress
    merged.checkpoint_every = args.checkpoint_every
    merged.digests = record.get("digests", {})
    return merged


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------


def _json_safe(obj):
    """``obj`` with numpy scalars as Python numbers and non-finite floats as ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def generate(
    scenario_path: Optional[str] = None,
    *,
    sampler: str = "syncos",
    frames: Optional[int] = None,
    seed: Optional[int] = None,
    out: Optional[str] = None,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    stride: Optional[int] = None,
    set: Sequence[str] = (),
    weights: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
    backbone: str = "toy",
    text_embeddings: Optional[str] = None,
    vae: Optional[str] = None,
    latent_size: Optional[str] = None,
    resume: Optional[str] = None,
    checkpoint_every: Optional[int] = None,
) -> dict:
    """Runs ``syncos generate`` from Python; returns the ``run.json`` record.

    Raises:
      ScenarioError: for a malformed scenario (nothing is written).
      CLIError: for a bad command-line value, an unusable destination or non-finite values.
      Interrupted: if SIGINT/SIGTERM stopped the run (its checkpoint is kept; ``str()`` says how to resume).
    """
    args = argparse.Namespace(command="generate", scenario=scenario_path, sampler=sampler, frames=frames, seed=seed,
                              out=out, steps=steps, guidance=guidance, stride=stride, set=list(set), weights=weights,
                              overwrite=overwrite, progress=progress, backbone=backbone, text_embeddings=text_embeddings,
                              vae=vae, latent_size=latent_size, resume=resume, checkpoint_every=checkpoint_every)
    with _Signals() as signals:
        return _generate(args, signals)


class _Progress:
    """The progress bar, fed from inside the compiled loop. One object per run: the compiled loop
    is keyed on its progress callback, so every segment must pass the same one."""

    def __init__(self):
        self.bar = None

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(max(0, n - self.bar.n))  # callbacks are unordered (samplers.base.progress_hook)


class _Plan(NamedTuple):
    """A ``generate`` run resolved and checked; nothing written or compiled yet."""

    args: argparse.Namespace
    scenario: Any
    backbone: Any
    frames: int
    seed: int
    steps: int
    stride: int
    guidance: float
    layout: Any
    job: _Job
    out: str
    options: dict  # the sampler settings given (for the record)


def _resolve(args, progress: _Progress) -> _Plan:
    """Checks everything checkable and binds the sampler. Raises ``ScenarioError`` / ``CLIError``."""
    import jax

    from syncos_jax import outdir
    from syncos_jax import validate as V
    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.prompts import MAX_FRAMES, SEED_RANGE, ScenarioError, build_conditioning, load_scenario

    if args.sampler not in SAMPLER_NAMES:
        raise CLIError(f"--sampler {_brief(args.sampler)}: expected one of {', '.join(SAMPLER_NAMES)}")
    if args.checkpoint_every is not None and (not isinstance(args.checkpoint_every, int) or args.checkpoint_every < 1):
        raise CLIError(f"--checkpoint-every={_brief(args.checkpoint_every)}: expected an integer >= 1")
    scenario = load_scenario(args.scenario)
    backbone = _load_backbone(args)
    if args.resume:
        for what, path in (("scenario", args.scenario), ("weights", backbone.weights)):
            if args.digests.get(what) != _digest(path):
                raise CLIError(f"--resume {args.resume!r}: the {what} {path!r} changed since the run started; it cannot be resumed")
    _check_prompts(scenario, backbone)
    settings = _collect_settings(args, scenario)
    given = {k: v for k, v in settings.values.items() if k not in ("steps", "stride", "guidance_scale")}
    f = backbone.chunk_frames
    if args.frames is not None:
        F = args.frames
        if not f <= F <= MAX_FRAMES:
            raise ScenarioError(scenario.path, "--frames", f"expected an integer in [{f}, {MAX_FRAMES}] (at least one chunk), got {F}")
        events = scenario.prompt.frames
        if events is not None and F != sum(events):
            raise ScenarioError(scenario.path, "--frames",
                                f"the scenario's events last {'+'.join(map(str, events))} = {sum(events)} frames; got {F}")
    else:
        F = scenario.frames or 4 * f
        if F < f:
            field = "frames" if scenario.prompt.frames is None else "local_prompts"  # the events' lengths set F
            raise ScenarioError(scenario.path, field, f"{F} frames is fewer than one chunk ({f} frames)")
    P = len(scenario.prompt.local_prompts)
    if P > F:
        raise ScenarioError(scenario.path, "local_prompts", f"{P} local prompts need at least {P} frames (one per event), got {F}")
    seed = args.seed if args.seed is not None else (scenario.seed if scenario.seed is not None else 0)
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise CLIError(f"--seed={_brief(seed)}: expected an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}]")
    steps = _checked(scenario, settings, "steps", 50, V.integer(1, backbone.schedule(1).num_train_timesteps))
    stride = _checked(scenario, settings, "stride", max(1, f // 2), V.integer(1, f))
    guidance = _checked(scenario, settings, "guidance_scale", backbone.default_guidance, V.real(0.0))
    dynamic = _checked(scenario, settings, "dynamic_cfg", False, V.boolean())
    try:
        schedule = backbone.schedule(steps)
    except ValueError as e:
        raise _reject(scenario, settings, "steps", steps, str(e).rstrip(".")) from None
    options = {"check_finite": True, **settings.values, "guidance_scale": guidance}
    if dynamic:  # diffusers' CogVideoX dynamic CFG: one scale per grid step
        if args.sampler == "fifo":
            raise CLIError("--set dynamic_cfg=true: fifo steps every frame at its own time; dynamic CFG is not supported there")
        from syncos_jax.guidance import dynamic_cfg_scales

        options["guidance_scale"] = tuple(float(g) for g in np.asarray(dynamic_cfg_scales(guidance, schedule.timesteps)))
    layout = ChunkLayout(F, f, stride)
    cond = build_conditioning(backbone.encode, scenario.prompt)
    try:
        job = _make_job(args.sampler, backbone, schedule, layout, cond, options, jax.random.key(seed), progress)
    except V.OptionError as e:
        raise _reject(scenario, settings, e.name, e.value, e.problem) from None
    except ValueError as e:
        raise CLIError(f"--sampler {args.sampler}: {' '.join(str(e).split())[:300]}") from None
    try:  # trace (not compile, not run) the whole sampler: a setting it refuses at trace time is one line now
        jax.eval_shape(lambda: job.run(job.init(), job.total))
    except ValueError as e:
        raise CLIError(f"--sampler {args.sampler}: {' '.join(str(e).split())[:300]}") from None
    stem = os.path.splitext(os.path.basename(scenario.path))[0]
    out = args.out or os.path.join("outputs", f"{stem}-{args.sampler}-seed{seed}")
    try:
        if os.path.isdir(os.path.dirname(os.path.abspath(out))):
            outdir.clean_stale(out)  # a replacement killed half-way is settled before the destination is judged
        outdir.check_destination(out, args.overwrite)
    except outdir.OutputError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"--out {out!r}: {e.strerror or e}") from None
    return _Plan(args, scenario, backbone, F, int(seed), steps, stride, float(guidance), layout, job, out, given)


RUN_DIR_ENTRIES = frozenset({"resume.json", "resume.json.tmp", "checkpoint"})


def _is_run_dir(path: str) -> bool:
    """Whether ``path`` is a run folder this command wrote: a real folder holding only :data:`RUN_DIR_ENTRIES`."""
    return os.path.isdir(path) and not os.path.islink(path.rstrip(os.sep) or path) and set(os.listdir(path)) <= RUN_DIR_ENTRIES


def _run_dir_of(plan: _Plan) -> str:
    out = os.path.abspath(plan.out)
    return plan.args.resume or os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.resume")


def _open_run_dir(plan: _Plan, run_dir: str) -> list:
    """Creates the fresh run's folder ``run_dir`` with its ``resume.json`` (a resumed run's exists);
    returns the parent folders it created."""
    from syncos_jax import outdir

    args, out = plan.args, plan.out
    fresh = not args.resume
    if fresh and os.path.lexists(run_dir):
        if not _is_run_dir(run_dir):
            raise CLIError(f"--out {out!r}: {run_dir!r} is in the way and is not a run folder of syncos; move it away")
        if not args.overwrite:
            raise CLIError(f"--out {out!r}: an unfinished run of it is kept in {run_dir!r}; continue it with "
                           f"`{_resume_command(run_dir)}`, or pass --overwrite to discard it")
        shutil.rmtree(run_dir)
    created: list = []
    try:
        created = outdir.make_parents(out)
        if fresh:
            os.mkdir(run_dir)
            _write_json(os.path.join(run_dir, "resume.json"), {
                "format": RESUME_FORMAT, "args": _recorded_args(args),
                "digests": {"scenario": _digest(args.scenario), "weights": _digest(plan.backbone.weights)},
            })
    except OSError as e:
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        outdir.remove_created(created)
        raise CLIError(f"--out {out!r}: cannot write beside it ({e.strerror or e})") from None
    return created


def _restore_or_init(job: _Job, ckpt_dir: str, run_dir: str):
    """``(state, step it was saved at or None)``: the latest checkpoint if there is one, else step 0."""
    import jax

    from syncos_jax import checkpoint

    try:
        saved = checkpoint.latest_step(ckpt_dir) if os.path.isdir(ckpt_dir) else None
        if saved is None:
            return job.init(), None
        state = checkpoint.restore_state(ckpt_dir, like=jax.eval_shape(job.init))
    except ValueError as e:  # a state of another sampler, or of other shapes
        raise CLIError(f"--resume {run_dir!r}: its checkpoint does not fit the recorded run ({' '.join(str(e).split())[:200]})") from None
    except Exception as e:  # orbax raises many kinds for a damaged checkpoint
        raise CLIError(f"--resume {run_dir!r}: its checkpoint cannot be read ({' '.join(str(e).split())[:200]})") from None
    return state, saved


def _sample_in_segments(plan: _Plan, state, saved: Optional[int], ckpt_dir: str, signals: _Signals, hint: str,
                        on_failure: Callable[[], None]):
    """Runs ``plan.job`` from ``state`` to the end in segments, saving a checkpoint after each.

    Segments are ``--checkpoint-every`` steps, or (by default) about :data:`SEGMENT_SECONDS` long,
    sized from the last segment's pace; the first is one step, since it includes the compilation.
    Returns the final state. Raises ``CLIError`` (after ``on_failure()``) for a NaN/Inf, and
    ``Interrupted`` (the checkpoint saved) if a signal asked to stop.
    """
    from syncos_jax import checkpoint

    job, fixed = plan.job, plan.args.checkpoint_every
    check = plan.job.options.get("check_finite", True)
    step, length, first = int(state.step), fixed or 1, True
    while True:
        message = job.nonfinite(state) if check else None
        if message:
            on_failure()
            raise CLIError(message + " Nothing was written.")
        if step >= job.total:
            return state
        if signals.stop_requested:
            if saved != step:
                checkpoint.save_state(ckpt_dir, state, max_to_keep=1)
            raise Interrupted(f"interrupted at step {step} of {job.total}; the checkpoint is kept; {hint}")
        t0 = time.perf_counter()
        state = job.run(state, min(step + length, job.total))
        done, step = int(state.step) - step, int(state.step)
        if not fixed and not first:  # steps per segment from the pace of this one
            length = max(1, int(round(SEGMENT_SECONDS * done / max(time.perf_counter() - t0, 1e-6))))
        first = False
        checkpoint.save_state(ckpt_dir, state, max_to_keep=1)
        saved = step


def _schedule_record(schedule) -> dict:
    """What ``run.json`` says of the sampling schedule: its kind, prediction type, first and last grid times."""
    ts = np.asarray(schedule.timesteps)
    return {"kind": schedule.kind, "prediction_type": schedule.prediction_type,
            "num_train_timesteps": schedule.num_train_timesteps, "grid": [ts[0].item(), ts[-1].item()]}


def _record(plan: _Plan, state, latents, frames_px, resumed_from, sample_seconds: float) -> dict:
    """The ``run.json`` record (before ``wall_seconds.total``)."""
    import jax

    from syncos_jax import outdir

    scenario, backbone = plan.scenario, plan.backbone
    segments = scenario.prompt.segments(plan.frames)
    texts = scenario.prompt.texts()
    probe = getattr(backbone, "probe", None)
    readings = probe(frames_px, segments, texts) if probe is not None and frames_px is not None else [{}] * len(segments)
    seg_records = [{"frames": [a, b], "local_prompt": local, "text": text, **reading}
                   for (a, b), local, text, reading in zip(segments, scenario.prompt.local_prompts, texts, readings)]
    record = {
        **outdir.MARKER,
        "scenario": os.path.abspath(scenario.path),
        "global_prompt": scenario.prompt.global_prompt,
        "local_prompts": list(scenario.prompt.local_prompts),
        "backbone": {"name": backbone.name, "weights": backbone.weights, "training_step": backbone.info.get("step"),
                     "frame_shape": list(backbone.frame_shape), "chunk_frames": backbone.chunk_frames,
                     **({"truncated_prompts": list(backbone.truncated_prompts)}
                        if getattr(backbone, "truncated_prompts", None) else {})},
        "settings": {"frames": plan.frames, "seed": plan.seed, "sampler": plan.args.sampler, "steps": plan.steps,
                     "stride": plan.stride, "guidance_scale": plan.guidance, "num_chunks": plan.layout.num_chunks,
                     "options": plan.options, "schedule": _schedule_record(backbone.schedule(plan.steps))},
        "nfe": int(np.reshape(np.asarray(state.nfe), (-1,))[0]),
        "latents_sha256": hashlib.sha256(np.ascontiguousarray(latents, np.float32).tobytes()).hexdigest(),
        "resumed_from_step": resumed_from,
        "wall_seconds": {"sampling": round(sample_seconds, 3), "total": None},
        "segments": seg_records,
        "jax": {"version": jax.__version__, "backend": jax.default_backend(), "devices": jax.device_count()},
    }
    if frames_px is None:
        record["note"] = ("latents.npy holds the final latents [F, H, W, C]; no video was decoded "
                          "(convert a folder with vae/ into --weights, or give --vae with a converted VAE folder, to decode)")
    return record


def _write_outputs(folder: str, plan: _Plan, record: dict, latents, frames_px) -> None:
    """Writes the video files, the contact sheet, ``latents.npy`` (not toy) and ``run.json`` into ``folder``."""
    from syncos_jax import video

    prompt = plan.scenario.prompt
    if plan.backbone.latent_space:
        np.save(os.path.join(folder, "latents.npy"), latents)
    if frames_px is not None:
        # decoded frames can outnumber latent frames (the VAE's temporal upsampling): scale the segments
        k = len(frames_px) / plan.frames
        segments = prompt.segments(plan.frames)
        video.write_mp4(os.path.join(folder, "video.mp4"), frames_px)
        video.write_gif(os.path.join(folder, "video.gif"), frames_px)
        stem = os.path.splitext(os.path.basename(plan.scenario.path))[0]
        sheet = video.contact_sheet(
            frames_px,
            segments=[(int(round(a * k)), int(round(b * k)), text) for (a, b), text in zip(segments, prompt.texts())],
            title=f"{stem}: {plan.args.sampler}, {plan.frames} frames, seed {plan.seed}, {plan.steps} steps, "
                  f"guidance {plan.guidance:g}",
        )
        import imageio.v2 as imageio

        imageio.imwrite(os.path.join(folder, "contact_sheet.png"), sheet)
    with open(os.path.join(folder, "run.json"), "w", encoding="utf-8") as fh:
        json.dump(_json_safe(record), fh, indent=2, allow_nan=False)


def _generate(args, signals: _Signals) -> dict:
    """resolve → open the run folder → sample in segments → record → write; returns the record."""
    import jax
    from tqdm import tqdm

    from syncos_jax import outdir

    t_start = time.time()
    if args.resume:
        args = _args_from_run_dir(args, build_parser())
    elif args.scenario is None:
        raise CLIError("generate needs a SCENARIO file (or --resume RUN_DIR)")
    progress = _Progress()
    plan = _resolve(args, progress)
    run_dir = _run_dir_of(plan)
    hint = f"resume with: {_resume_command(run_dir)}"
    signals.hint, signals.deferred = hint, True  # from here on, Ctrl-C stops after the segment
    created = _open_run_dir(plan, run_dir)

    def discard():
        shutil.rmtree(run_dir, ignore_errors=True)
        outdir.remove_created(created)
    ckpt_dir = os.path.join(run_dir, "checkpoint")
    progress.bar = tqdm(total=plan.job.total, desc=f"{args.sampler} {plan.frames} frames", unit="step",
                        disable=not args.progress, dynamic_ncols=True)
    t0 = time.time()
    try:
        state, resumed_from = _restore_or_init(plan.job, ckpt_dir, run_dir)
        progress.bar.update(int(state.step))
        state = _sample_in_segments(plan, state, resumed_from, ckpt_dir, signals, hint, discard)
        latents = np.asarray(jax.block_until_ready(plan.job.latents(state)))
        jax.effects_barrier()  # the (unordered) progress callbacks have all run
    finally:
        progress.bar.close()
    sample_seconds = time.time() - t0

    staged = None
    try:
        frames_px = plan.backbone.decode(latents)
        record = _record(plan, state, latents, frames_px, resumed_from, sample_seconds)
        staged = outdir.staging_folder(plan.out)
        record["wall_seconds"]["total"] = round(time.time() - t_start, 3)
        _write_outputs(staged, plan, record, latents, frames_px)
        outdir.replace_atomically(staged, plan.out, plan.args.overwrite)
    except outdir.OutputError as e:
        raise CLIError(f"{e}; the sampled state is kept; {hint}") from None
    except OSError as e:
        raise CLIError(f"--out {plan.out!r}: cannot write ({e.strerror or e}); the sampled state is kept; {hint}") from None
    finally:
        if staged is not None and os.path.isdir(staged):
            shutil.rmtree(staged, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {**_json_safe(record), "out": plan.out}


# ---------------------------------------------------------------------------------------------
# convert, the parser, main
# ---------------------------------------------------------------------------------------------


def _convert(args) -> str:
    """``syncos convert cogvideox SRC DST``: every part SRC holds (transformer, text encoder with its
    tokenizer, VAE) into DST, one progress bar per part; nothing is written if any part fails."""
    from tqdm import tqdm

    from converters import cogvideox

    if os.path.exists(args.dst) and (not os.path.isdir(args.dst) or os.listdir(args.dst)):
        raise CLIError(f"{args.dst!r} exists and is not empty; choose a new destination")
    bars = []

    def progress_of(part):
        bar = tqdm(desc=f"convert {part}", unit="tensor", disable=not args.progress, dynamic_ncols=True)
        bars.append(bar)

        def on_progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        return on_progress

    try:
        configs = cogvideox.convert_pipeline(args.src, args.dst, dtype=args.dtype, progress=progress_of)
    except (OSError, ValueError, NotImplementedError) as e:  # ConversionError is a ValueError
        raise CLIError(f"convert {args.model} {args.src}: " + " ".join(str(e).split())[:400]) from None
    finally:
        for bar in bars:
            bar.close()
    done = [f"transformer ({configs['transformer'].num_layers} layers)"]
    done += [f"text encoder ({configs['text_encoder'].num_layers} layers) -> text_encoder/"] if "text_encoder" in configs else []
    done += ["VAE -> vae/"] if "vae" in configs else []
    lacking = [p for p in ("text_encoder", "vae") if p not in configs]
    notes = (["generate will need --text-embeddings"] if "text_encoder" in lacking else []) + \
            (["generate will save latents only (no VAE to decode them)"] if "vae" in lacking else [])
    note = f"\n  {args.src!r} has no {' or '.join(p + '/' for p in lacking)}: {'; '.join(notes)}" if lacking else ""
    if lacking and os.path.basename(os.path.normpath(args.src)) == "transformer":
        note += "\n  (to convert them too, give the diffusers folder that holds transformer/, not transformer/ itself)"
    return f"converted {args.src} -> {args.dst}: {', '.join(done)}, {args.dtype}{note}"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``CLIError``), not a usage block."""

    def error(self, message):
        raise CLIError(" ".join(message.split())[:300])


def build_parser() -> argparse.ArgumentParser:
    """The ``syncos`` argument parser (``generate``, ``convert``)."""
    ap = _Parser(prog="syncos", description="SynCoS long-video sampling in JAX.")
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="sample a long video for a scenario file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("scenario", nargs="?", default=None, help="a scenario YAML file (not needed with --resume)")
    g.add_argument("--sampler", default="syncos", choices=SAMPLER_NAMES)
    g.add_argument("--frames", type=int, default=None, help="number of frames (default: the scenario's, else 4 chunks)")
    g.add_argument("--seed", type=int, default=None, help="an integer in [0, 2**32 - 1] (default: the scenario's, else 0)")
    g.add_argument("--out", default=None, help="output directory (default outputs/<scenario>-<sampler>-seed<S>)")
    g.add_argument("--steps", type=int, default=None, help="sampling steps (default 50)")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (finite, >= 0)")
    g.add_argument("--stride", type=int, default=None, help="chunk stride in frames (default half a chunk)")
    g.add_argument("--set", action="append", metavar="NAME=VALUE", help="any sampler setting, e.g. --set iters=10")
    g.add_argument("--backbone", default="toy", choices=("toy", "cogvideox"))
    g.add_argument("--weights", default=None, help="toy: a weights file (default: the shipped one); cogvideox: a converted folder")
    g.add_argument("--text-embeddings", default=None, help="cogvideox: .npz of precomputed T5 embeddings per prompt (default: encode with WEIGHTS/text_encoder)")
    g.add_argument("--vae", default=None, help="cogvideox: a converted VAE folder to decode with (default: WEIGHTS/vae if present)")
    g.add_argument("--latent-size", default=None, help="cogvideox: latent HxW (default: the config's sample size)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is an earlier syncos output (never another folder); discard an unfinished run of it")
    g.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a stopped or killed run from its run folder (.NAME.resume beside --out)")
    g.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                   help=f"save the sampler state every K steps (default: segments of about {SEGMENT_SECONDS:g} s); "
                        "does not change the video")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    c = sub.add_parser("convert", help="convert a diffusers checkpoint to this library's format")
    c.add_argument("model", choices=("cogvideox",))
    c.add_argument("src", help="a diffusers CogVideoX folder (transformer/, and text_encoder/ + tokenizer/ and vae/ "
                                "when present, each with config.json and safetensors)")
    c.add_argument("dst", help="the output folder (must not exist or be empty)")
    c.add_argument("--dtype", default="float32", choices=("float32", "fp32", "bfloat16", "bf16"))
    c.add_argument("--no-progress", dest="progress", action="store_false")
    return ap


def _report(record: dict) -> None:
    s = record["wall_seconds"]
    print(f"wrote {record['out']}/{{{','.join(sorted(os.listdir(record['out'])))}}}: NFE {record['nfe']}, "
          f"sampling {s['sampling']:.1f} s, total {s['total']:.1f} s"
          + (f" (resumed from step {record['resumed_from_step']})" if record.get("resumed_from_step") is not None else ""))
    if "note" in record:
        print("  " + record["note"])
    for seg in record["segments"]:
        if "probe" not in seg:
            continue
        p = seg["probe"]
        ok = "" if "match" not in seg else ("  [ok]" if all(seg["match"].values()) else
                                            "  [differs: " + ", ".join(k for k, v in seg["match"].items() if not v) + "]")
        print(f"  frames {seg['frames'][0]}-{seg['frames'][1] - 1}: {seg['text']!r} -> probe: {p['size']} {p['colour']} "
              f"{p['shape']} {p['motion']} on {p['background']}{ok}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``syncos`` command; returns the exit status (0, 2 or 130)."""
    from syncos_jax.prompts import ScenarioError

    with _Signals() as signals:
        try:
            args = build_parser().parse_args(argv)
            if args.command == "convert":
                print(_convert(args))
            else:
                _report(_generate(args, signals))
            return 0
        except (ScenarioError, CLIError) as e:
            message = " ".join(str(e).split())
            print(f"error: {message if len(message) <= 1000 else message[:997] + '...'}", file=sys.stderr)
            return EXIT_ERROR
        except Interrupted as e:
            print(str(e), file=sys.stderr)
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:
            print("interrupted before sampling started; nothing was written", file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
