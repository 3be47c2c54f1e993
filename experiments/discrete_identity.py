"""Does a long video keep an identity the prompt never names? An exact answer with no model error.

    python experiments/discrete_identity.py [--quick] [--out experiments/results] [--keys N]
                                            [--atom-scales 1 2 4] [--samplers ...] [--stride S]

The shapes world asks this of a trained toy model, which flickers its unprompted shade and pattern
even inside one chunk (``experiments/results/drift_px16``), so it cannot tell a sampler's drift from
the model's own. Here the denoiser is exact. The prior is
:class:`~syncos_jax.backbones.gaussian.GaussianVideoPrior` with a **discrete identity**: every
video carries one of ``K`` atoms ``u_k`` (``k`` uniform, in no prompt) in every frame, on top of
its event's prompt mean and a short-range AR(1) part,

    x_0[i] = m_{p(i)} + u_k + s[i],     s ~ AR(1) with ρ, variance v,

with ``P`` events (prompts) in equal segments. Exactly sampled, a video shows one identity
throughout. Each sampler builds the video from chunks of ``f`` frames (stride ``f/2``, or ``--stride``), and each
chunk's exact posterior must *decide* ``k``: fusion-only sampling keeps one identity only if the
overlaps pass the decision from chunk to chunk. This is the paper's phenomenon (a subject's unnamed
features drifting across events) in its barest form, and SynCoS's global coupling is meant to cure
it.

Per sampler (guidance 1, so the target law is the prior), ``--keys`` videos; each frame's identity
is read as the nearest ``m_p + u_k`` over all ``(p, k)`` (the exact per-frame decision for equal
covariances). Reported:

* ``agreement[d]``: the fraction of frame pairs ``d`` apart that read the same identity (1 for a
  video that keeps it; ``1/K`` for independent identities), with the standard error over videos;
* ``kept``: the fraction of videos whose frames all read one identity; ``switches``: the mean number
  of changes between consecutive frames; ``residual RMS``: how far frames lie from the centre they
  are read as (``√v`` for the prior; a sampler far above it makes frames the prior does not, and
  its readout means little);
* **the prior** (videos drawn from the prior directly, read the same way): the readout's own error.

The atoms are ``atom_scale · z`` with ``z`` standard normal per pixel, one row per ``--atom-scales``
value: the larger the atoms, the earlier in sampling a chunk decides its identity. ``decided_t``
says where: along a single chunk's exact DDIM trajectory, the first model time from which the
identity posterior ``max_k p(k | x_t)`` stays above 0.9 (median over keys), against SynCoS's
``t_min = 800`` (its coupling stage runs only above it).

``--stride S`` (default ``f/2 = 4``) sets how far consecutive chunks are apart: a smaller stride gives
every frame more chunks and each overlap more frames, which tests whether a longer overlap carries a
chunk's decision to the next (FIFO and DDIM over the whole video do not use it).

Writes ``discrete_identity[_quick][_strideS].{json,md,png}`` under ``--out`` (``_strideS`` only for
a stride other than 4).
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
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gaussian_identity import sample_fn, sampler_options  # noqa: E402

from syncos_jax import schedules  # noqa: E402
from syncos_jax.backbones.gaussian import GaussianVideoPrior  # noqa: E402
from syncos_jax.chunking import ChunkLayout, prompt_of_frame  # noqa: E402
from syncos_jax.prompts import Conditioning  # noqa: E402

SAMPLERS = ("ddim", "gen_l_video", "syncos", "csd_only", "fifo", "renoise_only", "syncos_no_tmin")
LABELS = {"ddim": "DDIM, whole video (no chunks)", "gen_l_video": "Gen-L-Video", "syncos": "SynCoS",
          "csd_only": "CSD-only", "fifo": "FIFO", "renoise_only": "SynCoS re-noise only (lr 0)",
          "syncos_no_tmin": "SynCoS, stage 2 at every step (no t_min)", "prior": "prior (exact draws)"}
BINS = (1, 8, 16, 32)  # agreement pooled over d in [1, 8), [8, 16), [16, 32), [32, F)


def bin_edges(F: int) -> list[int]:
    """The lower edges of :data:`BINS` that a video of ``F`` frames has pairs for, then ``F``."""
    return [b for b in BINS if b < F] + [F]
DECIDED = 0.9


DEFAULT_STRIDE = 4


def settings_from_args(args) -> dict:
    """The experiment's settings (plain values, written to the JSON)."""
    stride = DEFAULT_STRIDE if getattr(args, "stride", None) is None else int(args.stride)
    s = dict(schedule="cogvideox_2b", num_steps=50, num_frames=64, chunk_frames=8, stride=stride, num_prompts=4,
             mean_spread=0.5, rho=0.8, variance=0.5, num_identities=4, frame_shape=[4, 4, 2],
             atom_scales=[float(a) for a in args.atom_scales], guidance_scale=1.0, num_keys=128, key_batch=128, seed=0,
             syncos=dict(t_min=800, iters=20, lr=0.5), csd_only=dict(iters=20, lr=0.5),
             fifo=dict(num_partitions=4, lookahead=True), quick=bool(args.quick))
    if args.quick:
        s.update(num_frames=32, num_keys=32, key_batch=32, atom_scales=s["atom_scales"][:2])
    if args.keys is not None:
        s.update(num_keys=int(args.keys), key_batch=min(s["key_batch"], int(args.keys)))
    return s


