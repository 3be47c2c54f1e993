"""Does a toy model read the unprompted identity from the other frames of its clip?

    python experiments/identity_pooling.py --weights A.safetensors [B.safetensors ...] [--num 48]
                                           [--times 99 199 ... 899] [--json OUT.json] [--png OUT.png]

A model that keeps one shade and pattern through a chunk must decide them *jointly*: the noisy
frames of a clip all show the same object, so at a noise level where one frame says little about
its shade, eight frames together say more. This measures whether a model uses that.

It renders ``--num`` fresh single-event clips (``world.random_track``, no background change) and
noises each to every training time ``t`` (``x_t = α_t x_0 + σ_t ε``). Each model predicts
``x̂_0 = α_t x_t − σ_t v̂`` twice from the same noisy frames: from the **clip** (all 8 frames, as it
samples) and from each **frame** alone (a one-frame chunk, the same caption and time). The probes
of :mod:`syncos_jax.metrics` read the shade and pattern of every ``x̂_0`` frame
(:func:`identity_readings`), and the table gives, per ``t``:

* ``acc``: the fraction of frames read as the clip's true shade (pattern); chance is 1/3 (1/4);
* ``agree``: the fraction of a clip's frame pairs read alike (1 for a clip that keeps one identity,
  whatever it is);
* ``pool``: ``acc(clip) − acc(frame)``, what the other seven frames add.

As a reference, an ideal reader that is given everything but the identity (the track's layout and
background) reads the maximum-posterior shade and pattern from the same noisy clip
(:func:`identity_log_likelihood`, exact), from the whole clip (``bayes clip``) and from each frame
alone (``bayes frame``): what the noise at ``t`` still leaves readable, and what eight frames add to
one when a reader uses them all.

Where ``pool`` ≈ 0 at the noise levels at which the identity is being decided, each frame decides
it alone, and the frames of a sample drift apart from one another (flicker). One-step ``x̂_0`` is a
blurred posterior mean at high noise, where the probe may find no object (``found``); the readings
mean most from the middle noise levels down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from syncos_jax import metrics
from syncos_jax.backbones import toy
from syncos_jax.backbones.toy import world
from syncos_jax.schedules import cogvideox_2b

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toy_x0_error import _compiled, model_names  # noqa: E402  (one compilation per model object)

DEFAULT_TIMES = (99, 199, 299, 399, 499, 599, 699, 799, 899)
ATTRIBUTES = ("shade", "pattern")
CHANCE = {"shade": 1 / len(world.SHADES), "pattern": 1 / len(world.PATTERNS)}


def identity_readings(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(shade [F], pattern [F], found [F])`` read by the probes from ``frames: [F, H, W, 3]`` in
    ``[−1, 1]`` (−1 where no object is found)."""
    r = metrics.probe_frames(frames)
    return r.shade, r.pattern, r.found


def pair_agreement(values: np.ndarray) -> float:
    """The fraction of the pairs ``i < j`` of ``values: [F]`` with ``values[i] == values[j] >= 0``."""
    v = np.asarray(values)
    i, j = np.triu_indices(len(v), 1)
    if not len(i):
        raise ValueError(f"pair_agreement needs at least 2 values, got {len(v)}")
    return float(np.mean((v[i] == v[j]) & (v[i] >= 0)))


def identity_renders(track: world.Track) -> np.ndarray:
    """The track rendered with every identity: ``[n_shades, n_patterns, F, H, W, 3]`` in ``[−1, 1]``
    (the layout, colour and background as in ``track``; shade and pattern constant)."""
    full = lambda v: np.full_like(track.shade, v)  # noqa: E731
    return np.stack([np.stack([world.render(track._replace(shade=full(s), pattern=full(p)))
                               for p in range(len(world.PATTERNS))]) for s in range(len(world.SHADES))]).astype(np.float32)


