"""How well a toy model denoises, noise level by noise level: the error of its one-step ``x̂_0``.

    python experiments/toy_x0_error.py --weights A.safetensors [B.safetensors ...] [--num 32]
                                        [--times 1 19 59 199 499 799] [--swap shape colour ...] [--json OUT.json]

Renders ``--num`` training clips (``world.sample_batch``, a fixed seed), noises them to each
training time ``t`` (``x_t = α_t x_0 + σ_t ε``, the schedule the models train on) and asks each
model for ``x̂_0 = α_t x_t − σ_t v̂`` (v-prediction). Prints, per ``t``, the mean squared error of
``x̂_0`` against the render, and its ratio to that of the noisy input read as an estimate
(``x_t / α_t``, error ``σ_t² / α_t²``): ``1`` is a model that does nothing, ``0`` a perfect one.

The shapes world is piecewise constant with a small texture, so near ``t = 0`` a denoiser that knows
it should be almost exact; the ratio at small ``t`` shows how much of the world's fine detail a
network has learnt to draw (a ``3×3`` box filter, which knows nothing, has a ratio near ``1/9`` on
flat regions). The same clips and noise are used for every model, so the columns compare.

``--swap shape colour ...`` also measures how much each model *uses* each caption word: the same
noisy clips are denoised again under captions with one factor changed (:func:`swap_factor`: the
next value of that factor's list, cyclically; ``caption`` is the empty caption, the unconditional
model), and the table gives the ratio of that error to the error under the right caption, per
``t``. A model that ignores a word has ratio 1 for it; the world's exact denoiser has a ratio that
grows with ``t`` wherever the noisy input no longer shows that factor.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from syncos_jax.backbones import toy
from syncos_jax.backbones.toy import world
from syncos_jax.schedules import cogvideox_2b

DEFAULT_TIMES = (1, 5, 19, 59, 119, 199, 299, 499, 799)
FACTOR_VALUES = {"colour": world.COLOUR_NAMES, "shape": world.SHAPES, "size": world.SIZE_NAMES,
                 "motion": world.MOTION_NAMES, "background": world.BACKGROUND_NAMES}
SWAPS = (*FACTOR_VALUES, "caption")


def swap_factor(text: str, factor: str) -> str:
    """``text`` with one caption factor changed to the next value of its list (cyclically; a
    background is not changed to the background its event turns to), in the world's grammar;
    ``factor = "caption"`` gives the empty caption. Raises ``ValueError`` naming
    the factor for one that is not in :data:`SWAPS`."""
    if factor == "caption":
        return ""
    if factor not in FACTOR_VALUES:
        raise ValueError(f"factor must be one of {SWAPS}, got {factor!r}")
    f = world.parse_caption(text)
    values = FACTOR_VALUES[factor]
    i = values.index(getattr(f, factor))
    new = next(v for v in values[i + 1 :] + values[:i] if not (factor == "background" and v == f.then))
    return world.caption(**{**f._asdict(), factor: new})


def model_names(weights) -> list[str]:
    """A short name per weights file for tables and JSON (no machine paths): its folder, or
    ``folder/file`` where two files share a folder. Raises ``ValueError`` if a file is named twice."""
    names = [os.path.basename(os.path.dirname(os.path.abspath(w))) for w in weights]
    if len(set(names)) < len(names):
        names = [f"{n}/{os.path.basename(w)}" for n, w in zip(names, weights)]
    if len(set(names)) < len(names):
        raise ValueError(f"--weights names the same file twice: {list(weights)}")
    return names


@functools.lru_cache(maxsize=4)
def _compiled(model):
    """``jax.jit`` of ``model(x, t, tokens)``, one per model object, so that measuring a model again
    (under swapped captions) reuses its compilation instead of tracing a fresh closure."""
    return jax.jit(lambda x, t, tok: model(x, t, tok))


def x0_errors(backbone, clips: np.ndarray, texts, times, seed: int = 0, batch: int = 16) -> dict:
    """``{t: (mse of x̂_0, mse of x_t / α_t)}`` for ``clips: [N, F, H, W, 3]`` in ``[−1, 1]``
    captioned ``texts``, under the noise ``fold_in(key(seed), t)``."""
    schedule = cogvideox_2b()
    call = _compiled(backbone.model)
    tokens = np.asarray(backbone.encode(list(texts)))
    x0 = jnp.asarray(clips)
    out = {}
    for t in times:
        a, s = float(schedule.train_alphas[t]), float(schedule.train_sigmas[t])
        eps = jax.random.normal(jax.random.fold_in(jax.random.key(seed), t), x0.shape)
        x_t = a * x0 + s * eps
        err = 0.0
        for i in range(0, len(x0), batch):
            v = call(x_t[i : i + batch], jnp.full((len(x_t[i : i + batch]),), t), tokens[i : i + batch])
            err += float(jnp.sum((a * x_t[i : i + batch] - s * v - x0[i : i + batch]) ** 2))
        out[int(t)] = (err / x0.size, (s / a) ** 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--num", type=int, default=32, help="clips (8 frames each)")
    ap.add_argument("--times", type=int, nargs="+", default=list(DEFAULT_TIMES))
    ap.add_argument("--seed", type=int, default=99, help="the clips' seed (world.sample_batch)")
    ap.add_argument("--swap", nargs="*", default=[], choices=SWAPS,
                    help="caption factors to change, one at a time: the ratio of the error to the right caption's")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.num < 1:
        ap.error(f"--num must be >= 1, got {args.num}")
    if any(not 0 <= t < 999 for t in args.times):  # α_999 = 0 (zero terminal SNR): no x_t / α_t to compare with
        ap.error(f"--times must lie in [0, 998], got {args.times}")

    texts, clips, _ = world.sample_batch(args.seed, args.num, 8, 0.2, 0.3)
    results, swapped = {}, {}
    for w in args.weights:
        backbone = toy.load_default(w)
        results[w] = x0_errors(backbone, clips[:, : backbone.chunk_frames], texts, args.times)
        swapped[w] = {f: x0_errors(backbone, clips[:, : backbone.chunk_frames], [swap_factor(t, f) for t in texts], args.times)
                      for f in args.swap}
    try:
        names = model_names(args.weights)
    except ValueError as e:
        ap.error(str(e))
    print(f"mse of the one-step x̂_0 (ratio to that of x_t/α_t), {args.num} clips")
    print(f"{'t':>5}{'σ_t':>7}  " + "".join(f"{n[-20:]:>22}" for n in names))
    schedule = cogvideox_2b()
    for t in args.times:
        row = "".join(f"{results[w][t][0]:>14.5f} ({results[w][t][0] / results[w][t][1]:.3f})" for w in args.weights)
        print(f"{t:>5}{float(schedule.train_sigmas[t]):>7.3f}  {row}")
    for n, w in zip(names, args.weights):
        if args.swap:
            print(f"\n{n}: error with one caption factor changed, as a multiple of the error with the right caption")
            print(f"{'t':>5}" + "".join(f"{f:>12}" for f in args.swap))
            for t in args.times:
                print(f"{t:>5}" + "".join(f"{swapped[w][f][t][0] / results[w][t][0]:>12.3f}" for f in args.swap))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        record = {"num": args.num, "seed": args.seed,
                  "models": {n: {str(t): {"mse": e, "mse_input": r,
                                          **{f"mse_swapped_{f}": swapped[w][f][t][0] for f in args.swap}}
                                 for t, (e, r) in results[w].items()}
                             for n, w in zip(names, args.weights)}}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
