"""When does each attribute of a clip settle during sampling? The unprompted identity against t_min.

    python experiments/settling.py [--num 48] [--steps 50] [--weights FILE]

SynCoS couples its chunks only in stage 2, which runs at the steps with ``t > t_min`` (800: where
``α_t ≤ 0.07``). Its coupling can keep an unprompted attribute (shade, pattern, light) the same across a
long video only if that attribute is still being decided there. This script measures where it is.

It samples ``--num`` random captions as single 8-frame chunks with deterministic DDIM (as
``eval_toy_model.py``: default guidance, ``--steps`` steps), records every step's ``x̂_0`` (the
sampler's ``x0`` diagnostic), and reads each with the probes. Per step and attribute it reports
the fraction of frames whose reading of that step's ``x̂_0`` agrees with the final clip's
(shade, pattern, light, colour, shape, size, background; centre within 2 px), and the **settle step**:
the first step from which at least :data:`SETTLE_FRACTION` of the frames agree to the end, with
its model time ``t`` and ``α_t``.

Writes ``settling.{json,md,png}`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from syncos_jax import metrics
from syncos_jax.backbones import toy
from syncos_jax.backbones.toy import world
from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_toy_model import sample_captions, weights_record  # noqa: E402
from mechanism import settle_step as _settle_at  # noqa: E402

SETTLE_FRACTION = 0.9
CENTRE_TOLERANCE = 2.0  # px
ATTRIBUTES = ("shade", "pattern", "light", "colour", "shape", "size", "background", "centre")
T_MIN = 800


def agreement(readings: metrics.FrameReadings, final: metrics.FrameReadings) -> dict:
    """``{attribute: fraction of frames}`` whose reading equals the final clip's (an object must be
    found in both for the object's attributes, not for the scene's background and light; the centre
    within :data:`CENTRE_TOLERANCE` px)."""
    both = readings.found & final.found
    out = {}
    for a in ATTRIBUTES:
        if a == "centre":
            d = np.linalg.norm(np.nan_to_num(readings.centre - final.centre, nan=1e9), axis=-1)
            out[a] = float((both & (d <= CENTRE_TOLERANCE)).mean())
        elif a in ("background", "light"):
            out[a] = float((getattr(readings, a) == getattr(final, a)).mean())
        else:
            out[a] = float((both & (getattr(readings, a) == getattr(final, a))).mean())
    return out


def settle_step(curve) -> int | None:
    """The first step from which ``curve`` stays at or above :data:`SETTLE_FRACTION` (None: never)."""
    return _settle_at(curve, SETTLE_FRACTION)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=48)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--batch", type=int, default=16, help="clips per compiled call")
    ap.add_argument("--out", default=os.path.join("experiments", "results"))
    args = ap.parse_args(argv)
    if args.num < 1 or args.steps < 2 or args.batch < 1:
        ap.error(f"--num and --batch must be >= 1 and --steps >= 2, got {args.num}, {args.batch}, {args.steps}")

    backbone = toy.load_default(args.weights)
    rng = np.random.default_rng(args.seed)
    texts = [world.random_caption(rng) for _ in range(args.num)]
    schedule = backbone.schedule(args.steps)
    curves = {a: np.zeros(args.steps) for a in ATTRIBUTES}
    t0 = time.time()
    from tqdm import tqdm

    bar = tqdm(total=args.num, desc="settling", dynamic_ncols=True)
    for i, res in sample_captions(backbone, texts, args.steps, backbone.default_guidance, args.seed, args.batch,
                                  diagnostics=("x0",)):
        x0 = np.clip(np.asarray(res.diagnostics["x0"]), -1, 1)  # [B, S, F, H, W, C]
        final = np.clip(np.asarray(res.latents), -1, 1)
        for b in range(final.shape[0]):
            ref = metrics.probe_frames(final[b])
            for k in range(args.steps):
                for a, v in agreement(metrics.probe_frames(x0[b, k]), ref).items():
                    curves[a][k] += v / args.num
            bar.update(1)
    bar.close()
    ts = np.asarray(schedule.timesteps, np.float64)
    alphas = np.asarray(schedule.alphas, np.float64)
    above = int((ts > T_MIN).sum())
    settle = {}
    for a, c in curves.items():
        k = settle_step(c)
        settle[a] = {"step": k, "t": None if k is None else float(ts[k]), "alpha": None if k is None else float(alphas[k]),
                     "agreement_at_last_stage2_step": float(c[above - 1]) if above else None}
    record = {**weights_record(args.weights), "training_step": backbone.info.get("step"),
              "num": args.num, "steps": args.steps, "seed": args.seed, "guidance": backbone.default_guidance,
              "settle_fraction": SETTLE_FRACTION, "t_min": T_MIN, "steps_above_t_min": above,
              "t": ts.tolist(), "alpha": alphas.tolist(), "agreement": {a: c.tolist() for a, c in curves.items()},
              "settle": settle, "seconds": time.time() - t0}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "settling.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    lines = [f"# When attributes settle (single-chunk DDIM, {args.steps} steps, {args.num} captions)", "",
             f"Command: `python experiments/settling.py --num {args.num} --steps {args.steps}"
             + ("" if args.weights == DEFAULT_WEIGHTS else f" --weights {record['weights']}")
             + f"`, weights SHA-256 {record['weights_sha256_16']}…. SynCoS's stage 2 runs at the "
             f"first {above} steps (t > {T_MIN}). Settle step: the first step from which at least {SETTLE_FRACTION:.0%} of "
             "the frames' readings of that step's x̂₀ agree with the final clip, to the end.", "",
             "| attribute | settle step | t | α_t | agreement at the last stage-2 step |", "|---|---|---|---|---|"]
    for a, s in settle.items():
        fmt = lambda v, spec: "never" if v is None else format(v, spec)
        lines.append(f"| {a} | {fmt(s['step'], 'd')} | {fmt(s['t'], '.0f')} | {fmt(s['alpha'], '.3f')} | "
                     f"{fmt(s['agreement_at_last_stage2_step'], '.2f')} |")
    with open(os.path.join(args.out, "settling.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    import plotting

    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for a, c in curves.items():
        unprompted = a in metrics.UNPROMPTED_ATTRIBUTES
        ax.plot(ts, c, label=a, lw=2.2 if unprompted else 1.2, ls="-" if unprompted else "--")
    ax.axvspan(T_MIN, ts.max(), color="0.9", label=f"stage 2 (t > {T_MIN})")
    ax.invert_xaxis()
    ax.set_xlabel("model time t (sampling goes left to right)")
    ax.set_ylabel("frames agreeing with the final clip")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.set_title("When each attribute of x̂₀ settles (toy model, DDIM)")
    plotting.save(fig, os.path.join(args.out, "settling.png"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
