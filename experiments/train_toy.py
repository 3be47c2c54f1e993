"""Train the toy text-to-video model of the shapes world from scratch (CPU is enough).

    python experiments/train_toy.py --config experiments/configs/toy.yaml [--workdir DIR] [--export FILE]

* The config (YAML) holds everything that decides the result: ``seed``, ``model`` (the fields of
  :class:`~syncos_jax.backbones.toy.ToyConfig`), ``train`` (those of
  :class:`~syncos_jax.backbones.toy.train.TrainConfig`) and ``run`` (``checkpoint_every``,
  ``max_minutes``). An unknown key is an error that names it.
* optax AdamW with warm-up and cosine decay, EMA weights, a tqdm bar.
* Resumable: an orbax CheckpointManager under ``WORKDIR/checkpoints`` holds the full training
  state (params, EMA, optimiser, step); rerunning the same command after a kill resumes from the
  newest complete checkpoint. Batches are a deterministic function of the step, so a resumed run
  sees the same data as an uninterrupted one and ends bit for bit where it would have. A workdir
  holding a run of another ``seed``, ``model`` or ``train`` is refused (``run`` may change).
* Writes ``WORKDIR/settings.json`` (the resolved config), ``WORKDIR/loss.csv`` (step, loss and
  the cumulative training wall time in seconds, summed over resumes), ``WORKDIR/loss.png`` and
  ``WORKDIR/run.json`` (steps done, training minutes, number of sessions, CPU count, versions; no
  machine paths), and at the end — or when ``run.max_minutes`` of training time are spent — the EMA
  weights to ``--export`` (default: the shipped ``syncos_jax/backbones/toy/toy_dit.safetensors``),
  with the config that made them in its metadata.
* ``--init WEIGHTS`` starts from a toy weights file (params and EMA both set to its weights, a
  fresh optimiser) instead of a random network: a fine-tune, e.g. to screen a change to the loss
  cheaply before a from-scratch run. The file's name and SHA-256 are recorded in
  ``settings.json``; its config must equal the ``model`` section, except that the section may
  switch on a field of :data:`GROWABLE` (``pixel_film``), whose new modules start as exact no-ops
  (zero-initialised): the fine-tune then starts from the file's function with the module grown.
* ``--workers N`` renders the batches in ``N`` spawned processes, ``2N`` steps ahead of training
  (default 0: in the training process, between steps). Each batch is a function of its step alone,
  so the run is the same either way; the workers only pay off where the step itself is fast (an
  accelerator), since on a CPU they compete with training for the same cores.
* ``--export-only`` trains nothing: it writes the EMA weights of the newest checkpoint of the run in
  ``--workdir`` (same config) to ``--export``, e.g. to evaluate a run from another shell while it
  trains.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import yaml
from flax import nnx
from tqdm import tqdm

from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT
from syncos_jax.backbones.toy.tokenizer import Tokenizer
from syncos_jax.backbones.toy.train import TrainConfig, TrainState, init_train_state, make_batch, make_optimizer, train_step
from syncos_jax.backbones.toy.weights import (DEFAULT_WEIGHTS, load_toy_model, read_toy_config, save_toy_weights,
                                              weights_sha256_16)
from syncos_jax.video import line_plot_png

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paths import REPO, repo_relative  # noqa: E402  (the experiments' path rule)

DEFAULT_CONFIG = os.path.join(REPO, "experiments", "configs", "toy.yaml")
RUN_DEFAULTS = {"checkpoint_every": 100, "max_minutes": None}
# Fields added to the configs after runs were recorded, with the value that means what those runs did:
# a settings.json without them describes the same run (resuming it is allowed).
LEGACY_FIELDS = {"model": {"pixel_head": 0, "unet": 0, "joint_attention": False, "pixel_film": False},
                 "train": {"image_batch_size": 0, "mid_noise_fraction": 0.0, "mid_noise_min": 50, "mid_noise_max": 450,
                           "object_weight": 0.0, "low_noise_fraction": 0.0, "low_noise_max": 60}}


def with_legacy_fields(section: str, fields: dict) -> dict:
    """``fields`` of a recorded ``section`` ("model" or "train") with the fields added since it was
    recorded filled in (:data:`LEGACY_FIELDS`): comparable with today's ``to_dict()``."""
    return {**LEGACY_FIELDS[section], **fields}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="the YAML training config")
    ap.add_argument("--workdir", default=os.path.join("experiments", "results", "toy_run"))
    ap.add_argument("--export", default=DEFAULT_WEIGHTS, help="where the EMA weights are written")
    ap.add_argument("--init", default=None, metavar="WEIGHTS",
                    help="start from these toy weights (a fine-tune) instead of a random network; the config's model "
                         "must be the file's, except that it may switch on the fields of GROWABLE (pixel_film)")
    ap.add_argument("--workers", type=int, default=0, metavar="N",
                    help="render batches in N spawned processes ahead of training (default 0: in this process); "
                         "the run is the same either way")
    ap.add_argument("--export-only", action="store_true",
                    help="train nothing: write the EMA weights of the newest checkpoint under --workdir to --export "
                         "(to evaluate a run while it trains, from another shell)")
    return ap.parse_args(argv)


