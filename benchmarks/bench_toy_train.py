"""Seconds per training step of the toy model for a training config, and with config overrides.

    python benchmarks/bench_toy_train.py --config experiments/configs/toy.yaml --steps 6 \
        --set joint_attention=true

Builds the model and optimiser of the config, renders a few batches with the config's own batch
maker, compiles one step and times ``--steps`` more (the batch rendering is excluded; it runs on
the same cores in training, see ``loss.csv``'s ``minutes``). Prints the median, the compile time
and how many steps fit in the config's ``run.max_minutes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

from syncos_jax.backbones.toy.tokenizer import Tokenizer  # noqa: E402
from syncos_jax.backbones.toy.train import init_train_state, make_batch, train_step  # noqa: E402


def _parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise SystemExit(f"--set expects FIELD=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    low = value.lower()
    if low in ("true", "false"):
        return name, low == "true"
    for cast in (int, float):
        try:
            return name, cast(value)
        except ValueError:
            pass
    return name, value


def main(argv=None) -> int:
    from train_toy import load_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(ROOT, "experiments", "configs", "toy.yaml"))
    ap.add_argument("--steps", type=int, default=6, help="timed steps after the compiled one")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a ToyConfig or TrainConfig field (repeatable)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"--steps must be >= 1, got {args.steps}")
    seed, model_cfg, train_cfg, run = load_config(args.config)
    for name, value in map(_parse_override, args.set):
        if name in {f.name for f in dataclasses.fields(model_cfg)}:
            model_cfg = dataclasses.replace(model_cfg, **{name: value})
        elif name in {f.name for f in dataclasses.fields(train_cfg)}:
            train_cfg = dataclasses.replace(train_cfg, **{name: value})
        else:
            raise SystemExit(f"--set {name}: not a field of ToyConfig or TrainConfig")
    graphdef, state = init_train_state(model_cfg, train_cfg, seed)
    tok = Tokenizer(model_cfg.text_length)
    batches = [make_batch(seed * 1_000_003 + i, train_cfg, model_cfg, tok) for i in range(min(args.steps + 1, 4))]
    key = jax.random.key(seed)
    times = []
    for i in range(args.steps + 1):
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        state, loss = train_step(graphdef, train_cfg, state, b.clips, b.tokens, jax.random.fold_in(key, i), b.images,
                                 b.image_tokens, b.clip_weights, b.image_weights)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    per = float(np.median(times[1:]))
    params = sum(x.size for x in jax.tree.leaves(state.params))
    minutes = run.get("max_minutes")
    print(f"overrides: {args.set or 'none'}; params {params / 1e6:.3f} M")
    print(f"compile + first step {times[0]:.1f} s; median step {per:.3f} s over {args.steps} steps "
          f"(min {min(times[1:]):.3f}, max {max(times[1:]):.3f})")
    if minutes:
        print(f"steps in run.max_minutes={minutes}: ~{int(minutes * 60 / per)} (excluding batch rendering)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
