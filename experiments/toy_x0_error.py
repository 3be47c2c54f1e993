"""How well a toy model denoises, noise level by noise level: the error of its one-step ``x̂_0``.

    python experiments/toy_x0_error.py --weights A.safetensors [B.safetensors ...] [--num 32]
                                        [--times 1 19 59 199 499 799] [--swap shape colour ...] [--regions]
                                        [--json OUT.json]

Renders ``--num`` training clips (``world.sample_batch``, a fixed seed), noises them to each
training time ``t`` (``x_t = α_t x_0 + σ_t ε``, the schedule the models train on) and asks each
model for ``x̂_0 = α_t x_t − σ_t v̂`` (v-prediction). Prints, per ``t``, the mean squared error of
``x̂_0`` against the render, and its ratio to that of the noisy input read as an estimate
(``x_t / α_t``, error ``σ_t² / α_t²``): ``1`` is a model that does nothing, ``0`` a perfect one.

The shapes world is piecewise constant with a small texture, so near ``t = 0`` a denoiser that knows
it should be almost exact; the ratio at small ``t`` shows how much of the world's fine detail a
network has learnt to draw (a ``3×3`` box filter, which knows nothing, has a ratio near ``1/9`` on
flat regions). The same clips and noise are used for every model, so the columns compare.

``--regions`` splits the error by where the pixels lie (:func:`pixel_regions`): the flat
background, the flat interior of the object (where only its colour, shade and pattern ink are to
be read: a denoiser that reads them need only average its neighbours there) and the detail
(outlines, pattern borders, texture), each with the error of a ``3×3`` box filter of the noisy
input beside it (:func:`box_filter_error_maps`), all as ratios to the input's error.

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

Array = jax.Array

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


def x0_error_maps(backbone, clips: np.ndarray, texts, times, seed: int = 0, batch: int = 16) -> dict:
    """``{t: squared error of x̂_0 per pixel, [N, F, H, W] (mean over channels)}`` for
    ``clips: [N, F, H, W, 3]`` in ``[−1, 1]`` captioned ``texts``, under the noise
    ``fold_in(key(seed), t)``."""
    schedule = cogvideox_2b()
    call = _compiled(backbone.model)
    tokens = np.asarray(backbone.encode(list(texts)))
    x0 = jnp.asarray(clips)
    out = {}
    for t in times:
        a, s = float(schedule.train_alphas[t]), float(schedule.train_sigmas[t])
        x_t = a * x0 + s * _noise(seed, t, x0.shape)
        maps = []
        for i in range(0, len(x0), batch):
            v = call(x_t[i : i + batch], jnp.full((len(x_t[i : i + batch]),), t), tokens[i : i + batch])
            maps.append(np.asarray(jnp.mean((a * x_t[i : i + batch] - s * v - x0[i : i + batch]) ** 2, axis=-1)))
        out[int(t)] = np.concatenate(maps)
    return out


def x0_errors(backbone, clips: np.ndarray, texts, times, seed: int = 0, batch: int = 16) -> dict:
    """``{t: (mse of x̂_0, mse of x_t / α_t)}`` for ``clips: [N, F, H, W, 3]`` in ``[−1, 1]``
    captioned ``texts``, under the noise ``fold_in(key(seed), t)``."""
    return mean_errors(x0_error_maps(backbone, clips, texts, times, seed, batch))


def mean_errors(maps: dict) -> dict:
    """``{t: (mean of the map, mse of x_t / α_t = σ_t² / α_t²)}`` for per-pixel error maps ``{t: [...]}``."""
    schedule = cogvideox_2b()
    return {t: (float(m.mean()), float(schedule.train_sigmas[t] / schedule.train_alphas[t]) ** 2) for t, m in maps.items()}


def _noise(seed: int, t: int, shape) -> Array:
    return jax.random.normal(jax.random.fold_in(jax.random.key(seed), t), shape)


def _neighbours_3x3(x: np.ndarray) -> list[np.ndarray]:
    """The nine shifts of ``x: [N, F, H, W, C]`` that put each pixel's ``3×3`` neighbours (edges
    replicated) at its place."""
    H, W = x.shape[2:4]
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return [pad[:, :, dy : dy + H, dx : dx + W] for dy in (0, 1, 2) for dx in (0, 1, 2)]


def neighbourhood_changes(clips: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """``[N, F, H, W]`` bool: the pixels whose ``3×3`` neighbourhood (edges replicated) holds a pixel
    differing from them by more than ``tol`` in some channel — outlines, pattern borders and the
    backgrounds' texture; the rest is flat."""
    return np.any([np.abs(n - clips).max(-1) > tol for n in _neighbours_3x3(clips)], axis=0)


