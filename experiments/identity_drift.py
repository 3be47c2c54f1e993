"""Does the unprompted identity drift over a long video, and does SynCoS keep it?

The paper's main phenomenon: what the prompt does not say (a face, a coat's pattern, the exact
shade of a car) drifts under fusion-only sampling, because each chunk denoises toward its own
guess and overlaps only align neighbours; SynCoS's global coupling is meant to fix it. In the
shapes world the object's shade and pattern are never named by a prompt, are drawn afresh by the
model for every video, and are read exactly by the probes, so their drift has a ground truth.

Gen-L-Video, FIFO, CSD-only and SynCoS on the suite's long scenarios (64 and 96 frames: 15 and 23
chunks of 8 at stride 4), three seeds, 50 steps, and the project's control, SynCoS re-noise only
(``common.RENOISE_ONLY``: stage 2 updates nothing, so only stage 3's re-noising with each step's one
baseline noise, shared by all chunks, above t_min is left), which tells whether a difference between SynCoS and Gen-L-Video comes
from the coupling or from the shared noise. Per video, from
:func:`syncos_jax.metrics.shapes_report`:

* ``identity_unprompted``: the fraction of frames whose (shade, pattern) reading is the video's
  majority pair (1 = no drift); ``identity_shade`` and ``identity_pattern`` separately;
* ``identity_unprompted_ends``: whether the first and the last chunk show the same (shade,
  pattern) — the identity carried across the whole length;
* ``identity_agreement_{1,8,16,32,64}``: the fraction of frame pairs ``d`` frames apart (``d`` in
  ``[1, 8)``, ``[8, 16)``, …, ``[64, ∞)``) showing the same (shade, pattern), and ``identity_drift``,
  the agreement of pairs ``[16, 32)`` apart minus that of pairs ``>= 32`` apart
  (:func:`syncos_jax.metrics.identity_agreement`). Flicker around one identity, correlated over
  less than 16 frames, lowers the agreement alike at every distance from 16 on; drift makes far
  pairs agree less than near ones. So this is the measure that still means something when the
  model itself flickers. (The ``[64, ∞)`` bin exists only in the 96-frame videos, the others average
  the 64- and 96-frame ones: compare it with care);
* the same three for the scene's light alone (``identity_light``, ``identity_light_ends``,
  ``identity_light_agreement_*``, ``identity_light_drift``): a large, low-frequency unprompted
  attribute, which a model settles in its first steps (``experiments/settling.py``), unlike the
  object's shade and pattern; ``identity_drift_distance.png`` then has a second panel for it;
* for context: subject consistency, all five prompted factors right, ghost frames.

Mean ± s.e., and the paired differences against Gen-L-Video on the same scenario and seed, pooled
over the seeds and seed by seed (``paired_by_seed``: over the scenarios of each seed, so the spread
between seeds can be read beside the pooled error bars). The samples are shared with Table 1 (same
variants, same cache). Writes ``identity_drift.{json,md,png}``::

    python experiments/identity_drift.py             # 14 long scenarios × 3 seeds, 50 steps
    python experiments/identity_drift.py --quick     # the quick setup (2 short scenarios, 2 seeds)

``--sample-only gen_l_video syncos`` samples only those samplers (in that order) and writes the
table from the cache, so a long run can be spent where it matters first and the rest added later.

The same agreement is also split by prompt (:func:`with_prompt_split`): over the frame pairs under
the same prompt and over those under different prompts, because the suite's prompts often repeat
(A, B, A, B) and a model that picks the shade and pattern partly from the prompt makes far pairs of
one prompt agree without carrying anything (``identity_drift_by_prompt.png``; only over the videos
whose per-frame readings are cached: records made before they were kept lack them, and
``--refresh-readings`` samples those again). A last table compares the two farthest bins inside the
96-frame videos (``identity_far_drift``, :func:`with_far_drift`), where drift slower than 32 frames
shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os

import numpy as np

import common as C
from syncos_jax import metrics
from syncos_jax.backbones.toy import world
from syncos_jax.metrics import AGREEMENT_BINS, DRIFT_FAR, DRIFT_NEAR

VARIANTS = (C.GEN_L_VIDEO, C.FIFO, C.CSD_ONLY, C.SYNCOS, C.RENOISE_ONLY)
MIN_FRAMES = 64
METRICS = (
    ("identity_unprompted", "unprompted identity"),
    ("identity_unprompted_ends", "same identity at both ends"),
    *((f"identity_agreement_{lo}", f"agreement, d in [{lo}, {hi})")
      for lo, hi in zip(AGREEMENT_BINS, [*AGREEMENT_BINS[1:], "inf"])),
    ("identity_drift", f"drift: agreement [{DRIFT_NEAR}, {DRIFT_FAR}) - [{DRIFT_FAR}, inf)"),
    ("identity_shade", "shade identity"),
    ("identity_pattern", "pattern identity"),
    ("identity_light", "light identity (the scene's)"),
    ("identity_light_ends", "same light at both ends"),
    *((f"identity_light_agreement_{lo}", f"same light, d in [{lo}, {hi})")
      for lo, hi in zip(AGREEMENT_BINS, [*AGREEMENT_BINS[1:], "inf"])),
    ("identity_light_drift", f"light drift: [{DRIFT_NEAR}, {DRIFT_FAR}) - [{DRIFT_FAR}, inf)"),
    ("subject_consistency", "subject cons."),
    ("fidelity_all", "segments all 5 right"),
    ("ghost_fraction", "ghost frames (fraction)"),
)


SEED_METRICS = (
    ("identity_unprompted", "unprompted identity"),
    (f"identity_agreement_{DRIFT_NEAR}", f"agreement, d in [{DRIFT_NEAR}, {DRIFT_FAR})"),
    ("identity_drift", "drift"),
    ("identity_shade", "shade identity"),
    ("identity_pattern", "pattern identity"),
    ("identity_light", "light identity"),
)


def paired_by_seed(records: dict, reference: str, metric_names=tuple(m for m, _ in SEED_METRICS)) -> dict:
    """``{variant: {seed (str): {metric: {"mean", "se", "n"}}}}``: the paired differences
    ``variant − reference`` on the same scenario (:func:`common.paired`), seed by seed.
    ``records``: ``{variant name: run records}`` (:func:`common.collect`); the reference is left out."""
    return {name: {str(seed): C.paired([r for r in recs if r["seed"] == seed], records[reference], metric_names)
                   for seed in sorted({r["seed"] for r in recs})}
            for name, recs in records.items() if name != reference}


PROMPT_SPLITS = (("same", "same prompt"), ("different", "different prompts"))
PROMPT_METRICS = tuple((f"identity_{pairs}_prompt_agreement_{lo}", f"{label}, d in [{lo}, {hi})")
                       for pairs, label in PROMPT_SPLITS
                       for lo, hi in zip(AGREEMENT_BINS, [*AGREEMENT_BINS[1:], "inf"]))

FAR_BINS = AGREEMENT_BINS[-2:]  # (32, 64): the two farthest bins, compared inside the longest videos

def prompt_groups(name: str, frames: int) -> np.ndarray:
    """``[frames]`` int: for each frame of a video of scenario ``name``, the index of its segment's
    prompt among the scenario's distinct prompts (equal prompts, equal index; first seen, first)."""
    sc = C.load(name)
    texts = sc.prompt.texts()
    index = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    out = np.full(frames, -1, np.int64)
    for (a, b), t in zip(sc.prompt.segments(frames), texts):
        out[a:b] = index[t]
    return out


