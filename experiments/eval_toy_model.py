"""The quality bar of the toy model: single-chunk DDIM samples judged by the analytic probes.

    python experiments/eval_toy_model.py [--num 200] [--steps 50] [--guidance G] [--weights FILE]
                                          [--save-samples NPZ | --from-samples NPZ] [--paired-with NPZ]

Draws ``--num`` random captions from the world's caption distribution (the training one: 20 % of
them with a background change), samples one 8-frame clip per caption with deterministic DDIM
(``--steps`` steps, classifier-free guidance at the backbone's default scale unless
``--guidance``), and reads every clip back with :mod:`syncos_jax.metrics`:

* colour, shape, size: the majority reading over frames equals the caption's;
* background: the majority equals the caption's; with a ``then`` clause, the first frame shows
  the first background and the last frame the second;
* motion: :func:`~syncos_jax.metrics.motion_direction` of the centre track equals the caption's;
* unprompted identity (shade, pattern and light, which no caption names): the fraction of a clip's
  frames whose (shade, pattern) reading — the object's identity — is the clip's majority pair
  (``unprompted``), and whether all of them are (``unprompted_clip``); split into shade and pattern
  alone (``unprompted_shade``, ``unprompted_pattern``: the frames showing the clip's majority value
  of each); the frames showing the clip's majority light (``unprompted_light``, the scene's; on the
  bar too); each of these by whether the caption's object stays still (``…_still``, ``…_moving``);
  across clips, the histogram of the majority shade, pattern and light, which must cover the whole
  range (``spread``: every value is the majority of at least half its uniform share of the clips —
  no collapse onto one);
* the brightness of the objects against their named colour (:func:`shade_scale_summary`): a
  histogram pooled over frames, which shows whether the model draws the world's three shades or
  values between them, and its spread within a clip;
* how strongly the backgrounds are lit (:func:`light_strength_summary`): the length of a clip's
  mean light slope against the world's, and its wobble from frame to frame;
* the two reference levels of :func:`~syncos_jax.metrics.identity_agreement` for long videos
  (:func:`agreement_baselines`): how often two frames of one clip show the same shade and pattern,
  and how often two frames of different clips do (chance).

``--paired-with NPZ`` judges another model's saved clips of the same captions too and prints the
paired differences, clip by clip (:func:`paired_differences`): how a screen is told from the noise.

Prints the accuracies (and those of real renders of the same captions, which must be 100 %), the
confusion matrices of shape, motion and size (what was asked against what the probe read), and
writes them to ``--json``. The clips are ``samplers.ddim`` on a one-chunk video, sampled batched
over captions (``tests/test_toy_model.py`` checks each equals its own single-caption run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from syncos_jax import metrics
from syncos_jax.backbones import toy
from syncos_jax.backbones.toy import world
from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS
from syncos_jax.chunking import ChunkLayout
from syncos_jax.prompts import Conditioning
from syncos_jax.samplers import ddim, sample


def ddim_batch(defn, params, schedule, x_T, tokens, null_tokens, guidance_scale, eta: float = 0.0, key=None):
    """DDIM (:mod:`syncos_jax.samplers.ddim`; deterministic at ``eta = 0``, the default) over a batch
    of single-chunk clips, one caption each: one :func:`~syncos_jax.samplers.sample` batched over keys
    and over conditioning. ``x_T: [B, f, H, W, C]``, ``tokens: [B, L]``, ``null_tokens: [B, L]``;
    ``key`` draws the fresh noise of ``eta > 0`` (default ``key(0)``). Returns ``[B, f, H, W, C]``."""
    return ddim_batch_result(defn, params, schedule, x_T, tokens, null_tokens, guidance_scale, eta=eta, key=key).latents


def ddim_batch_result(defn, params, schedule, x_T, tokens, null_tokens, guidance_scale, diagnostics=(), eta: float = 0.0,
                      key=None):
    """:func:`ddim_batch`'s whole :class:`~syncos_jax.samplers.SampleResult`, recording the
    sampler's ``diagnostics`` (e.g. ``("x0",)``: every step's ``x̂_0``, ``[B, S, F, H, W, C]``)."""
    B, f = x_T.shape[:2]
    tokens, null_tokens = jnp.asarray(tokens), jnp.asarray(null_tokens)
    one = Conditioning(tokens[:1], null_tokens[:1])
    sampler = ddim.build(defn, schedule, ChunkLayout(f, f, f), one, guidance_scale=guidance_scale, frame_shape=x_T.shape[2:],
                         eta=eta)
    per_clip = Conditioning(tokens[:, None], null_tokens[:, None])  # [B, P = 1, L]
    keys = jax.random.split(jax.random.key(0) if key is None else key, B)  # used only by eta > 0
    return sample(sampler, params, keys, cond=per_clip, initial_noise=x_T, diagnostics=tuple(diagnostics))


def sample_captions(backbone, texts, steps: int, guidance: float, seed: int, batch: int, diagnostics=()):
    """Yields ``(start index, SampleResult)`` of deterministic DDIM clips for ``texts``, ``batch``
    captions per compiled call (:func:`ddim_batch_result`); the initial noise of the batch starting
    at caption ``i`` is ``N(0, 1)`` under ``fold_in(key(seed), i)``."""
    defn, params = backbone.denoiser.split()
    schedule = backbone.schedule(steps)
    null = backbone.encode([""])
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        tokens = backbone.encode(chunk)
        x_T = jax.random.normal(jax.random.fold_in(jax.random.key(seed), i), (len(chunk), backbone.chunk_frames) + backbone.frame_shape)
        yield i, ddim_batch_result(defn, params, schedule, x_T, tokens, np.broadcast_to(null, tokens.shape), guidance,
                                   diagnostics)


IDENTITY_KEYS = ("unprompted", "unprompted_shade", "unprompted_pattern", "unprompted_light")  # judge's per-clip identity fractions
CONFUSED = {"shape": world.SHAPES, "motion": world.MOTION_NAMES, "size": world.SIZE_NAMES}


def judge(text: str, frames: np.ndarray) -> dict:
    """Per-factor correctness of one clip ``[F, H, W, 3]`` against its caption, and for shape,
    motion and size the ``(asked, read)`` index pair (``read = −1``: no object found)."""
    c = world.parse_caption(text)
    r = metrics.probe_frames(frames)

    def majority(v):
        v = v[v >= 0]
        return -1 if v.size == 0 else int(np.bincount(v).argmax())

    bg = world.BACKGROUND_NAMES
    shape, size, motion = majority(r.shape), majority(r.size), metrics.motion_direction(r.centre)
    kept = metrics.identity_consistency(r, ("unprompted", "shade", "pattern", "light"))
    ident = kept["unprompted"]
    if c.then is None:
        background = majority(r.background) == bg.index(c.background)
    else:
        background = r.background[0] == bg.index(c.background) and r.background[-1] == bg.index(c.then)
    return {
        "colour": majority(r.colour) == world.COLOUR_NAMES.index(c.colour),
        "shape": shape == world.SHAPES.index(c.shape),
        "size": size == world.SIZE_NAMES.index(c.size),
        "background": bool(background),
        "motion": motion == world.MOTION_NAMES.index(c.motion),
        "event": c.then is not None,
        "unprompted": ident,
        "unprompted_clip": ident == 1.0,
        "unprompted_shade": kept["shade"],
        "unprompted_pattern": kept["pattern"],
        "unprompted_light": kept["light"],
        "still": c.motion == "still",
        "shade_scale": metrics.object_shade_scale(frames, c.colour),
        "light_vector": metrics.light_vector(frames),
        "identity": {"shade": majority(r.shade), "pattern": majority(r.pattern), "light": majority(r.light)},
        "frame_identity": metrics.identity_code(r).tolist(),
        "frame_light": metrics.identity_code(r, ("light",)).tolist(),
        "pairs": {"shape": (world.SHAPES.index(c.shape), shape), "size": (world.SIZE_NAMES.index(c.size), size),
                  "motion": (world.MOTION_NAMES.index(c.motion), motion)},
    }


def confusion(judged: list[dict], factor: str) -> list[list[int]]:
    """Counts ``[asked, read]`` for ``factor``; the last column counts clips where nothing was read."""
    n = len(CONFUSED[factor])
    m = np.zeros((n, n + 1), int)
    for j in judged:
        asked, read = j["pairs"][factor]
        m[asked, read if read >= 0 else n] += 1
    return m.tolist()


def format_confusion(matrix: list[list[int]], names) -> str:
    """A plain-text table: rows are what the caption asked for, columns what the probe read."""
    cols = list(names) + ["none"]
    width = max(len(c) for c in cols) + 2
    lines = [" " * width + "".join(f"{c:>{width}}" for c in cols)]
    lines += [f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row) for name, row in zip(names, matrix)]
    return "\n".join(lines)


def accuracies(judged: list[dict]) -> dict:
    """The fractions over clips of :func:`judge`'s verdicts: each named factor right; the background
    without and with an event (``None`` where there is no such clip); shape per asked shape; and the
    unprompted identity — ``unprompted`` (frames showing the majority pair), ``unprompted_clip`` (all
    of them), ``unprompted_shade``, ``unprompted_pattern`` (each attribute alone), each of these
    three also over the clips whose object stays still (``_still``) and moves (``_moving``)."""
    keys = ("colour", "background", "shape", "motion", "size")
    out = {k: float(np.mean([j[k] for j in judged])) for k in keys}
    plain = [j for j in judged if not j["event"]]
    events = [j for j in judged if j["event"]]
    out["background_no_event"] = float(np.mean([j["background"] for j in plain])) if plain else None
    out["background_with_event"] = float(np.mean([j["background"] for j in events])) if events else None
    for i, name in enumerate(world.SHAPES):
        asked = [j for j in judged if j["pairs"]["shape"][0] == i]
        out[f"shape_{name}"] = float(np.mean([j["shape"] for j in asked])) if asked else None
    out["unprompted"] = float(np.mean([j["unprompted"] for j in judged]))
    out["unprompted_clip"] = float(np.mean([j["unprompted_clip"] for j in judged]))
    for key in IDENTITY_KEYS[1:]:
        out[key] = float(np.mean([j[key] for j in judged]))
    for name, group in (("still", [j for j in judged if j["still"]]), ("moving", [j for j in judged if not j["still"]])):
        for key in IDENTITY_KEYS:
            out[f"{key}_{name}"] = float(np.mean([j[key] for j in group])) if group else None
    out["count"] = len(judged)
    out["count_with_event"] = len(events)
    return out


def agreement_baselines(judged: list[dict], key: str = "frame_identity") -> dict:
    """The two reference levels of :func:`syncos_jax.metrics.identity_agreement` for this model
    (``key="frame_light"``: the same for the scene's light alone):

    * ``within_clip``: the fraction of frame pairs of one clip (a single chunk, frames 1–7 apart)
      showing the same (shade, pattern), pooled over the clips: how steady the model keeps the
      identity inside one chunk (1 = no flicker);
    * ``across_clips``: the same fraction over pairs of frames from *different* clips: the agreement
      of two unrelated objects, what a long video falls to once its identity is forgotten.

    Frames whose identity was not read (``−1``: no object) count in neither."""
    ids = [np.asarray(j[key], np.int64) for j in judged]
    ids = [v[v >= 0] for v in ids]
    same = sum(int((v[:, None] == v[None, :]).sum()) - v.size for v in ids)
    pairs = sum(v.size * (v.size - 1) for v in ids)
    counts = np.bincount(np.concatenate(ids)) if ids else np.zeros(1, np.int64)
    across_same = int((counts**2).sum()) - sum(int((np.bincount(v, minlength=counts.size) ** 2).sum()) for v in ids)
    across_pairs = int(counts.sum()) ** 2 - sum(v.size**2 for v in ids)
    return {"within_clip": same / pairs if pairs else None, "across_clips": across_same / across_pairs if across_pairs else None}


def identity_histogram(judged: list[dict]) -> dict:
    """``{"shade": {name: count}, "pattern": {name: count}, "light": {name: count}}`` of the clips'
    majority readings (``"none"``: no object found)."""
    out = {}
    for key, names in (("shade", world.SHADE_NAMES), ("pattern", world.PATTERNS), ("light", world.LIGHT_NAMES)):
        counts = dict.fromkeys(list(names) + ["none"], 0)
        for j in judged:
            v = j["identity"].get(key, -1)
            counts[names[v] if v >= 0 else "none"] += 1
        out[key] = counts
    return out


def light_strength_summary(judged: list[dict]) -> dict:
    """How strongly the clips' backgrounds are lit (:func:`syncos_jax.metrics.light_vector`, in
    ``[0, 1]`` brightness per half-width; renders: about ``world.LIGHT_AMPLITUDE``): the median over
    clips of the length of the clip's mean slope (``amplitude``), and of the mean distance of a
    frame's slope from it (``wobble``). A model that draws the ramp weaker than the world does, with
    the same wobble, flips the nearest-direction reading more often: this tells that from a ramp
    drawn at full strength that turns from frame to frame."""
    vs = [np.asarray(j["light_vector"], float) for j in judged]
    amp = [float(np.linalg.norm(v.mean(0))) for v in vs]
    wobble = [float(np.linalg.norm(v - v.mean(0), axis=1).mean()) for v in vs]
    return {"amplitude": float(np.median(amp)) if amp else None, "wobble": float(np.median(wobble)) if wobble else None,
            "world_amplitude": world.LIGHT_AMPLITUDE}


def spread(hist: dict) -> bool:
    """Whether every shade, every pattern and every light is the majority reading of at least half its uniform
    share of the clips (``1 / (2·n)`` of them for ``n`` values): no collapse onto a few values."""
    ok = True
    for counts in hist.values():
        values = {k: v for k, v in counts.items() if k != "none"}
        total = sum(counts.values())
        ok &= all(v >= total / (2 * len(values)) for v in values.values())
    return bool(ok)


SHADE_SCALE_BINS = np.round(np.arange(0.275, 1.33, 0.05), 3)  # edges of bins centred on 0.30, 0.35, …, 1.30


def shade_scale_summary(judged: list[dict]) -> dict:
    """The brightness of the clips' objects against their named colour
    (:func:`syncos_jax.metrics.object_shade_scale`), pooled over frames: the histogram ``counts``
    over ``bins`` (edges; values outside fall in the end bins) and the median over clips of the
    standard deviation within a clip (``within_clip_std``). Renders give three spikes at the world's
    shades and a spread of 0; a model that draws values between them, or lets them wander from frame to
    frame, shows it here, where the nearest-shade probe only shows the flicker."""
    scales = [np.asarray(j["shade_scale"], float) for j in judged]
    scales = [v[np.isfinite(v)] for v in scales]
    pooled = np.clip(np.concatenate(scales), SHADE_SCALE_BINS[0], SHADE_SCALE_BINS[-1] - 1e-9) if scales else np.zeros(0)
    counts, _ = np.histogram(pooled, bins=SHADE_SCALE_BINS)
    spreads = [float(np.std(v)) for v in scales if v.size > 1]
    return {"bins": SHADE_SCALE_BINS.tolist(), "counts": counts.tolist(),
            "within_clip_std": float(np.median(spreads)) if spreads else None}


PAIRED = ("colour", "background", "shape", "motion", "size", *IDENTITY_KEYS)


def paired_differences(judged: list[dict], reference: list[dict]) -> dict:
    """``{factor: {"mean", "se", "n"}}``: the mean over clips of ``judged − reference`` (the same
    captions and seeds, clip by clip; a right/wrong factor counts 1/0) and its standard error, for
    the factors of :data:`PAIRED`. Pairing removes what the two sets share (the caption, the
    starting noise), so a screen's difference can be told from the noise of 200 clips.

    Raises:
      ValueError: if the two lists differ in length."""
    from common import mean_se

    if len(judged) != len(reference):
        raise ValueError(f"paired clips: {len(judged)} judged against {len(reference)} in the reference")
    out = {}
    for k in PAIRED:
        mu, se, n = mean_se(float(a[k]) - float(b[k]) for a, b in zip(judged, reference))
        out[k] = {"mean": mu, "se": se, "n": n}
    return out


BARS = {"colour": 0.95, "background": 0.95, "size": 0.95, "shape": 0.90, "motion": 0.90, "unprompted": 0.95,
        "unprompted_light": 0.95,
        **{f"shape_{name}": 0.85 for name in world.SHAPES}}


def weights_record(path: str) -> dict:
    """How a results file names a weights file without machine paths: its path relative to the
    repository when it lies inside it, else its file name; with the first 16 hex digits of its SHA-256,
    which identify it wherever it lies (:func:`common.weights_fingerprint`, the experiments' cache key)."""
    from common import weights_fingerprint
    from paths import repo_relative

    return {"weights": repo_relative(path), "weights_sha256_16": weights_fingerprint(path)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, default=50, help="clips per compiled call")
    ap.add_argument("--json", default="experiments/results/eval_toy_model.json")
    ap.add_argument("--save-samples", default=None, help="write the sampled clips to this .npz")
    ap.add_argument("--from-samples", default=None, metavar="NPZ",
                    help="judge the clips a --save-samples run wrote instead of sampling "
                         "(same --num, --seed, --batch, --steps, --guidance)")
    ap.add_argument("--paired-with", default=None, metavar="NPZ",
                    help="also judge another model's --save-samples clips of the same captions and print the paired "
                         "differences (this model − that one) with their standard errors")
    args = ap.parse_args(argv)

    backbone = toy.load_default(args.weights)
    guidance = backbone.default_guidance if args.guidance is None else args.guidance
    rng = np.random.default_rng(args.seed)
    texts = [world.random_caption(rng) for _ in range(args.num)]
    f = backbone.chunk_frames
    t0 = time.time()
    # what decides a clip besides its caption: the starting noise (seed, and batch: the noise of a clip is
    # drawn by the batch it is sampled in) and the sampler (steps, guidance)
    settings = {"seed": args.seed, "batch": args.batch, "steps": args.steps, "guidance": float(guidance)}

    def load_samples(path: str, flag: str) -> np.ndarray:
        saved = np.load(path)
        if [str(t) for t in saved["texts"]] != texts:
            raise SystemExit(f"{flag} {path}: its captions are not those of --num {args.num} "
                             f"--seed {args.seed} (it holds {len(saved['texts'])} clips)")
        for k, v in settings.items():
            if k not in saved:
                raise SystemExit(f"{flag} {path}: it does not record --{k} (written by an older version of this "
                                 f"script); sample again with --save-samples")
            if float(saved[k]) != float(v):
                raise SystemExit(f"{flag} {path}: it was sampled with --{k} {saved[k]}, this run has --{k} {v}")
        return saved["clips"]

    other = load_samples(args.paired_with, "--paired-with") if args.paired_with else None
    if args.from_samples:
        clips = load_samples(args.from_samples, "--from-samples")
    else:
        clips = []
        for i, res in sample_captions(backbone, texts, args.steps, guidance, args.seed, args.batch):
            clips.append(np.clip(np.asarray(res.latents), -1, 1))
            print(f"  sampled {min(i + args.batch, args.num)}/{args.num} clips ({time.time() - t0:.0f} s)", flush=True)
        clips = np.concatenate(clips)
        if args.save_samples:  # before judging: an error there loses no sampling
            np.savez_compressed(args.save_samples, clips=clips, texts=np.array(texts), **settings)
    seconds = time.time() - t0
    judged = [judge(t, c) for t, c in zip(texts, clips)]
    model_acc = accuracies(judged)
    confusions = {k: confusion(judged, k) for k in CONFUSED}
    render_rng = np.random.default_rng(args.seed + 1)
    render_judged = [judge(t, world.render(world.track_from_caption(t, f, render_rng))) for t in texts]
    render_acc = accuracies(render_judged)

    print(f"\ntoy model {args.weights} (training step {backbone.info.get('step')}), {args.num} captions, "
          f"DDIM {args.steps} steps, guidance {guidance:g}, {seconds:.0f} s")
    print(f"{'factor':<28}{'model':>8}{'renders':>9}{'bar':>7}")
    for k in ("colour", "background", "shape", *(f"shape_{n}" for n in world.SHAPES), "motion", "size",
              "background_no_event", "background_with_event", "unprompted", "unprompted_clip", *IDENTITY_KEYS[1:],
              *(f"{key}_{group}" for group in ("still", "moving") for key in IDENTITY_KEYS)):
        m, r = model_acc[k], render_acc[k]
        bar = f"{BARS[k]:.0%}" if k in BARS else ""
        fmt = lambda v: "  n/a" if v is None else f"{v:.1%}"
        print(f"{k:<28}{fmt(m):>8}{fmt(r):>9}{bar:>7}")
    for k, names in CONFUSED.items():
        print(f"\n{k} (rows: asked for, columns: read by the probe)\n{format_confusion(confusions[k], names)}")
    hist = identity_histogram(judged)
    for key, counts in hist.items():
        print(f"\n{key} of the sampled clips (majority reading): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    spread_ok = spread(hist)
    print("unprompted identity spread over its whole range:", "yes" if spread_ok else "NO")
    scale, scale_renders = shade_scale_summary(judged), shade_scale_summary(render_judged)
    fmt2 = lambda v: "n/a" if v is None else f"{v:.3f}"
    bins = f"centred on {SHADE_SCALE_BINS[0] + 0.025:.2f}, …, {SHADE_SCALE_BINS[-1] - 0.025:.2f}"
    print(f"\nobject brightness / its named colour (the world's shades: 0.58, 0.79, 1.00), frames per bin of 0.05 {bins}:"
          f"\n  model   {' '.join(f'{c:3d}' for c in scale['counts'])}"
          f"\n  renders {' '.join(f'{c:3d}' for c in scale_renders['counts'])}"
          f"\n  spread within a clip (median std): model {fmt2(scale['within_clip_std'])}, "
          f"renders {fmt2(scale_renders['within_clip_std'])}")
    light, light_renders = light_strength_summary(judged), light_strength_summary(render_judged)
    print(f"scene light drawn (slope of the background's brightness per half-width; the world's: {world.LIGHT_AMPLITUDE}): "
          f"clip amplitude median model {fmt2(light['amplitude'])}, renders {fmt2(light_renders['amplitude'])}; "
          f"frame-to-frame wobble median model {fmt2(light['wobble'])}, renders {fmt2(light_renders['wobble'])}")
    baselines = agreement_baselines(judged)
    print(f"same shade and pattern: frame pairs within a clip {fmt2(baselines['within_clip'])}, "
          f"across clips (chance) {fmt2(baselines['across_clips'])}")
    light_baselines = agreement_baselines(judged, "frame_light")
    print(f"same light: frame pairs within a clip {fmt2(light_baselines['within_clip'])}, "
          f"across clips (chance) {fmt2(light_baselines['across_clips'])}")
    paired = None
    if other is not None:
        paired = paired_differences(judged, [judge(t, c) for t, c in zip(texts, other)])
        print(f"\npaired with {os.path.basename(args.paired_with)} (this model − that one, mean ± standard error over "
              f"{args.num} clips):\n  " + ", ".join(f"{k} {v['mean']:+.3f} ± {v['se']:.3f}" for k, v in paired.items()))
    passed = all(model_acc[k] >= v for k, v in BARS.items()) and spread_ok
    print("quality bar:", "met" if passed else "NOT met")
    record = {**weights_record(args.weights), "training_step": backbone.info.get("step"), "num": args.num, "steps": args.steps,
              "guidance": guidance, "seed": args.seed, "seconds": seconds, "model": model_acc, "renders": render_acc, "confusion": confusions,
              "identity_histogram": hist, "identity_histogram_renders": identity_histogram(render_judged), "spread": spread_ok,
              "agreement": baselines, "agreement_renders": agreement_baselines(render_judged),
              "agreement_light": light_baselines, "agreement_light_renders": agreement_baselines(render_judged, "frame_light"),
              "shade_scale": scale, "shade_scale_renders": scale_renders,
              "light_strength": light, "light_strength_renders": light_renders,
              "from_samples": None if not args.from_samples else os.path.basename(args.from_samples),
              "paired": None if paired is None else {"with": os.path.basename(args.paired_with), **paired},
              "bars": BARS, "passed": passed}
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