def load_config(path: str) -> tuple[int, ToyConfig, TrainConfig, dict]:
    """``(seed, ToyConfig, TrainConfig, run settings)`` from a YAML config file.

    Raises:
      ValueError: naming the file and the key, for an unknown key, a missing section, or a value
        the configs reject.
    """
    with open(path) as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with keys seed, model, train, run; got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"seed", "model", "train", "run"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {unknown}; expected seed, model, train, run")
    sections = {}
    for name, known in (("model", ToyConfig.__dataclass_fields__), ("train", TrainConfig.__dataclass_fields__),
                        ("run", RUN_DEFAULTS)):
        sec = raw.get(name) or {}
        if not isinstance(sec, dict):
            raise ValueError(f"{path}: '{name}' must be a mapping, got {type(sec).__name__}")
        bad = sorted(set(sec) - set(known))
        if bad:
            raise ValueError(f"{path}: unknown keys in '{name}': {bad}; expected some of {sorted(known)}")
        sections[name] = sec
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{path}: 'seed' must be an integer >= 0, got {seed!r}")
    try:
        model_cfg = ToyConfig(**sections["model"])
        train_cfg = TrainConfig(**sections["train"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    run = {**RUN_DEFAULTS, **sections["run"]}
    if not isinstance(run["checkpoint_every"], int) or run["checkpoint_every"] < 1:
        raise ValueError(f"{path}: run.checkpoint_every must be a positive integer, got {run['checkpoint_every']!r}")
    if run["max_minutes"] is not None and (not isinstance(run["max_minutes"], (int, float)) or run["max_minutes"] < 0):
        raise ValueError(f"{path}: run.max_minutes must be a number >= 0 or null, got {run['max_minutes']!r}")
    return seed, model_cfg, train_cfg, run


# Model fields whose switch from this value to another only adds zero-initialised modules (the
# grown model computes exactly the file's function at the start): `--init` may grow them.
GROWABLE = {"pixel_film": False}


def init_from_weights(path: str, model_cfg: ToyConfig, train_cfg: TrainConfig, seed: int = 0) -> tuple[TrainState, dict]:
    """A :class:`TrainState` at step 0 whose params and EMA are the weights in ``path`` (a fresh
    optimiser), and the record of where they came from (``weights``, ``sha256_16``; and ``grown``,
    the fields of :data:`GROWABLE` switched on, where there are any).

    ``model_cfg`` may differ from the file's config in the fields of :data:`GROWABLE` (switched on
    from their no-op value): the new modules take their initialisation from a fresh model of
    ``seed`` — zero where they act — and every other parameter is the file's.

    Raises:
      ValueError: if the file's config differs from ``model_cfg`` otherwise (naming the fields), or
        the file is not a toy weights file.
    """
    file_cfg, _ = read_toy_config(path)
    diff = {k: (v, getattr(model_cfg, k)) for k, v in file_cfg.to_dict().items() if v != getattr(model_cfg, k)}
    grown = sorted(k for k, (a, _) in diff.items() if k in GROWABLE and a == GROWABLE[k])
    rest = {k: d for k, d in diff.items() if k not in grown}
    if rest:
        raise ValueError(f"--init {path}: its model config differs from the config's 'model' in "
                         + ", ".join(f"{k} (file {a!r}, config {b!r})" for k, (a, b) in sorted(rest.items()))
                         + (f" (only {sorted(GROWABLE)} may be switched on by --init)" if GROWABLE else ""))
    _, params = nnx.split(load_toy_model(path))
    if grown:  # the file's parameters into a fresh model of model_cfg, whose extra modules start as no-ops
        _, fresh = nnx.split(ToyVideoDiT(model_cfg, rngs=nnx.Rngs(seed)))
        old = dict(nnx.to_flat_state(params))
        params = nnx.from_flat_state([(k, old.get(k, v)) for k, v in nnx.to_flat_state(fresh)])
    digest = weights_sha256_16(path)
    state = TrainState(params, jax.tree.map(jnp.copy, params), make_optimizer(train_cfg).init(params), jnp.zeros((), jnp.int32))
    record = {"weights": repo_relative(path), "sha256_16": digest}
    return state, (record | {"grown": grown}) if grown else record


def _render_worker_init() -> None:
    """A batch-rendering worker computes with numpy only: keep JAX there off the accelerator (on a
    GPU machine each worker would otherwise reserve most of the device's memory if anything in it
    touched JAX)."""
    jax.config.update("jax_platforms", "cpu")


def batch_stream(steps: range, seed: int, train_cfg: TrainConfig, model_cfg: ToyConfig, tokenizer: Tokenizer,
                 workers: int = 0):
    """The training batches of ``steps`` in order: ``make_batch(seed * 1_000_003 + step, ...)``.

    With ``workers > 0`` they are rendered by that many spawned processes, at most ``2 * workers``
    steps ahead of the consumer (bounded memory); the batches are the same as with ``workers = 0``.
    Closing the generator early (a run out of time) cancels the batches not yet started.
    """
    seeds = (seed * 1_000_003 + step for step in steps)
    if workers <= 0:
        for s in seeds:
            yield make_batch(s, train_cfg, model_cfg, tokenizer)
        return
    # spawn, not fork: the parent runs JAX's threads, which a fork would copy in an unknown state
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_render_worker_init)
    try:
        pending = collections.deque()
        for s in seeds:
            pending.append(pool.submit(make_batch, s, train_cfg, model_cfg, tokenizer))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.workers < 0:
        print(f"error: --workers must be >= 0, got {args.workers}", file=sys.stderr)
        return 2
    try:
        seed, model_cfg, train_cfg, run = load_config(args.config)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings_path = os.path.join(args.workdir, "settings.json")
    if args.export_only and not os.path.exists(settings_path):
        print(f"error: --export-only: {settings_path} does not exist (no run in --workdir {args.workdir!r})", file=sys.stderr)
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    settings = {"seed": seed, "model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "run": run,
                "config": repo_relative(args.config)}  # no machine paths
    graphdef, state = init_train_state(model_cfg, train_cfg, seed)
    if args.init and not args.export_only:  # (--export-only reads the run's own record instead)
        try:
            state, settings["init"] = init_from_weights(args.init, model_cfg, train_cfg, seed)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            saved = json.load(f)
        # what decides the result must match; the run section (checkpoint spacing, time limit) may change
        for section in LEGACY_FIELDS:
            if isinstance(saved.get(section), dict):
                saved[section] = with_legacy_fields(section, saved[section])
        # the init counts by its content (the same file moved or renamed is the same run); --export-only
        # needs no --init: the run's own record says where it started
        digest = lambda record: (record.get("init") or {}).get("sha256_16")  # noqa: E731
        init_differs = not args.export_only and digest(saved) != digest(settings)
        if init_differs or any(saved.get(k) != settings.get(k) for k in ("seed", "model", "train")):
            print(f"error: {settings_path} holds a run of different settings; use another --workdir", file=sys.stderr)
            return 2
    else:
        with open(settings_path, "w") as f:
            json.dump(settings, f, indent=2)

    manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(args.workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, read_only=args.export_only),
    )  # read-only for --export-only: the run may be writing to it from another process
    start = manager.latest_step()
    if start is not None:
        state = manager.restore(start, args=ocp.args.StandardRestore(state))
        if not args.export_only:
            print(f"resumed from step {start}", flush=True)
    elif args.export_only:
        print(f"error: --export-only: no checkpoint under {os.path.join(args.workdir, 'checkpoints')!r} yet", file=sys.stderr)
        return 2
    start = int(state.step)
    if args.export_only:
        save_toy_weights(args.export, model_cfg, state.ema,
                         {"step": start, "seed": seed, "train": train_cfg.to_dict(), "config": settings["config"],
                          **({"init": saved["init"]} if "init" in saved else {})})
        print(f"EMA weights of step {start} (the newest checkpoint) written to {args.export}", flush=True)
        return 0
    log_path = os.path.join(args.workdir, "loss.csv")
    run_path = os.path.join(args.workdir, "run.json")
    rows = []
    if os.path.exists(log_path):
        with open(log_path) as f:
            rows = [(int(r["step"]), float(r["loss"]), float(r["seconds"])) for r in csv.DictReader(f) if int(r["step"]) < start]
    sessions = 1
    if start and os.path.exists(run_path):
        with open(run_path) as f:
            sessions = int(json.load(f).get("sessions", 0)) + 1
    spent = rows[-1][2] if rows else 0.0  # training seconds before this session

    def write_log(done: int):
        with open(log_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "seconds"])
            w.writerows((s, f"{l:.6g}", f"{t:.3f}") for s, l, t in rows)
        if len(rows) > 1:
            steps, losses = np.array([r[:2] for r in rows]).T
            line_plot_png(os.path.join(args.workdir, "loss.png"), steps, losses,
                          title="toy model from scratch: v-prediction loss", log_y=True)
        record = {"steps_done": done, "total_steps": train_cfg.total_steps, "finished": done >= train_cfg.total_steps,
                  "training_minutes": round((rows[-1][2] if rows else spent) / 60.0, 2), "sessions": sessions,
                  "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
                  "platform": jax.default_backend()}
        with open(run_path, "w") as f:
            json.dump(record, f, indent=2)

    tokenizer = Tokenizer(model_cfg.text_length)
    base_key = jax.random.key(seed)
    t0 = time.time()
    bar = tqdm(range(start, train_cfg.total_steps), initial=start, total=train_cfg.total_steps, desc="train", dynamic_ncols=True)
    smooth = None
    done = start
    batches = batch_stream(range(start, train_cfg.total_steps), seed, train_cfg, model_cfg, tokenizer, args.workers)
    try:
        for step, batch in zip(bar, batches):
            state, loss = train_step(graphdef, train_cfg, state, batch.clips, batch.tokens, jax.random.fold_in(base_key, step),
                                     batch.images, batch.image_tokens, batch.clip_weights, batch.image_weights)
            loss = float(loss)
            smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
            rows.append((step, loss, spent + time.time() - t0))
            bar.set_postfix(loss=f"{smooth:.4f}")
            done = step + 1
            out_of_time = run["max_minutes"] is not None and rows[-1][2] > 60 * run["max_minutes"]
            if done % run["checkpoint_every"] == 0 or done == train_cfg.total_steps or out_of_time:
                manager.save(done, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
                write_log(done)
            if out_of_time:
                print(f"stopping: {run['max_minutes']} minutes of training spent, at step {done}", flush=True)
                break
    finally:  # also on an error or Ctrl-C: the rendering workers stop with the run
        bar.close()
        batches.close()
    write_log(done)
    save_toy_weights(args.export, model_cfg, state.ema,
                     {"step": done, "seed": seed, "train": train_cfg.to_dict(), "config": settings["config"],
                      **({"init": settings["init"]} if "init" in settings else {})})
    print(f"EMA weights of step {done} written to {args.export}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