def with_prompt_split(record: dict) -> dict:
    """``record`` with :data:`PROMPT_METRICS` added to its metrics: the identity agreement by distance
    counted only over the frame pairs under the same prompt, and only over those under different
    prompts (:func:`syncos_jax.metrics.identity_agreement` with ``groups``), and
    ``identity_different_prompt_far_drift`` (:func:`with_far_drift` over the pairs under different
    prompts). In scenarios whose prompts repeat (A, B, A, B), far pairs often share a prompt, and a
    model that picks the unprompted identity partly from the prompt makes them agree without
    carrying anything; this split keeps that apart from carried identity. Records cached without
    per-frame readings (:func:`common.has_readings`) are returned unchanged."""
    if not C.has_readings(record):
        return record
    readings = C.readings_from_record(record)
    groups = prompt_groups(record["scenario"], readings.found.size)
    extra = {}
    for pairs, _ in PROMPT_SPLITS:
        agree = metrics.identity_agreement(readings, groups=groups, pairs=pairs)
        extra.update({f"identity_{pairs}_prompt_{k}": v for k, v in agree.items() if k.startswith("agreement_")})
    lo, hi = (extra[f"identity_different_prompt_agreement_{b}"] for b in FAR_BINS)
    extra["identity_different_prompt_far_drift"] = None if lo is None or hi is None else lo - hi
    return {**record, "metrics": {**record["metrics"], **extra}}