def pixel_regions(clips: np.ndarray, tracks) -> dict:
    """The pixels of ``clips: [N, F, H, W, 3]`` (rendered from ``tracks``) in three regions, each
    ``[N, F, H, W]`` bool: ``background`` (flat, outside the object), ``object`` (flat, inside it:
    where only its colour, shade and pattern ink are to be read) and ``detail``
    (:func:`neighbourhood_changes`: outlines, pattern borders, texture). They partition the pixels."""
    detail = neighbourhood_changes(clips)
    inside = np.stack([world.object_masks(tr, clips.shape[2]) for tr in tracks]) > 0
    return {"background": ~detail & ~inside, "object": ~detail & inside, "detail": detail}


def box_filter_error_maps(clips: np.ndarray, times, seed: int = 0) -> dict:
    """The reference that knows nothing of the world: ``{t: squared error per pixel [N, F, H, W]}``
    of the ``3×3`` mean (edges replicated) of ``x_t / α_t``, under the noise of :func:`x0_error_maps`."""
    schedule = cogvideox_2b()
    out = {}
    for t in times:
        a, s = float(schedule.train_alphas[t]), float(schedule.train_sigmas[t])
        box = sum(_neighbours_3x3(clips + (s / a) * np.asarray(_noise(seed, t, clips.shape)))) / 9
        out[int(t)] = np.mean((box - clips) ** 2, axis=-1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--num", type=int, default=32, help="clips (8 frames each)")
    ap.add_argument("--times", type=int, nargs="+", default=list(DEFAULT_TIMES))
    ap.add_argument("--seed", type=int, default=99, help="the clips' seed (world.sample_batch)")
    ap.add_argument("--swap", nargs="*", default=[], choices=SWAPS,
                    help="caption factors to change, one at a time: the ratio of the error to the right caption's")
    ap.add_argument("--regions", action="store_true",
                    help="also the error in flat background, flat object interior and detail pixels, "
                         "against a 3x3 box filter of the noisy input")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.num < 1:
        ap.error(f"--num must be >= 1, got {args.num}")
    if any(not 0 <= t < 999 for t in args.times):  # α_999 = 0 (zero terminal SNR): no x_t / α_t to compare with
        ap.error(f"--times must lie in [0, 998], got {args.times}")

    texts, clips, tracks = world.sample_batch(args.seed, args.num, 8, 0.2, 0.3)
    results, swapped, by_region = {}, {}, {}
    regions = pixel_regions(clips, tracks) if args.regions else {}
    schedule = cogvideox_2b()
    for w in args.weights:
        backbone = toy.load_default(w)
        f = backbone.chunk_frames
        if regions and f != clips.shape[1]:  # the box filter and the regions are those of the whole clips
            ap.error(f"--regions needs models of {clips.shape[1]} frames; {w} has chunks of {f}")
        maps = x0_error_maps(backbone, clips[:, :f], texts, args.times)
        results[w] = mean_errors(maps)
        by_region[w] = {t: {r: float(m[mask].mean()) for r, mask in regions.items()} for t, m in maps.items()}
        swapped[w] = {f: x0_errors(backbone, clips[:, : backbone.chunk_frames], [swap_factor(t, f) for t in texts], args.times)
                      for f in args.swap}
    try:
        names = model_names(args.weights)
    except ValueError as e:
        ap.error(str(e))
    print(f"mse of the one-step x̂_0 (ratio to that of x_t/α_t), {args.num} clips")
    print(f"{'t':>5}{'σ_t':>7}  " + "".join(f"{n[-20:]:>22}" for n in names))
    for t in args.times:
        row = "".join(f"{results[w][t][0]:>14.5f} ({results[w][t][0] / results[w][t][1]:.3f})" for w in args.weights)
        print(f"{t:>5}{float(schedule.train_sigmas[t]):>7.3f}  {row}")
    if regions:
        box = box_filter_error_maps(clips, args.times)
        box_by_region = {t: {r: float(m[mask].mean()) for r, mask in regions.items()} for t, m in box.items()}
        shares = ", ".join(f"{r} {mask.mean():.1%}" for r, mask in regions.items())
        print(f"\nthe same ratio by region of the pixels ({shares}); box3: the 3x3 mean of x_t/α_t")
        print(f"{'t':>5}{'region':>12}" + "".join(f"{n[-14:]:>16}" for n in names) + f"{'box3':>10}")
        for t in args.times:
            ref = results[args.weights[0]][t][1]
            for r in regions:
                print(f"{t:>5}{r:>12}" + "".join(f"{by_region[w][t][r] / ref:>16.3f}" for w in args.weights)
                      + f"{box_by_region[t][r] / ref:>10.3f}")
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
        if regions:
            record["region_share"] = {r: float(mask.mean()) for r, mask in regions.items()}
            record["regions"] = {n: {str(t): by_region[w][t] for t in args.times} for n, w in zip(names, args.weights)}
            record["regions_box3"] = {str(t): box_by_region[t] for t in args.times}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
