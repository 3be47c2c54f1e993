"""Train the toy text-to-video model on the shapes world (CPU is enough).

    python experiments/train_toy.py --workdir experiments/results/toy_run [--steps 4000] [--max-minutes 100]

* optax AdamW with warm-up and cosine decay, EMA weights, a tqdm bar.
* Resumable: an orbax CheckpointManager under ``WORKDIR/checkpoints`` holds the full training
  state (params, EMA, optimiser, step); rerunning the same command after a kill resumes from the
  newest complete checkpoint. ``--extend --steps N`` continues a finished run to ``N`` steps (the
  cosine schedule is recomputed for the new horizon; ``settings.json`` records the extension). Batches are a deterministic function of the step, so a resumed run
  sees the same data as an uninterrupted one.
* Writes ``WORKDIR/loss.csv``, ``WORKDIR/loss.png`` (the loss curve) and, at the end (or at each
  checkpoint with ``--export-every-checkpoint``), the EMA weights to ``--export``
  (default: the shipped ``syncos_jax/backbones/toy/toy_dit.safetensors``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file
import orbax.checkpoint as ocp
from tqdm import tqdm

from syncos_jax.backbones.toy.model import ToyConfig
from syncos_jax.backbones.toy.tokenizer import Tokenizer
from syncos_jax.backbones.toy.train import TrainConfig, init_train_state, make_batch, train_step
from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS, read_toy_config, save_toy_weights
from syncos_jax.video import line_plot_png


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="experiments/results/toy_run")
    ap.add_argument("--export", default=DEFAULT_WEIGHTS, help="where the EMA weights are written")
    ap.add_argument("--steps", type=int, default=TrainConfig.total_steps)
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.learning_rate)
    ap.add_argument("--warmup", type=int, default=TrainConfig.warmup_steps)
    ap.add_argument("--dim", type=int, default=ToyConfig.dim)
    ap.add_argument("--depth", type=int, default=ToyConfig.depth)
    ap.add_argument("--heads", type=int, default=ToyConfig.heads)
    ap.add_argument("--mlp-ratio", type=int, default=ToyConfig.mlp_ratio)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--export-every-checkpoint", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop (and export) after this much wall time")
    ap.add_argument("--init-from", default=None, metavar="WEIGHTS",
                    help="warm start: copy every parameter of this toy weights file whose path and shape match "
                         "into the fresh model (params and EMA); the others keep their initialisation")
    ap.add_argument("--no-local-mixing", action="store_true", help="build the model without the local mixing layer")
    ap.add_argument("--no-temporal-rope", action="store_true", help="build the model without rotary frame embeddings")
    ap.add_argument("--no-frame-conditioning", action="store_true",
                    help="build the model without the frame-by-text adaLN conditioning")
    ap.add_argument("--no-word-frame-conditioning", action="store_true",
                    help="build the model without the per-word, per-frame adaLN table")
    ap.add_argument("--high-noise-fraction", type=float, default=TrainConfig.high_noise_fraction,
                    help="fraction of clips whose time is drawn from [--high-noise-min, T)")
    ap.add_argument("--high-noise-min", type=int, default=TrainConfig.high_noise_min)
    ap.add_argument("--extend", action="store_true",
                    help="resume with a different --steps (the learning-rate schedule takes the new horizon)")
    return ap.parse_args(argv)


def warm_start(state, path: str):
    """``state`` with every parameter found (same path and shape) in the weights file ``path``
    copied into both ``params`` and ``ema``; prints what was copied and what was not."""
    tensors = load_file(path)
    copied, fresh = [], []

    def fill(p, v):
        key = ".".join(str(k) for k in p)
        if key in tensors and tensors[key].shape == tuple(v.shape):
            copied.append(key)
            return jnp.asarray(tensors[key], v.dtype)
        fresh.append(key)
        return v

    params = nnx.from_flat_state([(p, v.replace(fill(p, v[...]))) for p, v in nnx.to_flat_state(state.params)])
    unused = sorted(set(tensors) - set(copied))
    print(f"warm start from {path}: {len(copied)} parameters copied, {len(set(fresh))} freshly initialised"
          f" {sorted(set(fresh))[:8]}, {len(unused)} in the file unused {unused[:8]}", flush=True)
    ema = jax.tree.map(jnp.copy, params)
    return state._replace(params=params, ema=ema)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    model_cfg = ToyConfig(dim=args.dim, depth=args.depth, heads=args.heads, mlp_ratio=args.mlp_ratio,
                          local_mixing=not args.no_local_mixing, temporal_rope=not args.no_temporal_rope,
                          frame_conditioning=not args.no_frame_conditioning,
                          word_frame_conditioning=not args.no_word_frame_conditioning)
    train_cfg = TrainConfig(batch_size=args.batch_size, learning_rate=args.lr, warmup_steps=args.warmup, total_steps=args.steps,
                            high_noise_fraction=args.high_noise_fraction, high_noise_min=args.high_noise_min)
    settings = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "seed": args.seed}
    if args.init_from:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # recorded relative to the repo
        settings["init_from"] = {"path": os.path.relpath(os.path.abspath(args.init_from), repo),
                                 "extra": read_toy_config(args.init_from)[1]}
    settings_path = os.path.join(args.workdir, "settings.json")
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            saved = json.load(f)
        history = saved.pop("extensions", [])
        same_but_steps = {**saved, "train": {**saved["train"], "total_steps": train_cfg.total_steps}} == settings
        if saved != settings and not (args.extend and same_but_steps):
            print(f"error: {settings_path} holds different settings; use another --workdir"
                  + (" (or --extend to change only --steps)" if same_but_steps else ""), file=sys.stderr)
            return 2
        if saved != settings:  # --extend: a new cosine horizon from the current step on
            history.append({"from_total_steps": saved["train"]["total_steps"], "to_total_steps": train_cfg.total_steps})
            with open(settings_path, "w") as f:
                json.dump({**settings, "extensions": history}, f, indent=2)
    else:
        with open(settings_path, "w") as f:
            json.dump(settings, f, indent=2)

    graphdef, state = init_train_state(model_cfg, train_cfg, args.seed)
    manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(args.workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False),
    )
    start = manager.latest_step()
    if start is None and args.init_from:
        state = warm_start(state, args.init_from)
    if start is not None:
        state = manager.restore(start, args=ocp.args.StandardRestore(state))
        print(f"resumed from step {start}", flush=True)
    start = int(state.step)
    log_path = os.path.join(args.workdir, "loss.csv")
    rows = []
    if os.path.exists(log_path):
        with open(log_path) as f:
            rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f) if int(r["step"]) < start]

    def export(step):
        save_toy_weights(args.export, model_cfg, state.ema, {"step": step, "train": train_cfg.to_dict(), "seed": args.seed})

    def write_log():
        with open(log_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss"])
            w.writerows(rows)
        if len(rows) > 1:
            steps, losses = np.array(rows).T
            line_plot_png(os.path.join(args.workdir, "loss.png"), steps, losses, title="toy model: v-prediction loss (EMA of 50)", log_y=True)

    tokenizer = Tokenizer(model_cfg.text_length)
    base_key = jax.random.key(args.seed)
    t0 = time.time()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train", dynamic_ncols=True)
    smooth = None
    step = start
    for step in bar:
        batch = make_batch(args.seed * 1_000_003 + step, train_cfg, model_cfg, tokenizer)
        state, loss = train_step(graphdef, train_cfg, state, batch.clips, batch.tokens, jax.random.fold_in(base_key, step))
        loss = float(loss)
        smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
        rows.append((step, loss))
        bar.set_postfix(loss=f"{smooth:.4f}")
        done = step + 1
        out_of_time = args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes
        if done % args.checkpoint_every == 0 or done == args.steps or out_of_time:
            manager.save(done, args=ocp.args.StandardSave(state))
            manager.wait_until_finished()
            write_log()
            if args.export_every_checkpoint:
                export(done)
        if out_of_time:
            print(f"stopping after {args.max_minutes} minutes at step {done}", flush=True)
            break
    bar.close()
    write_log()
    export(int(state.step))
    print(f"EMA weights of step {int(state.step)} written to {args.export}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