def long_scenarios(min_frames: int = MIN_FRAMES) -> list[str]:
    """The suite's scenarios of at least ``min_frames`` frames, in the suite's round-robin order."""
    return [n for n in C.scenario_names(False) if int(n.rsplit("-", 1)[1].rstrip("f")) >= min_frames]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    p.add_argument("--agreement-reference", default=None, metavar="JSON",
                   help="an eval_toy_model.py record of the same weights: its within-clip and across-clip "
                        "agreement are drawn as reference lines")
    p.add_argument("--sample-only", nargs="+", default=None, metavar="SAMPLER", choices=[v.name for v in VARIANTS],
                   help="sample only these samplers now, in this order (of: %(choices)s); the table is then written "
                        "from the cache, every sampler with the videos it has")
    p.add_argument("--refresh-readings", action="store_true",
                   help="with --sample-only: sample again those samplers' cached videos that lack per-frame readings "
                        "(records made before they were kept), for the split by prompt; the new records' metrics "
                        "replace the old ones in the cache (the same up to float rounding)")
    args = p.parse_args(argv)
    if args.refresh_readings and not args.sample_only:
        p.error("--refresh-readings needs --sample-only (which samplers to sample again)")
    if args.sample_only and args.cached_only:
        p.error("--sample-only samples; --cached-only forbids sampling: give one of them")
    if not args.quick and args.names is None and args.scenarios is None:
        args.names = long_scenarios()
    st = C.setup(args)
    if args.sample_only:  # sample these now; then table every sampler from the cache (whatever it holds)
        C.collect(st, [v for name in dict.fromkeys(args.sample_only) for v in VARIANTS if v.name == name], "identity_drift",
                  require=("readings",) if args.refresh_readings else ())
        st = dataclasses.replace(st, cached_only=True)
    labels = {v.name: v.label for v in VARIANTS}

    def sections(records: dict) -> tuple[dict, str]:
        by_seed = paired_by_seed(records, C.GEN_L_VIDEO.name)
        rows = [(f"{labels[name]}, seed {seed}", stats) for name, seeds in by_seed.items() for seed, stats in seeds.items()]
        far_fields, far_md = far_drift_section(records, labels)
        prompt_fields, prompt_md = prompt_section(records, labels)
        noise_fields, noise_md = shared_noise_section(records, labels)
        control_fields, control_md = control_section(records)
        md = ("\nPaired differences against Gen-L-Video seed by seed (mean ± s.e. over the scenarios of that seed):\n\n"
              + C.markdown_table(rows, SEED_METRICS, signed=True) + "\n" + control_md + far_md + prompt_md + noise_md)
        return {"paired_by_seed": by_seed, **control_fields, **far_fields, **prompt_fields, **noise_fields}, md

    payload = C.compare(st, "identity_drift", "The unprompted identity over long videos", VARIANTS, C.GEN_L_VIDEO,
                        metric_names=METRICS,
                        notes="Shade, pattern and light are never prompted: a sampler keeps them only if it carries them "
                              "from chunk to chunk (the light only where the world has one: see the light rows). The paper's claim: fusion alone lets them drift, SynCoS keeps "
                              "them. Frames that flicker within a chunk lower the agreement at every distance; "
                              "drift lowers it only between far frames.", section=sections)
    reference = light_reference = None
    if args.agreement_reference:
        with open(args.agreement_reference) as fh:
            record = json.load(fh)
        reference, light_reference = record["agreement"], record.get("agreement_light")
    distance_plot(os.path.join(st.results, "identity_drift_distance.png"), payload, reference, light_reference)
    prompt_distance_plot(os.path.join(st.results, "identity_drift_by_prompt.png"), payload)
    return payload


