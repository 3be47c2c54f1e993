"""Sweeps of SynCoS's settings: stride, ``iters``, ``t_min``, ``lr`` and ``batch_chunks``.

One setting at a time from the paper's defaults (stride 4, iters 20, t_min 800, lr 0.5, B = 4).
Quality against NFE, and the cheapest setting whose subject consistency is within one standard
error of the best. Writes ``sweeps.{json,md,png}``; ``--quick`` sweeps one value of iters, lr and B.
"""

from __future__ import annotations

import argparse
import math
import os


import common as C

FULL = {"stride": (2, 8), "iters": (5, 10, 40), "t_min": (600, 900), "lr": (0.02, 0.1, 1.0), "batch_chunks": (1, 2)}
QUICK = {"iters": (5,), "lr": (0.02,), "batch_chunks": (1,)}  # stride and t_min only in the full run
QUALITY = (("subject_consistency", "subject consistency"), ("centre_jump_at_boundary", "jump at boundary (px)"),
           ("ghost_fraction", "ghost frames (fraction)"), ("fidelity_all", "segments all 5 right"))


def variants(quick: bool) -> list:
    out = [C.SYNCOS]
    for setting, values in (QUICK if quick else FULL).items():
        for v in values:
            name = f"syncos_{setting}_{v}".replace(".", "p")
            if setting == "stride":
                out.append(C.Variant.make(name, "syncos", f"stride={v}", stride=v))
            else:
                out.append(C.Variant.make(name, "syncos", f"{setting}={v}", **{setting: v}))
    return out


def cheapest_best(rows, metric: str = "subject_consistency"):
    """The label of the lowest-NFE row whose ``metric`` is within one s.e. of the best row's."""
    best = max(rows, key=lambda r: r[1][metric]["mean"])
    bar = best[1][metric]["mean"] - (best[1][metric]["se"] if math.isfinite(best[1][metric]["se"] or float("nan")) else 0)
    ok = [r for r in rows if r[1][metric]["mean"] >= bar]
    return min(ok, key=lambda r: r[1]["nfe"]["mean"])[0], best[0]


def plot(path: str, rows) -> None:
    import plotting

    plt = plotting.pyplot()

    fig, axes = plt.subplots(1, len(QUALITY), figsize=(4 * len(QUALITY), 3.4))
    for ax, (m, t) in zip(axes, QUALITY):
        for i, (lab, s) in enumerate(rows):
            se = s[m]["se"] if s[m]["se"] is not None and math.isfinite(s[m]["se"]) else 0
            ax.errorbar(s["nfe"]["mean"], s[m]["mean"], yerr=se, fmt="o", color="k" if i == 0 else f"C{i % 10}")
            ax.annotate(lab, (s["nfe"]["mean"], s[m]["mean"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("NFE per video", fontsize=8)
        ax.set_title(t, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("SynCoS sweeps: quality against NFE (black: the paper's defaults)", fontsize=10)
    plotting.save(fig, path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    st = C.setup(p.parse_args(argv))
    vs = variants(st.quick)
    payload = C.compare(st, "sweeps", "Sweeps of SynCoS's settings", vs, C.SYNCOS,
                        notes="One setting at a time from the paper's defaults (stride 4, iters 20, t_min 800, lr 0.5, "
                              "B = 4); quality against NFE in sweeps.png.")
    rows = [(v.label, payload["summary"][v.name]) for v in vs]
    cheap, best = cheapest_best(rows)
    payload["cheapest_within_one_se_of_best_subject_consistency"] = cheap
    payload["best_subject_consistency"] = best
    note = (f"\nBest subject consistency: **{best}**; the cheapest setting within one s.e. of it: **{cheap}** "
            f"(NFE {dict(rows)[cheap]['nfe']['mean']:.0f} against {dict(rows)['SynCoS']['nfe']['mean']:.0f} for the defaults).\n")
    md = open(os.path.join(st.results, "sweeps.md")).read() + note
    C.write_outputs(st.results, "sweeps", payload, md)
    plot(os.path.join(st.results, "sweeps.png"), rows)
    print(note)
    return payload


if __name__ == "__main__":
    main()
