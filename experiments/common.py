"""Shared harness of the experiment scripts: variants, cached runs, statistics, tables and plots.

A **variant** is a named sampler setting (:class:`Variant`); a **run** is one variant on one
scenario of ``experiments/scenarios/`` with one seed. Every run is sampled with the shipped toy
weights, decoded, and judged from pixels by :func:`syncos_jax.metrics.shapes_report`; its record
(the metrics, the NFE, the wall time per video, and the probes' per-frame readings,
:func:`frame_readings`) is appended to a JSON-lines cache
``<results>/runs/<variant>.jsonl`` as soon as it is done. Scripts read the cache first, so a killed
run loses at most the scenario in flight, and tables that share a variant (Table 3 and Table 1,
the sweeps and SynCoS's defaults) sample it once.

Statistics: mean ± standard error over the runs (scenario × seed); for a comparison with a
reference variant, the paired differences over the same (scenario, seed) pairs, mean ± s.e.

Nothing here tunes anything: every variant's settings are written in the scripts that use it, and
the defaults are the paper's (ALGORITHM.md §4) with the toy model's guidance.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import time
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO_DIR = os.path.join(HERE, "scenarios")
RESULTS = os.path.join(HERE, "results")
QUICK_RESULTS = os.path.join(RESULTS, "quick")

# The scenarios, seeds and grid of a full run and of a quick one (``--quick``). The quick run keeps
# every table and variant but samples 2 two-event scenarios of 32 frames (one shape of program per
# variant: one compilation) with 2 seeds on a 25-step grid. ``run_all.py --quick`` took 18
# minutes here from a cold start (no compilation cache); the evidence issue asks for ≤ 30.
FULL_SEEDS = (0, 1, 2)
FULL_STEPS = 50
QUICK_SEEDS = (0, 1)
QUICK_STEPS = 25
QUICK_SCENARIOS = ("motion-2ev-32f", "motion_background_colour-2ev-32f")

# The metrics every table reports, in order, with a short column title.
METRICS = (
    ("subject_consistency", "subject cons."),
    ("background_consistency", "background cons."),
    ("identity_shape", "shape identity"),
    ("identity_size", "size identity"),
    ("identity_unprompted", "unprompted identity"),
    ("identity_unprompted_ends", "same identity at both ends"),
    ("centre_jump_at_boundary", "jump at boundary (px)"),
    ("centre_jump_away", "jump elsewhere (px)"),
    ("ghost_fraction", "ghost frames (fraction)"),
    ("clean_fraction", "clean frames (fraction)"),
    ("fidelity_all", "segments all 5 right"),
    ("motion_fidelity", "motion fidelity"),
    ("motion_smoothness", "motion smoothness"),
    ("dynamic_degree", "dynamic degree"),
    ("num_scenes", "scenes"),
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named sampler setting.

    Attributes:
      name: the variant's name (also its cache file's name).
      sampler: a key of :data:`syncos_jax.samplers.SAMPLERS`.
      options: sampler keyword options (on top of the guidance, which is the toy model's default).
      structured: join local prompts with the global one (``False``: the paper's ablation).
      label: a short description for tables.
      stride: the chunk layout's stride (frames).
    """

    name: str
    sampler: str
    options: tuple = ()
    structured: bool = True
    label: str = ""
    stride: int = 4

    @staticmethod
    def make(name: str, sampler: str, label: str = "", structured: bool = True, stride: int = 4, **options) -> "Variant":
        """A :class:`Variant` with ``options`` given as keywords."""
        return Variant(name, sampler, tuple(sorted(options.items())), structured, label or name, stride)

    @property
    def settings(self) -> dict:
        """The variant as a JSON-ready dict (what the cache checks)."""
        return {"sampler": self.sampler, "options": {k: _jsonable(v) for k, v in self.options},
                "structured": self.structured, "stride": self.stride}


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


