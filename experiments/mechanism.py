"""What in SynCoS helps? Variants that separate its parts, and a look inside stage 2.

Variants (all but the first two are extensions beyond the paper, options of ``samplers.syncos``):

* **SynCoS** — the paper's defaults; **Gen-L-Video** — the reference;
* **re-noise only** — stage 2 updates nothing (``iters=1, lr=0``), so a step is Gen-L-Video's
  fused ``x̂_0`` re-noised with fresh (baseline) noise wherever ``t > t_min``;
* **Gen-L-Video, η = 1 above t_min** — DDIM's stochastic step only where SynCoS runs stage 2;
* **no repulsion** — the CSD gradient without SVGD's repulsion term;
* **clean kernel** — the RBF kernel on the chunks of the current estimate ``Y`` instead of the
  noisy chunks (median heuristic), and **clean kernel, fixed γ** — with one bandwidth for all
  steps, set from the world's data (``log(B + 1)/median D²`` over pairs of independent training
  clips, the plain median of the distinct pairs rather than csd.py's lower median with the zero
  diagonal, so smaller than the heuristic would give; not tuned on results);
* **SGD** — plain gradient descent at the paper's ``lr`` instead of AdamW.

Inside stage 2 (SynCoS and Gen-L-Video, seed 0 of a few scenarios, from the sampler's
diagnostics): how far stage 2 moves the fused ``x̂_0`` against the distances between its chunks;
the RBF weights between chunks on the noisy chunks and on the clean ones; and when each attribute
of the video settles — per step, the fraction of frames whose probe reading of the step's ``x̂_0``
agrees with the final video (object centre within 2 px, colour, shape, background) — the x̂₀ after
stage 2, the fused one for Gen-L-Video — and the first
step from which at least 80 % agree to the end.

Writes ``mechanism.{json,md,png}`` and ``mechanism_inside.png``; ``--quick`` for the reduced run.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np

import common as C

SETTLE_FRACTION = 0.8
CENTRE_TOLERANCE = 2.0  # px


def data_gamma(num_clips: int = 64, batch_chunks: int = 4, seed: int = 0) -> float:
    """``log(B + 1) / median ‖c_i − c_j‖²`` over pairs of independent 8-frame training clips of the world."""
    from syncos_jax.backbones.toy import world

    _, clips, _ = world.sample_batch(seed, num_clips, frames=8)
    flat = clips.reshape(num_clips, -1).astype(np.float64)
    d2 = ((flat[:, None] - flat[None]) ** 2).sum(-1)[np.triu_indices(num_clips, 1)]
    return float(math.log(batch_chunks + 1) / np.median(d2))


def variants() -> tuple:
    gamma = data_gamma()
    return (
        C.SYNCOS,
        C.GEN_L_VIDEO,
        C.RENOISE_ONLY,
        C.Variant.make("glv_eta1_above_tmin", "gen-l-video", "GLV, η=1 above t_min", eta_above_t_min=1.0),
        C.Variant.make("syncos_no_repulsion", "syncos", "no repulsion", repulsion=False),
        C.Variant.make("syncos_clean_kernel", "syncos", "clean kernel", kernel_on="clean"),
        C.Variant.make("syncos_clean_fixed_gamma", "syncos", "clean kernel, fixed γ", kernel_on="clean",
                       kernel_gamma=round(gamma, 10)),
        C.Variant.make("syncos_sgd", "syncos", "SGD", optimizer="sgd"),
    )


# ---------------------------------------------------------------------------------------------
# Inside stage 2
# ---------------------------------------------------------------------------------------------


def _rms(x, axis=None):
    return np.sqrt(np.mean(np.square(x), axis=axis))


def _kernel_offdiag(points: np.ndarray, batch: int, rng: np.random.Generator, draws: int = 32) -> float:
    """Mean off-diagonal RBF weight of :func:`syncos_jax.csd.rbf_kernel` (the sampler's own median
    heuristic) over random ``batch``-subsets of ``points: [N, ...]``."""
    from syncos_jax.csd import rbf_kernel

    off = ~np.eye(batch, dtype=bool)
    vals = [np.asarray(rbf_kernel(np.asarray(points[rng.choice(len(points), size=batch, replace=False)],
                                             np.float32)).matrix)[off].mean() for _ in range(draws)]
    return float(np.mean(vals))


def _agreement(x0_steps: np.ndarray, final: np.ndarray) -> dict:
    """Per step, the fraction of frames whose readings of ``x0_steps: [S, F, H, W, 3]`` agree with ``final``."""
    from syncos_jax import metrics

    ref = metrics.probe_frames(np.clip(final, -1, 1))
    out = {"centre": [], "colour": [], "shape": [], "background": []}
    for x0 in x0_steps:
        r = metrics.probe_frames(np.clip(x0, -1, 1))
        both = r.found & ref.found
        near = both & (np.linalg.norm(np.nan_to_num(r.centre - ref.centre, nan=1e9), axis=-1) <= CENTRE_TOLERANCE)
        out["centre"].append(float(near.mean()))
        out["colour"].append(float((both & (r.colour == ref.colour)).mean()))
        out["shape"].append(float((both & (r.shape == ref.shape)).mean()))
        out["background"].append(float((r.background == ref.background).mean()))
    return out


def settle_step(curve, fraction: float = SETTLE_FRACTION) -> int | None:
    """The first step from which the agreement ``curve`` stays at or above ``fraction`` (None: never)."""
    c = np.asarray(curve)
    for k in range(len(c)):
        if np.all(c[k:] >= fraction):
            return int(k)
    return None


def inside(st: C.Setup, names, variant_list) -> dict:
    """The stage-2 and settling measurements of ``variant_list`` on seed 0 of ``names``."""
    bb = C.backbone()
    schedule = bb.schedule(st.steps)
    ts = np.asarray(schedule.timesteps, np.float64)
    alphas, sigmas = np.asarray(schedule.alphas), np.asarray(schedule.sigmas)
    from syncos_jax.chunking import ChunkLayout, take

    out = {}
    rng = np.random.default_rng(0)
    bar = C.progress_bar(len(names) * len(variant_list), "inside")
    for v in variant_list:
        per = []
        for name in names:
            frames, _, _, diag = C.sample_scenario(v, name, (0,), steps=st.steps,
                                                   diagnostics=("x0", "x0_fused", "base_noise"))
            x0, fused, E = diag["x0"][0], diag["x0_fused"][0], diag["base_noise"][0]
            layout = ChunkLayout(fused.shape[1], bb.chunk_frames, 4)
            rec = {"scenario": name, "t": ts.tolist(), "move_rms": [], "chunk_dist_rms": [],
                   "kernel_noisy": [], "kernel_clean": []}
            B = min(layout.num_chunks, 4)
            for k in range(st.steps):
                ch = np.asarray(take(layout, fused[k]))
                rec["move_rms"].append(float(_rms(x0[k] - fused[k])))
                iu = np.triu_indices(len(ch), 1)
                flat = ch.reshape(len(ch), -1)
                rec["chunk_dist_rms"].append(float(np.mean(_rms(flat[iu[0]] - flat[iu[1]], axis=-1))))
                z = alphas[k] * ch + sigmas[k] * np.asarray(take(layout, E[k])) if E[k].any() else None
                rec["kernel_noisy"].append(None if z is None else _kernel_offdiag(z, B, rng))
                rec["kernel_clean"].append(_kernel_offdiag(ch, B, rng))
            agree = _agreement(x0, frames[0])
            rec["agreement"] = agree
            rec["settle_step"] = {a: settle_step(c) for a, c in agree.items()}
            per.append(rec)
            bar.update(1)
        out[v.name] = per
    bar.close()
    return out


def plot_inside(path: str, data: dict, labels: dict) -> None:
    import plotting

    plt = plotting.pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    for i, (vname, per) in enumerate(data.items()):
        col = f"C{i}"
        for j, rec in enumerate(per):
            lab = labels[vname] if j == 0 else None
            steps = np.arange(len(rec["t"]))
            axes[0].plot(steps, rec["move_rms"], color=col, alpha=0.8, label=lab)
            if j == 0 and i == 0:
                axes[0].plot(steps, rec["chunk_dist_rms"], color="k", ls="--", label="RMS distance between chunks")
            kn = [np.nan if v is None else v for v in rec["kernel_noisy"]]
            axes[1].plot(steps, kn, color=col, alpha=0.8, label=(lab + ", noisy") if lab else None)
            axes[1].plot(steps, rec["kernel_clean"], color=col, ls=":", alpha=0.8, label=(lab + ", clean") if lab else None)
            axes[2].plot(steps, rec["agreement"]["centre"], color=col, alpha=0.8, label=lab)
            axes[3].plot(steps, rec["agreement"]["colour"], color=col, alpha=0.8, label=lab)
    axes[0].set_title("stage 2's move of x̂₀ (RMS per element)", fontsize=9)
    axes[1].set_title("mean off-diagonal RBF weight (B=4)", fontsize=9)
    axes[2].set_title("frames whose x̂₀ centre agrees with the final", fontsize=9)
    axes[3].set_title("frames whose x̂₀ colour agrees with the final", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    plotting.save(fig, path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    p.add_argument("--inside-scenarios", type=int, default=None, help="scenarios for the look inside (default: 2 quick, 4 full)")
    args = p.parse_args(argv)
    st = C.setup(args)
    vs = variants()
    payload = C.compare(st, "mechanism", "Mechanism: what in SynCoS helps", vs, C.GEN_L_VIDEO,
                        notes="Extensions beyond the paper that separate SynCoS's parts; see experiments/mechanism.py.")
    n_inside = args.inside_scenarios or (2 if st.quick else 4)
    look = inside(st, list(st.scenarios[:n_inside]), (C.SYNCOS, C.GEN_L_VIDEO))
    plot_inside(os.path.join(st.results, "mechanism_inside.png"), look, {v.name: v.label for v in vs})
    stage2 = [k for k, t in enumerate(look["syncos"][0]["t"]) if t > 800]
    lines = ["", "## Inside stage 2 (seed 0)", "",
             "| scenario | sampler | mean RMS move of x̂₀ by stage 2 | mean RMS distance between chunks | "
             "RBF weight, noisy chunks | RBF weight, clean chunks | settle step: centre / colour / shape / background |",
             "|---|---|---|---|---|---|---|"]
    for vname, per in look.items():
        for rec in per:
            mv = np.mean([rec["move_rms"][k] for k in stage2]) if stage2 else float("nan")
            cd = np.mean([rec["chunk_dist_rms"][k] for k in stage2]) if stage2 else float("nan")
            kn = [rec["kernel_noisy"][k] for k in stage2 if rec["kernel_noisy"][k] is not None]
            kc = [rec["kernel_clean"][k] for k in stage2]
            ss = rec["settle_step"]
            lines.append(f"| {rec['scenario']} | {vname} | {mv:.3f} | {cd:.3f} | "
                         f"{np.mean(kn) if kn else float('nan'):.3f} | {np.mean(kc):.3f} | "
                         f"{ss['centre']} / {ss['colour']} / {ss['shape']} / {ss['background']} |")
    lines.append(f"\nStage 2 runs at steps {stage2[0] if stage2 else '—'}–{stage2[-1] if stage2 else '—'} "
                 f"(t > 800) of {st.steps}. Settle step: the first step from which ≥ {SETTLE_FRACTION:.0%} of frames "
                 f"of the step's x̂₀ (after stage 2) agree with the final video to the end.")
    payload["inside"] = look
    payload["data_gamma"] = data_gamma()
    md = open(os.path.join(st.results, "mechanism.md")).read() + "\n".join(lines)
    C.write_outputs(st.results, "mechanism", payload, md)
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
