"""What a toy model draws in one frame: single-frame DDIM samples judged by the probes.

    python experiments/eval_toy_images.py --weights FILE [--num 96] [--steps 50] [--guidance G]
                                           [--eta 0] [--seed 1234] [--json OUT.json] [--grid OUT.png]

A diagnostic of appearance alone, apart from motion and time: ``--num`` random captions without
a background change, one frame each (the model run on a one-frame clip, as in joint image-video
training), deterministic DDIM (``--eta 1``: stochastic, ancestral-like DDIM, to tell a sampler's
failure from a model's), and for each frame the probes' colour, shape, size and background
against the caption, and the shade and pattern it shows (their histograms must cover their range;
no caption names them). A picture (``--grid``) puts each sample beside a render of its caption,
which is what a reader wants to see before any number: rows of ``(sample | render)`` pairs.

It is cheap (a frame costs an eighth of a clip), so short training runs of different networks can be
compared on what they draw (``experiments/results/toy_recipes/image_only/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from syncos_jax import metrics
from syncos_jax.backbones import toy
from syncos_jax.backbones.toy import world
from syncos_jax.backbones.toy.model import toy_denoiser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_toy_model import ddim_batch, weights_record  # noqa: E402

FACTORS = ("colour", "shape", "size", "background")


def judge_frame(text: str, frame: np.ndarray) -> dict:
    """The probes' reading of one frame ``[H, W, 3]`` in ``[−1, 1]`` against its caption: per named
    factor whether it is right, the shape asked and read (``−1``: no object), and the shade and
    pattern read (``−1``: no object)."""
    c = world.parse_caption(text)
    r = metrics.probe_frames(frame[None])
    asked = {"colour": world.COLOUR_NAMES.index(c.colour), "shape": world.SHAPES.index(c.shape),
             "size": world.SIZE_NAMES.index(c.size), "background": world.BACKGROUND_NAMES.index(c.background)}
    read = {k: int(getattr(r, k)[0]) for k in FACTORS}
    return {**{k: read[k] == asked[k] for k in FACTORS}, "shape_pair": (asked["shape"], read["shape"]),
            "shade": int(r.shade[0]), "pattern": int(r.pattern[0])}


def summarise(judged: list[dict]) -> dict:
    """Accuracy per factor and per asked shape, the shape confusion (rows asked, columns read, last
    column none) and the shade and pattern histograms (with ``none``)."""
    out = {k: float(np.mean([j[k] for j in judged])) for k in FACTORS}
    conf = np.zeros((len(world.SHAPES), len(world.SHAPES) + 1), int)
    for j in judged:
        a, r = j["shape_pair"]
        conf[a, r] += 1  # r = −1 lands in the last column
    for i, name in enumerate(world.SHAPES):
        out[f"shape_{name}"] = float(conf[i, i] / max(conf[i].sum(), 1))
    out["shape_confusion"] = conf.tolist()
    for key, names in (("shade", world.SHADE_NAMES), ("pattern", world.PATTERNS)):
        v = np.array([j[key] for j in judged])
        out[f"{key}_histogram"] = {**{n: int((v == i).sum()) for i, n in enumerate(names)}, "none": int((v < 0).sum())}
    return out


def grid_png(samples: np.ndarray, renders: np.ndarray, per_row: int = 8, scale: int = 3) -> np.ndarray:
    """``samples, renders: [N, H, W, 3]`` in ``[−1, 1]`` → a uint8 picture of ``(sample | render)``
    pairs, ``per_row`` pairs a row, each pixel ``scale × scale``."""
    n, H, W, _ = samples.shape
    pair = np.concatenate([samples, np.ones((n, H, 1, 3)), renders, np.ones((n, H, 3, 3))], axis=2)
    rows = -(-n // per_row)
    pad = rows * per_row - n
    pair = np.concatenate([pair, np.ones((pad,) + pair.shape[1:])]) if pad else pair
    pair = np.concatenate([pair, np.ones((pair.shape[0], 3) + pair.shape[2:])], axis=1)
    img = pair.reshape(rows, per_row, *pair.shape[1:]).transpose(0, 2, 1, 3, 4).reshape(rows * pair.shape[1], -1, 3)
    img = ((np.clip(img, -1, 1) + 1) * 127.5).round().astype(np.uint8)
    return img.repeat(scale, 0).repeat(scale, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--num", type=int, default=96)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--eta", type=float, default=0.0, help="DDIM's eta (0: deterministic)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, default=48, help="frames per compiled call")
    ap.add_argument("--json", default=None)
    ap.add_argument("--grid", default=None, help="write a PNG of (sample | render) pairs")
    args = ap.parse_args(argv)
    for name in ("num", "steps", "batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.eta <= 1.0:
        ap.error(f"--eta must lie in [0, 1], got {args.eta}")

    backbone = toy.load_default(args.weights)
    guidance = backbone.default_guidance if args.guidance is None else args.guidance
    rng = np.random.default_rng(args.seed)
    texts = [world.random_caption(rng, event_probability=0.0) for _ in range(args.num)]
    defn, params = toy_denoiser(backbone.model, frames=1).split()  # one-frame chunks
    schedule = backbone.schedule(args.steps)
    null = backbone.encode([""])
    t0, frames = time.time(), []
    for i in range(0, args.num, args.batch):
        chunk = texts[i : i + args.batch]
        x_T = jax.random.normal(jax.random.fold_in(jax.random.key(args.seed), i), (len(chunk), 1) + backbone.frame_shape)
        tokens = backbone.encode(chunk)
        out = ddim_batch(defn, params, schedule, x_T, tokens, np.repeat(null, len(chunk), 0), guidance, eta=args.eta,
                         key=jax.random.fold_in(jax.random.key(args.seed + 1), i))
        frames.append(np.clip(np.asarray(out)[:, 0], -1, 1))
        print(f"  sampled {min(i + args.batch, args.num)}/{args.num} frames ({time.time() - t0:.0f} s)", flush=True)
    frames = np.concatenate(frames)
    seconds = time.time() - t0
    render_rng = np.random.default_rng(args.seed + 1)
    renders = np.stack([world.render(world.track_from_caption(t, 1, render_rng))[0] for t in texts])
    model = summarise([judge_frame(t, f) for t, f in zip(texts, frames)])
    ref = summarise([judge_frame(t, f) for t, f in zip(texts, renders)])

    print(f"\n{args.weights} (training step {backbone.info.get('step')}): {args.num} single frames, DDIM {args.steps} steps, "
          f"guidance {guidance:g}, eta {args.eta:g}, {seconds:.0f} s")
    print(f"{'factor':<18}{'model':>8}{'renders':>9}")
    for k in (*FACTORS, *(f"shape_{n}" for n in world.SHAPES)):
        print(f"{k:<18}{model[k]:>8.1%}{ref[k]:>9.1%}")
    print("shape confusion (rows asked: " + ", ".join(world.SHAPES) + "; columns read, then none):", model["shape_confusion"])
    for key in ("shade_histogram", "pattern_histogram"):
        print(f"{key.split('_')[0]}: " + ", ".join(f"{k} {v}" for k, v in model[key].items()))
    if args.grid:
        import imageio.v3 as iio

        os.makedirs(os.path.dirname(args.grid) or ".", exist_ok=True)
        iio.imwrite(args.grid, grid_png(frames, renders))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        record = {**weights_record(args.weights), "training_step": backbone.info.get("step"), "num": args.num,
                  "steps": args.steps, "guidance": guidance, "eta": args.eta, "seed": args.seed, "batch": args.batch,
                  "seconds": seconds, "model": model, "renders": ref}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