def control_section(records: dict) -> tuple[dict, str]:
    """``(fields, markdown)``: SynCoS paired against its re-noise-only control
    (:data:`common.RENOISE_ONLY`) on the same scenario and seed, over :data:`METRICS` and seed by
    seed (:data:`SEED_METRICS`, over the seeds both have). The two differ only in stage 2's update
    (the coupling), so this difference is what the coupling adds on top of re-noising every chunk
    with each step's one baseline noise (shared by all chunks) above t_min. ``fields`` is
    ``{"syncos_vs_renoise_only": None}`` and the markdown empty where the two share no (scenario,
    seed)."""
    syn, ctl = records.get(C.SYNCOS.name, []), records.get(C.RENOISE_ONLY.name, [])
    diff = C.paired(syn, ctl, tuple(m for m, _ in METRICS))
    if not any(stats["n"] for stats in diff.values()):
        return {"syncos_vs_renoise_only": None}, ""
    by_seed = {str(seed): C.paired([r for r in syn if r["seed"] == seed], ctl, tuple(m for m, _ in SEED_METRICS))
               for seed in sorted({r["seed"] for r in syn} & {r["seed"] for r in ctl})}
    md = ("\n## SynCoS against its re-noise-only control\n\nThe control is SynCoS with stage 2 updating nothing "
          "(one iteration at lr 0): what is left is stage 3's re-noising of every chunk with each step's one baseline "
          "noise, shared by all chunks, above t_min. SynCoS − control, paired on the same scenario and seed, is what the coupling adds:\n\n"
          + C.markdown_table([("SynCoS − re-noise only", diff)], METRICS, signed=True) + "\n\nSeed by seed:\n\n"
          + C.markdown_table([(f"seed {seed}", stats) for seed, stats in by_seed.items()], SEED_METRICS, signed=True)
          + "\n")
    return {"syncos_vs_renoise_only": {"pooled": diff, "by_seed": by_seed}}, md


FAR_DRIFT_METRICS = (
    (f"identity_agreement_{DRIFT_NEAR}", f"agreement, d in [{DRIFT_NEAR}, {DRIFT_FAR})"),
    (f"identity_agreement_{FAR_BINS[0]}", f"agreement, d in [{FAR_BINS[0]}, {FAR_BINS[1]})"),
    (f"identity_agreement_{FAR_BINS[1]}", f"agreement, d >= {FAR_BINS[1]}"),
    ("identity_far_drift", f"far drift: [{FAR_BINS[0]}, {FAR_BINS[1]}) - [{FAR_BINS[1]}, inf)"),
    ("identity_different_prompt_far_drift", "far drift, pairs under different prompts"),
)


def with_far_drift(record: dict) -> dict:
    """``record`` with ``identity_far_drift`` added to its metrics: the agreement of frame pairs
    ``[32, 64)`` apart minus that of pairs ``>= 64`` apart (:data:`FAR_BINS`), within the one video
    (``None`` where the video has no pair 64 apart, as the 64-frame ones). ``identity_drift``
    compares ``[16, 32)`` with everything ``>= 32``, which pools these two bins, so drift slower than
    32 frames shows more plainly here. Both bins count pairs under a repeated prompt too; the split
    by prompt (:func:`with_prompt_split`) gives the same over pairs under different prompts only."""
    m = record["metrics"]
    a, b = (m.get(f"identity_agreement_{lo}") for lo in FAR_BINS)
    return {**record, "metrics": {**m, "identity_far_drift": None if a is None or b is None else a - b}}