def identity_log_likelihood(x_t: np.ndarray, renders: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """``log p(x_t,k | identity)`` up to a constant, per frame: ``[F, n_shades, n_patterns]``, for the
    noisy frames ``x_t: [F, H, W, 3]`` and ``renders: [n_shades, n_patterns, F, H, W, 3]``
    (:func:`identity_renders`): ``−‖x_t,k − α·r_k‖² / (2σ²)``. With everything but the identity known
    (the layout given), this is the exact posterior of the identity under a uniform prior: summed
    over the frames for the whole clip, or one frame alone."""
    d = ((np.asarray(x_t, np.float64)[None, None] - alpha * renders.astype(np.float64)) ** 2).sum((3, 4, 5))
    return np.moveaxis(-d / (2.0 * sigma**2), -1, 0)


def bayes_readings(log_lik: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The maximum-posterior shade and pattern of the clip and of each frame alone, from
    ``log_lik: [F, n_shades, n_patterns]`` (:func:`identity_log_likelihood`), each attribute
    marginalised over the other: ``(clip_shade, clip_pattern, frame_shade [F], frame_pattern [F])``."""
    def marg(ll, axis):  # log Σ exp over the other attribute
        m = ll.max(axis=axis, keepdims=True)
        return (m + np.log(np.exp(ll - m).sum(axis=axis, keepdims=True))).squeeze(axis)

    clip = log_lik.sum(0)
    return (int(np.argmax(marg(clip, 1))), int(np.argmax(marg(clip, 0))),
            np.argmax(marg(log_lik, 2), axis=1), np.argmax(marg(log_lik, 1), axis=1))


def predict_x0(backbone, x_t: np.ndarray, t: int, tokens: np.ndarray, batch: int) -> np.ndarray:
    """``x̂_0 = α_t x_t − σ_t v̂`` for ``x_t: [N, f, H, W, 3]`` (``f`` = 8 or 1) at time ``t``."""
    schedule = cogvideox_2b()
    a, s = float(schedule.train_alphas[t]), float(schedule.train_sigmas[t])
    call = _compiled(backbone.model)
    out = []
    for i in range(0, len(x_t), batch):
        xb = jnp.asarray(x_t[i : i + batch])
        v = call(xb, jnp.full((len(xb),), t), jnp.asarray(tokens[i : i + batch]))
        out.append(np.asarray(a * xb - s * v))
    return np.concatenate(out)


def pooling_table(backbone, texts, tracks, clips: np.ndarray, times, seed: int = 0) -> dict:
    """``{t: {"clip": {...}, "frame": {...}}}`` with, for the ``x̂_0`` of the whole clip and of each
    frame alone, ``shade_acc``, ``pattern_acc``, ``shade_agree``, ``pattern_agree`` and ``found``
    (means over the clips and frames of ``clips: [N, F, H, W, 3]``; the truth from ``tracks``),
    under the noise ``fold_in(key(seed), t)``."""
    schedule = cogvideox_2b()
    N, F = clips.shape[:2]
    tokens = np.asarray(backbone.encode(list(texts)))
    renders = [identity_renders(tr) for tr in tracks]
    out = {}
    for t in tqdm(times, desc="noise levels", leave=False):
        a, s = float(schedule.train_alphas[t]), float(schedule.train_sigmas[t])
        eps = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(seed), t), clips.shape))
        x_t = (a * clips + s * eps).astype(np.float32)
        hats = {"clip": predict_x0(backbone, x_t, t, tokens, 16),
                "frame": predict_x0(backbone, x_t.reshape(N * F, 1, *clips.shape[2:]), t, np.repeat(tokens, F, axis=0),
                                    64).reshape(clips.shape)}
        row = {}
        bayes = {"bayes_clip": {"shade": [], "pattern": []}, "bayes_frame": {"shade": [], "pattern": []}}
        for i, tr in enumerate(tracks):
            cs, cp, fs, fp = bayes_readings(identity_log_likelihood(x_t[i], renders[i], a, s))
            bayes["bayes_clip"]["shade"].append(cs == tr.shade[0])
            bayes["bayes_clip"]["pattern"].append(cp == tr.pattern[0])
            bayes["bayes_frame"]["shade"].append(np.mean(fs == tr.shade))
            bayes["bayes_frame"]["pattern"].append(np.mean(fp == tr.pattern))
        for kind, acc in bayes.items():
            row[kind] = {f"{k}_acc": float(np.mean(v)) for k, v in acc.items()}
        for kind, hat in hats.items():
            acc = {"shade": [], "pattern": []}
            agree = {"shade": [], "pattern": []}
            confusion = {"shade": np.zeros((len(world.SHADES), len(world.SHADES) + 1), int),
                         "pattern": np.zeros((len(world.PATTERNS), len(world.PATTERNS) + 1), int)}
            found = []
            for i, tr in enumerate(tracks):
                shade, pattern, ok = identity_readings(hat[i])
                for name, read, truth in (("shade", shade, tr.shade), ("pattern", pattern, tr.pattern)):
                    acc[name].append(np.mean(read == truth))
                    agree[name].append(pair_agreement(read))
                    np.add.at(confusion[name], (truth, read), 1)  # read −1 (no object) lands in the last column
                found.append(np.mean(ok))
            row[kind] = {**{f"{k}_acc": float(np.mean(v)) for k, v in acc.items()},
                         **{f"{k}_agree": float(np.mean(v)) for k, v in agree.items()}, "found": float(np.mean(found)),
                         **{f"{k}_confusion": v.tolist() for k, v in confusion.items()}}
        out[int(t)] = row
    return out


def _plot(path: str, tables: dict, times) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, attr in zip(axes, ATTRIBUTES):
        for c, (name, table) in zip(colours, tables.items()):
            ax.plot(times, [table[t]["clip"][f"{attr}_acc"] for t in times], "-o", color=c, ms=3, label=f"{name}: clip")
            ax.plot(times, [table[t]["frame"][f"{attr}_acc"] for t in times], "--", color=c, label=f"{name}: one frame")
        first = next(iter(tables.values()))
        ax.plot(times, [first[t]["bayes_clip"][f"{attr}_acc"] for t in times], "-", color="k", lw=1.2,
                label="ideal reader, layout given: clip")
        ax.plot(times, [first[t]["bayes_frame"][f"{attr}_acc"] for t in times], "--", color="k", lw=1.2,
                label="ideal reader, layout given: one frame")
        ax.axhline(CHANCE[attr], color="grey", lw=0.8, ls=":", label="chance")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("training time t of the one-step x̂_0 (noise grows →)")
        ax.set_title(f"{attr} of x̂_0 read as the truth")
    axes[0].set_ylabel("fraction of frames")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--num", type=int, default=48, help="clips (8 frames each)")
    ap.add_argument("--times", type=int, nargs="+", default=list(DEFAULT_TIMES))
    ap.add_argument("--seed", type=int, default=7, help="the clips' seed")
    ap.add_argument("--json", default=None)
    ap.add_argument("--png", default=None)
    args = ap.parse_args(argv)
    if args.num < 1:
        ap.error(f"--num must be >= 1, got {args.num}")
    if any(not 0 <= t < 999 for t in args.times):
        ap.error(f"--times must lie in [0, 998] (α_999 = 0), got {args.times}")
    try:
        names = model_names(args.weights)
    except ValueError as e:
        ap.error(str(e))

    rng = np.random.default_rng(args.seed)
    pairs = [world.random_track(rng, 8, 0.0) for _ in range(args.num)]
    texts, tracks = [p[0] for p in pairs], [p[1] for p in pairs]
    clips = np.stack([world.render(tr) for tr in tracks]).astype(np.float32)
    tables = {}
    for name, w in zip(names, args.weights):
        backbone = toy.load_default(w)
        tables[name] = pooling_table(backbone, texts, tracks, clips[:, : backbone.chunk_frames], args.times)
    schedule = cogvideox_2b()
    for name, table in tables.items():
        print(f"\n{name}: the probes' reading of the one-step x̂_0 ({args.num} clips of 8 frames; chance: shade "
              f"{CHANCE['shade']:.2f}, pattern {CHANCE['pattern']:.2f})")
        print(f"{'t':>5}{'α_t':>7} | {'found':>5} | {'shade acc clip':>14}{'frame':>7}{'pool':>7}{'agree clip':>11}{'frame':>7}"
              f"{'bayes clip':>11}{'frame':>7} | {'pattern acc clip':>16}{'frame':>7}{'pool':>7}{'agree clip':>11}{'frame':>7}"
              f"{'bayes clip':>11}{'frame':>7}")
        for t in args.times:
            c, f = table[t]["clip"], table[t]["frame"]
            cells = " | ".join(f"{c[a + '_acc']:>{14 if a == 'shade' else 16}.3f}{f[a + '_acc']:>7.3f}"
                               f"{c[a + '_acc'] - f[a + '_acc']:>+7.3f}{c[a + '_agree']:>11.3f}{f[a + '_agree']:>7.3f}"
                               f"{table[t]['bayes_clip'][a + '_acc']:>11.3f}{table[t]['bayes_frame'][a + '_acc']:>7.3f}"
                               for a in ATTRIBUTES)
            print(f"{t:>5}{float(schedule.train_alphas[t]):>7.3f} | {c['found']:>5.2f} | {cells}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"num": args.num, "seed": args.seed, "times": list(args.times),
                       "models": {n: {str(t): row for t, row in tb.items()} for n, tb in tables.items()}}, fh, indent=2)
    if args.png:
        os.makedirs(os.path.dirname(args.png) or ".", exist_ok=True)
        _plot(args.png, tables, list(args.times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