def build(s: dict, atom_scale: float):
    """Returns ``(prior, schedule, layout, cond, atoms [K, H, W, C])`` for one atom scale."""
    fs = tuple(s["frame_shape"])
    k_means, k_atoms = jax.random.split(jax.random.key(s["seed"]))
    means = s["mean_spread"] * jax.random.normal(k_means, (s["num_prompts"],) + fs)
    atoms = atom_scale * jax.random.normal(k_atoms, (s["num_identities"],) + fs)
    sch = getattr(schedules, s["schedule"])(s["num_steps"])
    prior = GaussianVideoPrior(means, sch, rho=s["rho"], variance=s["variance"], identities=atoms)
    cond = Conditioning(prompts=jnp.arange(s["num_prompts"]), uncond=jnp.array([prior.null_id]))
    return prior, sch, ChunkLayout(s["num_frames"], s["chunk_frames"], s["stride"]), cond, atoms


def read_identity(x: np.ndarray, means: np.ndarray, atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's identity and distance to it: ``(ids [n, F] int, residual [n, F])``.

    ``ids`` is the ``k`` of the nearest ``m_p + u_k`` over all ``(p, k)``; ``residual`` the RMS per
    pixel of the frame minus that centre — ``√v`` on average for frames from the prior, more for a
    sampler whose frames leave it (a readout of those says little).

    Args:
      x: ``[n, F, H, W, C]`` videos; means: ``[P, H, W, C]``; atoms: ``[K, H, W, C]``.
    """
    centres = (means[:, None] + atoms[None]).reshape(means.shape[0] * atoms.shape[0], -1)  # [(p, k), D]
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    d2 = (flat**2).sum(-1)[..., None] - 2 * flat @ centres.T + (centres**2).sum(-1)
    best = np.argmin(d2, -1)
    residual = np.sqrt(np.maximum(np.take_along_axis(d2, best[..., None], -1)[..., 0], 0.0) / flat.shape[-1])
    return best % atoms.shape[0], residual


def agreement_by_distance(ids: np.ndarray) -> np.ndarray:
    """``[n, F − 1]``: per video, the fraction of frame pairs ``d = 1 … F − 1`` apart reading the same identity."""
    F = ids.shape[1]
    return np.stack([(ids[:, d:] == ids[:, :-d]).mean(1) for d in range(1, F)], 1)


def near_events(num_frames: int, boundaries, radius: float) -> np.ndarray:
    """``[F − 1]`` bool: whether the step from frame ``i`` to ``i + 1`` lies within ``radius`` frames
    of an event boundary (``b`` in ``boundaries`` is the first frame of a new event, so the step
    ``b − 1 → b`` is the boundary itself, at distance 0)."""
    steps = np.arange(num_frames - 1) + 0.5  # the step i → i + 1 sits at i + ½; the boundary b at b − ½
    b = np.asarray(list(boundaries), np.float64) - 0.5
    if b.size == 0:
        return np.zeros(num_frames - 1, bool)
    return np.abs(steps[:, None] - b[None]).min(1) < radius


def summarise(ids: np.ndarray, residual: np.ndarray | None = None, near: np.ndarray | None = None) -> dict:
    """Agreement per distance and per bin, ``kept``, ``switches`` and (given ``residual [n, F]``) the
    mean residual RMS, each with its s.e. over videos. Given ``near [F − 1]`` (:func:`near_events`),
    also ``switches_near_events`` (the switches on those steps) and ``near_event_share`` (the share of
    steps they are: the fraction of switches expected there if switches fell anywhere alike)."""
    n, F = ids.shape
    per = agreement_by_distance(ids)  # [n, F - 1]
    se = lambda v: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None  # noqa: E731
    out = {"agreement": per.mean(0).tolist(), "agreement_se": per.std(0, ddof=1).tolist() if n > 1 else None}
    edges = bin_edges(F)
    for lo, hi in zip(edges, edges[1:]):
        v = per[:, lo - 1 : hi - 1].mean(1)
        out[f"agreement_{lo}"] = {"mean": float(v.mean()), "se": se(v)}
    kept = (ids == ids[:, :1]).all(1).astype(float)
    switches = (ids[:, 1:] != ids[:, :-1]).sum(1).astype(float)
    out["kept"] = {"mean": float(kept.mean()), "se": se(kept)}
    out["switches"] = {"mean": float(switches.mean()), "se": se(switches)}
    if near is not None:
        at = (ids[:, 1:] != ids[:, :-1])[:, near].sum(1).astype(float)
        out["switches_near_events"] = {"mean": float(at.mean()), "se": se(at)}
        out["near_event_share"] = float(np.mean(near))
    if residual is not None:
        r = residual.mean(1)
        out["residual_rms"] = {"mean": float(r.mean()), "se": se(r)}
    return out


def prior_draws(prior: GaussianVideoPrior, s: dict, key, n: int) -> np.ndarray:
    """``[n, F, H, W, C]`` videos drawn exactly from the prior (segment means, one atom, AR(1))."""
    F, fs = s["num_frames"], tuple(s["frame_shape"])
    prompt_of = prompt_of_frame(np.arange(F), Conditioning(prompts=jnp.arange(s["num_prompts"])).segments(F))
    kk, ks = jax.random.split(key)
    k = jax.random.randint(kk, (n,), 0, prior.num_identities)
    L = jnp.linalg.cholesky(prior.temporal_covariance(F))
    short = jnp.einsum("ij,njp->nip", L, jax.random.normal(ks, (n, F, int(np.prod(fs))))).reshape((n, F) + fs)
    return np.asarray(prior.prior_mean(prompt_of)[None] + prior.identities[...][k][:, None] + short, np.float64)


def decided_time(prior: GaussianVideoPrior, sch, s: dict, key, n: int) -> dict:
    """Where a single chunk decides its identity along exact DDIM (prompt 0, guidance 1).

    Returns ``{"t": median model time, "step": median step, "max_weight": [steps] mean of max_k p(k | x_t)}``:
    per key, the first step from which ``max_k p(k | x_t) >= DECIDED`` to the end.
    """
    f, fs = s["chunk_frames"], tuple(s["frame_shape"])
    x = jax.random.normal(key, (n, f) + fs)
    cond = jnp.zeros((n,), jnp.int32)
    ts = np.asarray(sch.timesteps)
    alphas = np.asarray(sch.alphas, np.float64)
    sigmas = np.asarray(sch.sigmas, np.float64)
    weights = []
    for i, t in enumerate(ts):  # a host loop over 50 steps of a few tiny chunks: clarity over speed
        tt = jnp.full((n,), int(t))
        weights.append(np.asarray(prior.identity_posterior(x, tt, cond)).max(-1))
        x0, eps = prior.posterior(x, tt, cond)
        a_next = alphas[i + 1] if i + 1 < len(ts) else 1.0
        s_next = sigmas[i + 1] if i + 1 < len(ts) else 0.0
        x = a_next * x0 + s_next * eps  # deterministic DDIM (η = 0)
    w = np.stack(weights, 1)  # [n, steps]
    ok = w >= DECIDED
    tail = np.flip(np.cumprod(np.flip(ok, 1), 1), 1).astype(bool)  # decided from this step to the end
    step = np.where(tail.any(1), tail.argmax(1), len(ts))
    med = int(np.median(step))
    return {"step": med, "t": int(ts[med]) if med < len(ts) else None, "max_weight": w.mean(0).tolist(),
            "timesteps": ts.tolist()}


def run(s: dict, samplers, pbar) -> dict:
    """``{atom_scale: {"prior": summary, "decided": …, sampler: summary, …}}``."""
    out = {}
    root = jax.random.key(1000 + s["seed"])
    F = s["num_frames"]
    prompt_of = np.asarray(prompt_of_frame(np.arange(F), Conditioning(prompts=jnp.arange(s["num_prompts"])).segments(F)))
    near = near_events(F, np.flatnonzero(np.diff(prompt_of)) + 1, s["chunk_frames"] / 2)
    for a_i, scale in enumerate(s["atom_scales"]):
        prior, sch, layout, cond, atoms = build(s, scale)
        means, atoms = np.asarray(prior.means[...][:-1], np.float64), np.asarray(atoms, np.float64)
        key = jax.random.fold_in(root, a_i)
        row = {"prior": summarise(*read_identity(prior_draws(prior, s, jax.random.fold_in(key, 0), s["num_keys"]), means, atoms),
                                  near),
               "decided": decided_time(prior, sch, s, jax.random.fold_in(key, 1), min(s["num_keys"], 256))}
        for j, name in enumerate(samplers):
            pbar.set_postfix_str(f"scale {scale:g}: {name}")
            keys = jax.random.split(jax.random.fold_in(key, 2 + j), s["num_keys"])
            xs, t0 = [], time.perf_counter()
            for b in range(0, s["num_keys"], s["key_batch"]):
                r = sample_fn(name)(prior, sch, layout, cond, key=keys[b : b + s["key_batch"]],
                                    frame_shape=tuple(s["frame_shape"]), **sampler_options(name, s))
                xs.append(np.asarray(jax.block_until_ready(r.latents), np.float64))
            row[name] = summarise(*read_identity(np.concatenate(xs), means, atoms), near)
            row[name]["seconds"] = round(time.perf_counter() - t0, 1)
            pbar.update(1)
        out[f"{scale:g}"] = row
    return out


def _pm(v: dict, digits: int = 3) -> str:
    return f"{v['mean']:.{digits}f}" + (f" ± {v['se']:.{digits}f}" if v.get("se") is not None else "")


def markdown(results: dict, s: dict, samplers) -> str:
    """One table per atom scale: agreement by distance bin, videos kept whole, switches."""
    F = s["num_frames"]
    edges = bin_edges(F)
    head = [f"[{lo}, {hi})" for lo, hi in zip(edges, edges[1:])]
    lines = [f"# A discrete unprompted identity over long videos (exact denoiser, K = {s['num_identities']})", "",
             f"F = {F} frames, {s['num_prompts']} events, chunks of {s['chunk_frames']} at stride {s['stride']}, "
             f"{s['num_steps']} steps, guidance {s['guidance_scale']:g}, {s['num_keys']} videos per row; "
             f"mean ± s.e. over videos. Chance agreement 1/K = {1 / s['num_identities']:.3f}. "
             "`python experiments/discrete_identity.py" + (" --quick" if s["quick"] else "")
             + (f" --stride {s['stride']}" if s["stride"] != DEFAULT_STRIDE else "")
             + ("" if list(samplers) == list(SAMPLERS) else " --samplers " + " ".join(samplers)) + "`", ""]
    for scale, row in results.items():
        d = row["decided"]
        where = f"t = {d['t']} (step {d['step']} of {s['num_steps']})" if d["t"] is not None else "never, within the steps"
        lines += [f"## atom scale {scale}: one chunk decides its identity (max p(k | x_t) ≥ {DECIDED}) at {where}; "
                  f"SynCoS couples above t = {s['syncos']['t_min']}", "",
                  "| sampler | agreement " + " | ".join(head) + " | videos kept whole | switches per video "
                  "| of them near an event boundary | residual RMS |",
                  "|---|" + "---|" * (len(head) + 4)]
        for name in ("prior", *samplers):
            r = row[name]
            near = _pm(r["switches_near_events"], 2) if "switches_near_events" in r else "–"
            lines.append(f"| {LABELS[name]} | " + " | ".join(_pm(r[f"agreement_{lo}"]) for lo in edges[:-1])
                         + f" | {_pm(r['kept'])} | {_pm(r['switches'], 2)} | {near} | {_pm(r['residual_rms'], 2)} |")
        share = row["prior"].get("near_event_share")
        if share is not None:
            lines += ["", f"*Near an event boundary*: the frame-to-frame steps within {s['chunk_frames'] / 2:g} frames of "
                      f"the first frame of a new event, {share:.0%} of all steps; switches falling anywhere alike "
                      f"would put that share of them there."]
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, s: dict, samplers, path: str) -> None:
    """Agreement against frame distance, one panel per atom scale, one line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = list(results)
    fig, axes = plt.subplots(1, len(scales), figsize=(4.2 * len(scales) + 2.6, 3.6), sharey=True, squeeze=False)
    d = np.arange(1, s["num_frames"])
    for ax, scale in zip(axes[0], scales):
        for name in ("prior", *samplers):
            r = results[scale][name]
            style = dict(color="black", ls="--", lw=1, zorder=3) if name == "prior" else dict(lw=1.5)
            ax.plot(d, r["agreement"], label=LABELS[name], **style)
        ax.axhline(1 / s["num_identities"], color="grey", ls=":", lw=1, label="chance (1/K)")
        ax.axvline(s["chunk_frames"], color="grey", lw=0.5)
        dec = results[scale]["decided"]
        ax.set_title(f"atom scale {scale}: decided at t = {dec['t']}", fontsize=9)
        ax.set_xlabel("frames apart")
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("pairs reading the same identity")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right", frameon=False)
    fig.suptitle(f"Discrete unprompted identity, exact denoiser (K = {s['num_identities']}, F = {s['num_frames']}, "
                 f"{s['num_prompts']} events; vertical line: one chunk)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.6 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced run: F = 32, 32 keys, the first two atom scales")
    ap.add_argument("--out", default="experiments/results", help="output folder")
    ap.add_argument("--keys", type=int, default=None, help="videos per sampler and atom scale (default 128)")
    ap.add_argument("--atom-scales", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                    help="identity atom sizes (per-pixel standard deviation); larger = decided earlier in sampling")
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    ap.add_argument("--stride", type=int, default=None,
                    help=f"frames between consecutive chunks' starts (default {DEFAULT_STRIDE}: half a chunk of 8)")
    args = ap.parse_args(argv)
    if args.stride is not None and not 1 <= args.stride <= 8:
        ap.error(f"--stride must be in [1, 8] (chunks of 8 frames), got {args.stride}")
    if args.keys is not None and args.keys < 2:
        ap.error(f"--keys must be at least 2 (standard errors need two videos), got {args.keys}")
    if any(not a > 0 for a in args.atom_scales):
        ap.error(f"--atom-scales must be positive, got {args.atom_scales}")
    s = settings_from_args(args)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    with tqdm(total=len(s["atom_scales"]) * len(args.samplers), desc="discrete_identity") as pbar:
        results = run(s, args.samplers, pbar)
    s["wall_seconds"] = round(time.perf_counter() - t0, 1)
    s["devices"] = f"{jax.default_backend()} x{jax.device_count()}"
    stem = os.path.join(args.out, "discrete_identity" + ("_quick" if args.quick else "")
                        + (f"_stride{s['stride']}" if s["stride"] != DEFAULT_STRIDE else ""))
    payload = dict(settings=s, samplers=list(args.samplers), results=results)
    with open(stem + ".json", "w") as fh:
        json.dump(payload, fh, indent=1)
    with open(stem + ".md", "w") as fh:
        fh.write(markdown(results, s, args.samplers))
    plot(results, s, args.samplers, stem + ".png")
    print(markdown(results, s, args.samplers))
    print(f"wrote {stem}.json/.md/.png in {s['wall_seconds']:.0f} s")
    return payload


if __name__ == "__main__":
    main()