def far_drift_section(records: dict, labels: dict) -> tuple[dict, str]:
    """``(fields, markdown)``: :data:`FAR_DRIFT_METRICS` over the videos that have pairs 64 apart
    (the 96-frame ones), mean ± s.e. per sampler and paired against Gen-L-Video (the column over the
    pairs under different prompts only over the videos with per-frame readings)."""
    names = tuple(m for m, _ in FAR_DRIFT_METRICS)
    far = {name: [with_far_drift(with_prompt_split(r)) for r in recs
                  if r["metrics"].get(f"identity_agreement_{FAR_BINS[1]}") is not None]
           for name, recs in records.items()}
    summary = {name: C.summarise(recs, names) for name, recs in far.items()}
    diff = {name: C.paired(recs, far[C.GEN_L_VIDEO.name], names) for name, recs in far.items()
            if name != C.GEN_L_VIDEO.name}
    md = ("\n## Slow drift: the videos long enough to have pairs 64 frames apart\n\n`identity_drift` compares "
          "pairs 16–31 apart with all pairs 32 or more apart; drift slower than that shows between pairs 32–63 and "
          "pairs 64 or more apart, inside the same (96-frame) videos. Both bins include pairs under a repeated "
          "prompt; the last column counts only pairs under different prompts (videos with per-frame readings):\n\n"
          + C.markdown_table([(labels[n], summary[n]) for n in far], FAR_DRIFT_METRICS + (("videos", "videos"),))
          + "\n\nPaired differences against Gen-L-Video (same scenario and seed):\n\n"
          + C.markdown_table([(labels[n], diff[n]) for n in diff], FAR_DRIFT_METRICS, signed=True) + "\n")
    return {"far_drift": {"summary": summary, "paired_vs_reference": diff}}, md


AGREEMENT_METRICS = tuple((f"identity_agreement_{lo}", f"agreement, d in [{lo}, {hi})")
                          for lo, hi in zip(AGREEMENT_BINS, [*AGREEMENT_BINS[1:], "inf"]))


def same_frame_agreement(records) -> dict:
    """Whether the videos of one seed share their identity: over every two videos of equal length
    with per-frame readings, the fraction of frame indices where both show the same (shade,
    pattern) (frames where both found the object), averaged over the pairs of videos of the same
    seed and over those of different seeds: ``{"same_seed": {"mean", "se", "n"}, "different_seeds":
    ...}`` (``n``: pairs of videos). The sampling key is the seed alone (:func:`common.sample_scenario`),
    so the videos of one seed and length start from the same noise; if that noise fixed the
    identity, same-seed pairs would agree more than different-seed ones, and the videos of one seed
    would not be independent draws."""
    videos = []
    for r in records:
        if C.has_readings(r):
            rd = C.readings_from_record(r)
            ident = metrics.identity_code(rd)
            videos.append((r["seed"], ident))
    out = {"same_seed": [], "different_seeds": []}
    for i, (seed_a, a) in enumerate(videos):
        for seed_b, b in videos[i + 1:]:
            if a.size != b.size:
                continue
            both = (a >= 0) & (b >= 0)
            if both.any():
                out["same_seed" if seed_a == seed_b else "different_seeds"].append(float(np.mean(a[both] == b[both])))
    return {k: dict(zip(("mean", "se", "n"), C.mean_se(v))) for k, v in out.items()}