# The baselines and SynCoS at the paper's defaults (stride 4, 50 steps).
GEN_L_VIDEO = Variant.make("gen_l_video", "gen-l-video", "Gen-L-Video")
SYNCOS = Variant.make("syncos", "syncos", "SynCoS")
FIFO = Variant.make("fifo", "fifo", "FIFO")
CSD_ONLY = Variant.make("csd_only", "csd-only", "CSD-only")
# The control: SynCoS with stage 2 updating nothing (one iteration at lr 0), so what is left of it
# is stage 3's re-noising of every chunk with each step's one baseline noise E (shared by all chunks)
# above t_min.
RENOISE_ONLY = Variant.make("renoise_only", "syncos", "re-noise only", iters=1, lr=0.0)


def scenario_names(quick: bool, limit: Optional[int] = None) -> list[str]:
    """The scenario names of a quick or a full run.

    The full suite is ordered round-robin over the kinds of change (motion, background, colour, ...),
    each kind's list rotated by its index, so that its first ``limit`` scenarios span every kind and
    a mix of lengths and event counts.
    """
    if quick:
        return list(QUICK_SCENARIOS)
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(SCENARIO_DIR, "*.yaml")))
    by_kind: dict[str, list[str]] = {}
    for n in names:
        by_kind.setdefault(n.split("-")[0], []).append(n)
    groups = [g[i % len(g):] + g[:i % len(g)] for i, g in enumerate(by_kind.values())]  # vary length and events too
    order = [n for group in zip(*groups) for n in group]
    order += [n for n in names if n not in order]
    return order[:limit] if limit else order


def steps(quick: bool) -> int:
    """The number of sampling steps of a quick or a full run."""
    return QUICK_STEPS if quick else FULL_STEPS


def seeds(quick: bool) -> tuple:
    """The seeds of a quick or a full run."""
    return QUICK_SEEDS if quick else FULL_SEEDS


def results_dir(quick: bool) -> str:
    """Where a quick or a full run writes: ``experiments/results/quick`` or ``experiments/results``."""
    return QUICK_RESULTS if quick else RESULTS


# ---------------------------------------------------------------------------------------------
# Sampling one scenario
# ---------------------------------------------------------------------------------------------

_BACKBONE = None
_WEIGHTS = None  # None: the shipped weights (``--weights`` replaces them, e.g. for the smoke test)


