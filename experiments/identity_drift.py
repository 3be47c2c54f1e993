"""Does the unprompted identity drift over a long video, and does SynCoS keep it?

The paper's main phenomenon: what the prompt does not say (a face, a coat's pattern, the exact
shade of a car) drifts under fusion-only sampling, because each chunk denoises toward its own
guess and overlaps only align neighbours; SynCoS's global coupling is meant to fix it. In the
shapes world the object's shade and pattern are never named by a prompt, are drawn afresh by the
model for every video, and are read exactly by the probes, so their drift has a ground truth.

Gen-L-Video, FIFO, CSD-only and SynCoS on the suite's long scenarios (64 and 96 frames: 15 and 23
chunks of 8 at stride 4), three seeds, 50 steps. Per video, from
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
* for context: subject consistency, all five prompted factors right, ghost frames.

Mean ± s.e., and the paired differences against Gen-L-Video on the same scenario and seed, pooled
over the seeds and seed by seed (``paired_by_seed``: over the scenarios of each seed, so the spread
between seeds can be read beside the pooled error bars). The samples are shared with Table 1 (same
variants, same cache). Writes ``identity_drift.{json,md,png}``::

    python experiments/identity_drift.py             # 14 long scenarios × 3 seeds, 50 steps
    python experiments/identity_drift.py --quick     # the quick setup (2 short scenarios, 2 seeds)

``--sample-only gen_l_video syncos`` samples only those samplers (in that order) and writes the
table from the cache, so a long run can be spent where it matters first and the rest added later.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import numpy as np

import common as C
from syncos_jax.metrics import AGREEMENT_BINS, DRIFT_FAR, DRIFT_NEAR

VARIANTS = (C.GEN_L_VIDEO, C.FIFO, C.CSD_ONLY, C.SYNCOS)
MIN_FRAMES = 64
METRICS = (
    ("identity_unprompted", "unprompted identity"),
    ("identity_unprompted_ends", "same identity at both ends"),
    *((f"identity_agreement_{lo}", f"agreement, d in [{lo}, {hi})")
      for lo, hi in zip(AGREEMENT_BINS, [*AGREEMENT_BINS[1:], "inf"])),
    ("identity_drift", f"drift: agreement [{DRIFT_NEAR}, {DRIFT_FAR}) - [{DRIFT_FAR}, inf)"),
    ("identity_shade", "shade identity"),
    ("identity_pattern", "pattern identity"),
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
)


def paired_by_seed(records: dict, reference: str, metric_names=tuple(m for m, _ in SEED_METRICS)) -> dict:
    """``{variant: {seed (str): {metric: {"mean", "se", "n"}}}}``: the paired differences
    ``variant − reference`` on the same scenario (:func:`common.paired`), seed by seed.
    ``records``: ``{variant name: run records}`` (:func:`common.collect`); the reference is left out."""
    return {name: {str(seed): C.paired([r for r in recs if r["seed"] == seed], records[reference], metric_names)
                   for seed in sorted({r["seed"] for r in recs})}
            for name, recs in records.items() if name != reference}


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
    args = p.parse_args(argv)
    if args.sample_only and args.cached_only:
        p.error("--sample-only samples; --cached-only forbids sampling: give one of them")
    if not args.quick and args.names is None and args.scenarios is None:
        args.names = long_scenarios()
    st = C.setup(args)
    if args.sample_only:  # sample these now; then table every sampler from the cache (whatever it holds)
        C.collect(st, [v for name in dict.fromkeys(args.sample_only) for v in VARIANTS if v.name == name], "identity_drift")
        st = dataclasses.replace(st, cached_only=True)
    labels = {v.name: v.label for v in VARIANTS}

    def seed_section(records: dict) -> tuple[dict, str]:
        by_seed = paired_by_seed(records, C.GEN_L_VIDEO.name)
        rows = [(f"{labels[name]}, seed {seed}", stats) for name, seeds in by_seed.items() for seed, stats in seeds.items()]
        return {"paired_by_seed": by_seed}, ("\nPaired differences against Gen-L-Video seed by seed (mean ± s.e. over "
                                             "the scenarios of that seed):\n\n"
                                             + C.markdown_table(rows, SEED_METRICS, signed=True) + "\n")

    payload = C.compare(st, "identity_drift", "The unprompted identity over long videos", VARIANTS, C.GEN_L_VIDEO,
                        metric_names=METRICS,
                        notes="Shade and pattern are never prompted: a sampler keeps them only if it carries them "
                              "from chunk to chunk. The paper's claim: fusion alone lets them drift, SynCoS keeps "
                              "them. Frames that flicker within a chunk lower the agreement at every distance; "
                              "drift lowers it only between far frames.", section=seed_section)
    reference = None
    if args.agreement_reference:
        with open(args.agreement_reference) as fh:
            reference = json.load(fh)["agreement"]
    distance_plot(os.path.join(st.results, "identity_drift_distance.png"), payload, reference)
    return payload


def distance_plot(path: str, payload: dict, reference: dict | None = None) -> None:
    """Agreement of the unprompted identity against frame distance (mean ± s.e. per bin), one line
    per sampler (its number of videos in the legend): flat lines (from 16 frames on) are flicker,
    falling lines are drift. The last bin averages only the videos long enough to have it.
    ``reference`` (``eval_toy_model.agreement_baselines``: ``within_clip``, ``across_clips``) adds
    the model's agreement inside one single-chunk sample and between unrelated samples (chance)."""
    import plotting

    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    x = np.arange(len(AGREEMENT_BINS))
    for i, (name, summ) in enumerate(payload["summary"].items()):
        stats = [summ[f"identity_agreement_{lo}"] for lo in AGREEMENT_BINS]
        mu = np.array([s["mean"] for s in stats], float)
        se = np.nan_to_num(np.array([s["se"] for s in stats], float))
        label = f'{payload["variants"][name]["label"]} ({summ["videos"]["n"]} videos)'
        ax.errorbar(x + 0.05 * (i - (len(payload["summary"]) - 1) / 2), mu, yerr=se, marker="o", capsize=3, label=label)
    for key, text, style in (("within_clip", "one chunk, single DDIM", "--"), ("across_clips", "unrelated clips (chance)", ":")):
        if reference and reference.get(key) is not None:
            ax.axhline(reference[key], color="0.4", ls=style, lw=1, label=text)
    edges = [str(b) for b in AGREEMENT_BINS] + ["∞"]
    ax.set_xticks(x, [f"[{a}, {b})" for a, b in zip(edges, edges[1:])], fontsize=8)
    ax.set_xlabel("distance between the two frames (frames)")
    ax.set_ylabel("same shade and pattern (fraction of pairs)")
    ax.set_title("Unprompted identity: agreement against distance", fontsize=10)
    ax.legend(fontsize=8)
    plotting.save(fig, path)


if __name__ == "__main__":
    main()