def shared_noise_section(records: dict, labels: dict) -> tuple[dict, str]:
    """``(fields, markdown)``: the agreement bins seed by seed (mean ± s.e. over the scenarios of each
    seed) and :func:`same_frame_agreement` per sampler: whether one seed's videos share anything."""
    by_seed = {name: {str(seed): C.summarise([r for r in recs if r["seed"] == seed], [m for m, _ in AGREEMENT_METRICS])
                      for seed in sorted({r["seed"] for r in recs})}
               for name, recs in records.items()}
    same = {name: same_frame_agreement(recs) for name, recs in records.items()}
    rows = [(f"{labels[name]}, seed {seed}", summ) for name, seeds in by_seed.items() for seed, summ in seeds.items()]
    lines = [f"| {labels[n]} | {C.fmt(v['same_seed'], 3)} ({v['same_seed']['n']}) | "
             f"{C.fmt(v['different_seeds'], 3)} ({v['different_seeds']['n']}) |" for n, v in same.items()]
    md = ("\n## Seed by seed, and whether one seed's videos share their identity\n\nThe agreement by distance, "
          "mean ± s.e. over the scenarios of each seed:\n\n"
          + C.markdown_table(rows, AGREEMENT_METRICS + (("videos", "videos"),)) + "\n\n"
          "The sampling key is the seed alone, so the videos of one seed and length start from the same noise. "
          "Over every two videos of equal length with per-frame readings, the fraction of frame indices showing "
          "the same shade and pattern in both (pairs of videos in brackets; each video is in many pairs, so the "
          "s.e. over pairs is only a rough guide):\n\n"
          "| variant | same seed | different seeds |\n|---|---|---|\n" + "\n".join(lines) + "\n")
    return {"agreement_by_seed": by_seed, "same_frame_agreement": same}, md


def prompt_section(records: dict, labels: dict) -> tuple[dict, str]:
    """``(fields, markdown)`` of the agreement split by prompt (:func:`with_prompt_split`), over the
    videos cached with per-frame readings: mean ± s.e. per sampler and the paired differences
    against Gen-L-Video. ``records``: ``{variant name: run records}``; ``labels``: their table names."""
    names = tuple(m for m, _ in PROMPT_METRICS)
    split = {name: [with_prompt_split(r) for r in recs if C.has_readings(r)] for name, recs in records.items()}
    summary = {name: C.summarise(recs, names) for name, recs in split.items()}
    diff = {name: C.paired(recs, split[C.GEN_L_VIDEO.name], names) for name, recs in split.items()
            if name != C.GEN_L_VIDEO.name}
    if not any(split.values()):
        return {"prompt_split": None}, ("\n## The agreement split by prompt\n\nNo video of this run has per-frame "
                                        "readings cached (they are kept since the split was added), so there is no "
                                        "split by prompt.\n")
    cols = PROMPT_METRICS + (("videos", "videos"),)
    md = ("\n## The agreement split by prompt\n\nThe agreement above counts every pair of frames. In a scenario "
          "whose prompts repeat (A, B, A, B), frames two events apart share a prompt, and if the model picks the "
          "shade and pattern partly from the prompt they agree more without any identity carried between them. "
          "Here the pairs under the same prompt and the pairs under different prompts are counted apart (over the "
          "videos cached with per-frame readings; pairs of one prompt closer than 16 frames are mostly inside one "
          "event, those farther apart are in different events of the same prompt):\n\n"
          + C.markdown_table([(labels[n], summary[n]) for n in split], cols) + "\n\n"
          "Paired differences against Gen-L-Video (same scenario and seed):\n\n"
          + C.markdown_table([(labels[n], diff[n]) for n in diff], PROMPT_METRICS, signed=True) + "\n")
    return {"prompt_split": {"summary": summary, "paired_vs_reference": diff}}, md


def _agreement_panel(ax, payload: dict, summaries: dict, key: str) -> None:
    """One panel of agreement against distance: a line per sampler in ``summaries`` (``{name:
    summary}``) of the metrics ``key.format(lo)`` over :data:`AGREEMENT_BINS`, mean ± s.e., with the
    sampler's number of videos in its label."""
    x = np.arange(len(AGREEMENT_BINS))
    order = list(payload["variants"])  # a sampler's colour: its place among all variants, in every panel
    summaries = {name: summ for name, summ in summaries.items() if summ["videos"]["n"]}
    for i, (name, summ) in enumerate(summaries.items()):
        stats = [summ[key.format(lo)] for lo in AGREEMENT_BINS]
        mu = np.array([s["mean"] for s in stats], float)
        se = np.nan_to_num(np.array([s["se"] for s in stats], float))
        label = f'{payload["variants"][name]["label"]} ({summ["videos"]["n"]} videos)'
        ax.errorbar(x + 0.05 * (i - (len(summaries) - 1) / 2), mu, yerr=se, marker="o", capsize=3, label=label,
                    color=f"C{order.index(name) if name in order else i}")
    edges = [str(b) for b in AGREEMENT_BINS] + ["∞"]
    ax.set_xticks(x, [f"[{a}, {b})" for a, b in zip(edges, edges[1:])], fontsize=8)
    ax.set_xlabel("distance between the two frames (frames)")