def backbone():
    """The shipped toy backbone (loaded once). Also turns on JAX's persistent compilation cache
    (``experiments/.jax_cache``, git-ignored), so a rerun does not compile again."""
    global _BACKBONE
    if _BACKBONE is None:
        import jax

        jax.config.update("jax_compilation_cache_dir", os.path.join(HERE, ".jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        from syncos_jax.backbones.toy import load_default

        _BACKBONE = load_default() if _WEIGHTS is None else load_default(_WEIGHTS)
    return _BACKBONE


def load(name: str):
    """The :class:`~syncos_jax.prompts.Scenario` ``experiments/scenarios/<name>.yaml``."""
    from syncos_jax.prompts import load_scenario

    return load_scenario(os.path.join(SCENARIO_DIR, name + ".yaml"))


def build_sampler(variant: Variant, name: str, *, steps: int = 50):
    """``(sampler, params)``: ``variant`` built for scenario ``name`` on a ``steps``-step grid with the toy backbone."""
    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.prompts import build_conditioning
    from syncos_jax.samplers import SAMPLERS

    bb = backbone()
    sc = load(name)
    layout = ChunkLayout(sc.frames, bb.chunk_frames, variant.stride)
    cond = build_conditioning(bb.encode, sc.prompt, structured=variant.structured)
    options = dict(variant.options)
    options.setdefault("guidance_scale", bb.default_guidance)
    defn, params = bb.denoiser.split()
    return SAMPLERS[variant.sampler](defn, bb.schedule(steps), layout, cond, frame_shape=bb.frame_shape, **options), params


def sample_scenario(variant: Variant, name: str, seed_list: Sequence[int], *, steps: int = 50,
                    diagnostics: tuple = ()):
    """Samples ``variant`` on scenario ``name`` for every seed (one vmapped batch).

    Returns ``(frames [K, F, H, W, 3] in [−1, 1], nfe per video, wall seconds per video, diagnostics)``;
    diagnostics are ``[K, S, ...]`` (fields of :class:`syncos_jax.samplers.syncos.SynCoSInfo`).
    """
    import jax

    from syncos_jax.samplers import sample

    sampler, params = build_sampler(variant, name, steps=steps)
    keys = jax.vmap(jax.random.key)(np.asarray(seed_list, np.uint32))
    t0 = time.perf_counter()
    result = sample(sampler, params, keys, diagnostics=tuple(diagnostics))
    latents = np.asarray(jax.block_until_ready(result.latents))
    wall = (time.perf_counter() - t0) / len(seed_list)
    frames = np.stack([backbone().decode(x) for x in latents])
    diag = {k: np.asarray(v) for k, v in result.diagnostics.items()}
    return frames, np.asarray(result.nfe).reshape(-1), wall, diag


def judge(frames, name: str) -> dict:
    """The metrics of one video of scenario ``name`` (``syncos_jax.metrics.shapes_report``)."""
    from syncos_jax import metrics
    from syncos_jax.prompts import join_prompt

    sc = load(name)
    segments = sc.prompt.segments(len(frames))  # the scenario's own events (equal split if it gives no lengths)
    texts = [join_prompt(sc.prompt.global_prompt, p) for p in sc.prompt.local_prompts]
    return metrics.shapes_report(frames, segments, texts)


READING_FIELDS = ("found", "background", "colour", "shape", "size", "shade", "pattern", "light")


def frame_readings(frames) -> dict:
    """The probes' per-frame readings of a video (``syncos_jax.metrics.probe_frames``) as JSON-ready
    lists: ``{field: [F] ints}`` for :data:`READING_FIELDS` (``found`` as 0/1; ``−1`` where no object
    was found) and ``"centre": [F] [x, y]`` in pixels to 0.1 (``None`` where none). Kept beside the
    metrics in the run cache, so analyses that the metrics do not foresee (say, agreement split by
    whether two frames share a prompt, or by where the object is) need no new sampling.

    Args:
      frames: ``[F, H, W, 3]`` uint8 or float in ``[−1, 1]``.
    """
    from syncos_jax import metrics

    r = metrics.probe_frames(2.0 * metrics.unit_frames(frames) - 1.0)
    out = {k: np.asarray(getattr(r, k)).astype(int).tolist() for k in READING_FIELDS}
    out["centre"] = [None if not np.all(np.isfinite(c)) else [round(float(c[0]), 1), round(float(c[1]), 1)]
                     for c in np.asarray(r.centre, np.float64)]
    return out


def has_readings(record: dict) -> bool:
    """Whether a cached record keeps the per-frame readings (:func:`frame_readings`): records made
    before they were kept do not."""
    return record.get("readings") is not None


def readings_from_record(record: dict):
    """The :class:`syncos_jax.metrics.FrameReadings` of a cached record's ``readings`` (the inverse of
    :func:`frame_readings`; the object's pixel count, which is not kept, is 0; a centre not found
    is NaN; the light of a record made before it was kept is −1, not read).

    Raises:
      ValueError: the record has no readings (:func:`has_readings`).
    """
    from syncos_jax import metrics

    if not has_readings(record):
        raise ValueError(f"record {record.get('scenario')!r} seed {record.get('seed')!r} has no per-frame readings "
                         "(made before they were kept: sample it again with identity_drift.py --refresh-readings)")
    rd = record["readings"]
    # a field added to READING_FIELDS later (the light) is −1 (not read) in older records
    arrays = {k: np.asarray(rd[k] if k in rd else np.full(len(rd["found"]), -1), np.int64) for k in READING_FIELDS}
    centre = np.array([[np.nan, np.nan] if c is None else c for c in rd["centre"]], np.float64)
    return metrics.FrameReadings(background=arrays["background"], found=arrays["found"].astype(bool),
                                 colour=arrays["colour"], shape=arrays["shape"], size=arrays["size"], centre=centre,
                                 area=np.zeros_like(arrays["found"]), shade=arrays["shade"], pattern=arrays["pattern"],
                                 light=arrays["light"])


# ---------------------------------------------------------------------------------------------
# The run cache
# ---------------------------------------------------------------------------------------------


def _cache_path(results: str, variant: Variant) -> str:
    return os.path.join(results, "runs", variant.name + ".jsonl")


_FINGERPRINTS: dict = {}
# The keys judge() records come from metrics.shapes_report; bump this when it gains or changes keys,
# so cached records made before are sampled again instead of tabled with the new metrics missing.
REPORT_VERSION = 2


def weights_fingerprint(path: str | None = None) -> str:
    """The first 16 hex digits of the SHA-256 of a toy weights file (the shipped one for ``None``):
    what ties a cached record to the weights that made it, so new weights never reuse old records."""
    from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS, weights_sha256_16

    path = os.path.abspath(path or DEFAULT_WEIGHTS)
    if path not in _FINGERPRINTS:
        _FINGERPRINTS[path] = weights_sha256_16(path)
    return _FINGERPRINTS[path]


def _settings(variant: Variant) -> dict:
    """What a cached record must match: the variant and the weights (:func:`weights_fingerprint`)."""
    return {**variant.settings, "weights": weights_fingerprint(_WEIGHTS), "report": REPORT_VERSION}


def read_cache(results: str, variant: Variant) -> dict:
    """``{(scenario, seed, steps, stride): record}`` of ``variant``'s finished runs whose settings match
    (the last line of a key, where one was sampled again)."""
    path = _cache_path(results, variant)
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec["settings"] == _settings(variant):
                out[(rec["scenario"], rec["seed"], rec["steps"], rec["stride"])] = rec
    return out


def runs(variant: Variant, names: Sequence[str], seed_list: Sequence[int], *, results: str, steps: int = 50,
         progress=None, cached_only: bool = False, require: Sequence[str] = ()) -> list[dict]:
    """The records of ``variant`` on every (scenario, seed), sampling (and caching) the missing ones
    (``cached_only``: skipping them instead, so a table can be written from a partial run).
    ``require``: record keys (say ``"readings"``) that a cached record must have (not ``None``) to
    count as sampled; unless ``cached_only``, one without them is sampled again and the new record
    appended, whose metrics then replace the old ones (:func:`read_cache` keeps the last line).

    Reproducibility: the seeds missing for a scenario are sampled as one vmapped batch
    (:func:`sample_scenario`), and a record is reproduced bit for bit by sampling the same seeds
    together again. A seed sampled *alone* (a batch of 1) can give another video than the same seed
    sampled with others: for SynCoS the latents differed at float rounding (about 1.5e-5 after 6
    steps of ``background-2ev-32f``), while batches of 2 and 3 gave identical latents; presumably XLA
    compiles the size-1 batch differently, but that is not verified. 50 steps of sampling can grow
    the difference: of the 9 SynCoS videos that ``results/runs`` (batch 3) and
    ``results/drift_scratch_light/runs`` (batch 1) share, all 9 differ slightly in some metric and 3 in
    a probe reading, and the 3 CSD-only videos sampled alone there differ widely from their batch-3
    records, while its 6 sampled in a batch of 2 agree exactly. Gen-L-Video's and the re-noise-only
    control's 18 shared videos (batch 1 against 3) agree exactly.

    ``wall_seconds`` is the batch's wall time divided by its videos; the first scenario of a
    variant (and each new video length) includes compilation, so :mod:`table4_cost` times warm runs.
    """
    stride = variant.stride
    cache = read_cache(results, variant)
    path = _cache_path(results, variant)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out = []
    for name in names:
        todo = [s for s in seed_list if (name, s, steps, stride) not in cache
                or any(cache[(name, s, steps, stride)].get(k) is None for k in require)]
        if todo and not cached_only:
            frames, nfe, wall, _ = sample_scenario(variant, name, todo, steps=steps)
            with open(path, "a") as fh:
                for s, fr, n in zip(todo, frames, nfe):
                    rec = {"scenario": name, "seed": int(s), "steps": steps, "stride": stride,
                           "settings": _settings(variant), "nfe": int(n), "wall_seconds": round(wall, 3),
                           "metrics": judge(fr, name), "readings": frame_readings(fr)}
                    cache[(name, s, steps, stride)] = rec
                    fh.write(json.dumps(rec, allow_nan=False) + "\n")
        out += [cache[(name, s, steps, stride)] for s in seed_list if (name, s, steps, stride) in cache]
        if progress is not None:
            progress(1)
    return out


# ---------------------------------------------------------------------------------------------
# Statistics, tables, plots
# ---------------------------------------------------------------------------------------------


def mean_se(values: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, standard error, count)`` over the finite values (NaN where there are none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se, int(v.size)


def summarise(records: Sequence[dict], metric_names: Sequence[str] = tuple(m for m, _ in METRICS)) -> dict:
    """``{metric: {"mean", "se", "n"}}`` over ``records``, plus the mean NFE and wall time."""
    out = {}
    for m in metric_names:
        mu, se, n = mean_se(r["metrics"].get(m) for r in records)
        out[m] = {"mean": mu, "se": se, "n": n}
    for m in ("nfe", "wall_seconds"):
        mu, se, n = mean_se(r[m] for r in records)
        out[m] = {"mean": mu, "se": se, "n": n}
    out["videos"] = {"mean": float(len(records)), "se": float("nan"), "n": len(records)}
    return out


def paired(records: Sequence[dict], reference: Sequence[dict],
           metric_names: Sequence[str] = tuple(m for m, _ in METRICS)) -> dict:
    """``{metric: {"mean", "se", "n"}}`` of the paired differences ``records − reference`` on shared (scenario, seed)."""
    ref = {(r["scenario"], r["seed"]): r for r in reference}
    out = {}
    for m in metric_names:
        diffs = []
        for r in records:
            q = ref.get((r["scenario"], r["seed"]))
            if q is None:
                continue
            a, b = r["metrics"].get(m), q["metrics"].get(m)
            if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
                diffs.append(a - b)
        mu, se, n = mean_se(diffs)
        out[m] = {"mean": mu, "se": se, "n": n}
    return out


def fmt(stat: dict, digits: int = 2, signed: bool = False) -> str:
    """``mean ± se`` of a :func:`summarise` entry, for a Markdown cell."""
    mu, se = stat["mean"], stat["se"]
    if not math.isfinite(mu):
        return "—"
    s = f"{mu:+.{digits}f}" if signed else f"{mu:.{digits}f}"
    return s if not math.isfinite(se) else f"{s} ± {se:.{digits}f}"


def _digits(metric: str, signed: bool) -> int:
    """Decimals of a table cell: counts none; paired differences (small) one more than means."""
    return 0 if metric in ("nfe", "videos") else 3 if signed else 2


def markdown_table(rows: Sequence[tuple[str, dict]], metric_names: Sequence[tuple[str, str]] = METRICS,
                   signed: bool = False, extra: Sequence[tuple[str, str]] = ()) -> str:
    """A Markdown table: one row per ``(label, summary)``, one column per metric (and ``extra`` keys)."""
    cols = list(metric_names) + list(extra)
    head = "| variant | " + " | ".join(t for _, t in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    lines = [head, sep]
    for label, summ in rows:
        cells = [fmt(summ[m], _digits(m, signed), signed) if m in summ else "—" for m, _ in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(results: str, name: str, payload: dict, markdown: str) -> None:
    """Writes ``<results>/<name>.json`` (strict JSON) and ``<name>.md``."""
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, name + ".json"), "w") as fh:
        json.dump(_finite(payload), fh, indent=1, allow_nan=False)
    with open(os.path.join(results, name + ".md"), "w") as fh:
        fh.write(markdown.rstrip() + "\n")


def _finite(x):
    """NaN/Inf → None, recursively (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x


def bar_plot(path: str, rows: Sequence[tuple[str, dict]], metric_names: Sequence[tuple[str, str]], title: str) -> None:
    """A PNG of grouped bars (mean ± s.e.), one panel per metric."""
    import plotting

    plt = plotting.pyplot()

    n = len(metric_names)
    ncol = min(n, 4)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    labels = [lab for lab, _ in rows]
    x = np.arange(len(rows))
    for ax, (m, t) in zip(axes.ravel(), metric_names):
        mu = [s[m]["mean"] for _, s in rows]
        se = [s[m]["se"] if s[m]["se"] is not None and math.isfinite(s[m]["se"]) else 0 for _, s in rows]
        ax.bar(x, mu, yerr=se, color=[f"C{i}" for i in range(len(rows))], capsize=3)
        ax.set_title(t, fontsize=9)
        ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    plotting.save(fig, path)


def progress_bar(total: int, desc: str):
    """A tqdm bar; ``update(1)`` per scenario."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="scenario", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# One table: variants against a reference, written as JSON + Markdown + PNG
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a script samples: the scenarios, seeds, grid and where results go."""

    quick: bool
    scenarios: tuple
    seeds: tuple
    steps: int
    results: str
    cached_only: bool = False

    def describe(self) -> dict:
        from eval_toy_model import weights_record  # the one naming of weights files in results (no machine paths)

        weights = "syncos_jax/backbones/toy/toy_dit.safetensors (shipped)" if _WEIGHTS is None else weights_record(_WEIGHTS)["weights"]
        return {"quick": self.quick, "scenarios": list(self.scenarios), "seeds": list(self.seeds), "steps": self.steps,
                "stride": 4, "weights": weights, "weights_sha256_16": weights_fingerprint(_WEIGHTS),
                "training_step": backbone().info.get("step"),
                "guidance_scale": backbone().default_guidance, "cached_only": self.cached_only}


def add_arguments(parser) -> None:
    """The flags every experiment script takes."""
    parser.add_argument("--quick", action="store_true", help="the reduced run (2 scenarios, 2 seeds, 25 steps)")
    parser.add_argument("--scenarios", type=int, default=None, metavar="N",
                        help="only the first N scenarios of the full suite (round-robin over kinds)")
    parser.add_argument("--results", default=None, help="results folder (default: experiments/results[/quick])")
    parser.add_argument("--names", nargs="+", default=None, metavar="SCENARIO", help="these scenarios (by file stem) instead")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="these seeds instead")
    parser.add_argument("--steps", type=int, default=None, help="this many sampling steps instead")
    parser.add_argument("--weights", default=None, help="a toy weights file instead of the shipped one (smoke tests)")
    parser.add_argument("--cached-only", action="store_true",
                        help="sample nothing: write the tables from the runs already cached (a partial run; "
                             "the tables give each variant's number of videos)")


def argv_of(args) -> list[str]:
    """The flags of :func:`add_arguments` back as an argv list (for :mod:`run_all`)."""
    out = ["--quick"] if args.quick else []
    for flag in ("scenarios", "results", "steps", "weights"):
        if getattr(args, flag) is not None:
            out += [f"--{flag}", str(getattr(args, flag))]
    out += ["--cached-only"] if args.cached_only else []
    for flag in ("names", "seeds"):
        if getattr(args, flag) is not None:
            out += [f"--{flag}"] + [str(v) for v in getattr(args, flag)]
    return out


def setup(args) -> Setup:
    """The :class:`Setup` of parsed flags (and the weights every sample uses)."""
    global _WEIGHTS, _BACKBONE
    if args.weights != _WEIGHTS:
        _WEIGHTS, _BACKBONE = args.weights, None
    known = scenario_names(False)
    for n in args.names or ():
        if n not in known:
            raise SystemExit(f"--names: no scenario {n!r} in {os.path.relpath(SCENARIO_DIR)}")
    names = tuple(args.names) if args.names else tuple(scenario_names(args.quick, args.scenarios))
    return Setup(args.quick, names, tuple(args.seeds) if args.seeds else seeds(args.quick),
                 args.steps or steps(args.quick), args.results or results_dir(args.quick), args.cached_only)


def collect(st: Setup, variants: Sequence[Variant], desc: str, **kw) -> dict:
    """``{variant.name: records}`` for every variant on the setup (cached, with a progress bar)."""
    bar = progress_bar(len(variants) * len(st.scenarios), desc)
    try:
        return {v.name: runs(v, st.scenarios, st.seeds, results=st.results, steps=st.steps, progress=bar.update,
                             cached_only=st.cached_only, **kw)
                for v in variants}
    finally:
        bar.close()


def compare(st: Setup, name: str, title: str, variants: Sequence[Variant], reference: Variant,
            metric_names: Sequence[tuple[str, str]] = METRICS, notes: str = "",
            section: Optional[Callable[[dict], tuple[dict, str]]] = None) -> dict:
    """Samples every variant, then writes ``<name>.json`` / ``.md`` / ``.png``: mean ± s.e. per variant
    and the paired differences against ``reference`` on the same (scenario, seed). Returns the payload.

    ``section``, if given, is called with the records (``{variant name: [record]}``) and returns
    ``(fields, markdown)``: the fields join the payload and the markdown is appended to the ``.md``
    (a script's own analysis of the same records, written in the same pass)."""
    recs = collect(st, variants, name)
    names = tuple(dict.fromkeys([m for m, _ in METRICS] + [m for m, _ in metric_names]))  # the tables' and the plot's
    summ = {v.name: summarise(recs[v.name], names) for v in variants}
    diff = {v.name: paired(recs[v.name], recs[reference.name], names) for v in variants if v.name != reference.name}
    extra = (("nfe", "NFE"), ("wall_seconds", "s / video"), ("videos", "videos"))
    md = [f"# {title}", "", notes.strip(), "",
          f"Setup: {len(st.scenarios)} scenarios × {len(st.seeds)} seeds, {st.steps} steps, stride 4, "
          f"guidance {backbone().default_guidance:g}, weights {st.describe()['weights']}. Mean ± s.e. over the videos "
          f"(up to {len(st.scenarios) * len(st.seeds)}; fewer where a partial run is tabled with --cached-only).", "",
          markdown_table([(v.label, summ[v.name]) for v in variants], metric_names, extra=extra), "",
          f"Paired differences against {reference.label} (same scenario and seed), mean ± s.e.:", "",
          markdown_table([(v.label, diff[v.name]) for v in variants if v.name in diff], metric_names, signed=True)]
    payload = {"title": title, "setup": st.describe(), "reference": reference.name,
               "variants": {v.name: {"label": v.label, **v.settings} for v in variants},
               "summary": summ, "paired_vs_reference": diff}
    if section is not None:
        fields, more = section(recs)
        payload.update(fields)
        md.append(more)
    write_outputs(st.results, name, payload, "\n".join(md))
    bar_plot(os.path.join(st.results, name + ".png"), [(v.label, summ[v.name]) for v in variants], metric_names, title)
    print("\n".join(md[4:]))
    return payload