def prompt_distance_plot(path: str, payload: dict) -> None:
    """Two panels of :func:`distance_plot`'s agreement against distance, over the frame pairs under
    the same prompt (left) and under different prompts (right); one line per sampler. Where no video
    has per-frame readings (``payload["prompt_split"]`` is ``None``) it draws nothing and removes a
    picture left at ``path`` by an earlier run, so no stale picture sits beside the tables."""
    import plotting

    if not payload.get("prompt_split"):
        if os.path.exists(path):
            os.remove(path)
        return
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.4, 3.4), sharey=True)
    for ax, (pairs, title) in zip(axes, PROMPT_SPLITS):
        _agreement_panel(ax, payload, payload["prompt_split"]["summary"], f"identity_{pairs}_prompt_agreement_{{}}")
        ax.set_title(f"pairs under {title}", fontsize=10)
    axes[0].set_ylabel("same shade and pattern (fraction of pairs)")
    axes[0].legend(fontsize=8)
    plotting.save(fig, path)


def distance_plot(path: str, payload: dict, reference: dict | None = None, light_reference: dict | None = None) -> None:
    """Agreement of the unprompted identity against frame distance (mean ± s.e. per bin), one line
    per sampler (its number of videos in the legend): flat lines (from 16 frames on) are flicker,
    falling lines are drift. The last bin averages only the videos long enough to have it.
    ``reference`` (``eval_toy_model.agreement_baselines``: ``within_clip``, ``across_clips``) adds
    the model's agreement inside one single-chunk sample and between unrelated samples (chance).
    Where the videos were read with the scene's light (``identity_light_agreement_*`` in the
    summary), a second panel shows the light alone, with ``light_reference`` (the same two levels
    for the light: ``eval_toy_model.py``'s ``agreement_light``) where given. A sampler without
    videos is left out; each sampler keeps its colour in both panels."""
    import plotting

    def has_light(summ):
        return math.isfinite(summ.get("identity_light_agreement_1", {}).get("mean", math.nan))

    light = any(has_light(summ) for summ in payload["summary"].values())
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 2 if light else 1, figsize=(9.4 if light else 5.2, 3.4), squeeze=False)
    ax = axes[0, 0]
    _agreement_panel(ax, payload, payload["summary"], "identity_agreement_{}")
    levels = (("within_clip", "one chunk, single DDIM", "--"), ("across_clips", "unrelated clips (chance)", ":"))
    for key, text, style in levels:
        if reference and reference.get(key) is not None:
            ax.axhline(reference[key], color="0.4", ls=style, lw=1, label=text)
    ax.set_ylabel("same shade and pattern (fraction of pairs)")
    ax.set_title("The object's unprompted identity", fontsize=10)
    ax.legend(fontsize=8)
    if light:
        ax = axes[0, 1]
        _agreement_panel(ax, payload, {k: v for k, v in payload["summary"].items() if has_light(v)},
                         "identity_light_agreement_{}")
        if light_reference:
            for key, text, style in levels:
                if light_reference.get(key) is not None:
                    ax.axhline(light_reference[key], color="0.4", ls=style, lw=1, label=text)
        else:
            ax.axhline(1 / len(world.LIGHTS), color="0.4", ls=":", lw=1, label="chance (4 lights, uniform)")
        ax.set_ylabel("same light (fraction of pairs)")
        ax.set_title("The scene's light", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Unprompted identity: agreement against distance", fontsize=10)
    plotting.save(fig, path)


if __name__ == "__main__":
    main()
