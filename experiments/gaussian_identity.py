"""How much long-range coherence does each sampler carry across chunks? An exact answer on a Gaussian prior.

    python experiments/gaussian_identity.py [--quick] [--out experiments/results] [--keys N] [--samplers ...]

``--quick`` (F = 32, 64 keys, about a minute on 2 cores) writes ``gaussian_identity_quick.*`` so it
never overwrites the full run (F = 48, 1024 keys, about 3 minutes).

The prior is :class:`~syncos_jax.backbones.gaussian.GaussianVideoPrior` with a shared identity:
every frame of a video carries one latent vector ``u ~ N(0, λ·I)`` on top of the prompt's mean and
a short-range AR(1) part, so the prior covariance between frames ``d`` apart is ``λ + v·ρ^d`` — it
never falls below ``λ``. A sampler that builds the video from chunks of ``f`` frames keeps the
identity only if it passes information from chunk to chunk; at ``d ≫ f`` the sampled covariance
says how much of ``λ`` survived.

For every sampler (all with ``guidance_scale = 1``, so the target law is the prior itself):

* **sampled** ``cov[d]``: subtract the empirical per-frame, per-pixel mean over keys; the mean over
  all pairs of frames at distance ``d = |i − j|`` and over all pixels of ``r_i·r_j`` (``n/(n−1)``
  corrected). Pixels are independent copies of the temporal process, so they pool as samples.
  ``se[d]``: each key (one video) gives one such pair average; keys are independent, so
  ``se = std over keys / √n`` (the mean's estimation error is ``O(1/n)``, negligible).
* **closed form** where the sampler is affine in its noise (``η = 0``): ``mean = f(0)``,
  ``Cov = J·Jᵀ`` with ``J = jax.jacfwd(f)`` with respect to the explicit noise, on one pixel
  (``frame_shape (1, 1, 1)``; every pixel obeys the same linear map). DDIM over the whole video,
  Gen-L-Video and FIFO with ``η = 0``. FreeNoise is DDIM over the whole video started from
  rescheduled noise ``P·ε`` (``P`` copies frames, drawn from the key), so its law is
  ``M·E[P·Pᵀ]·Mᵀ`` with ``M`` DDIM's Jacobian; ``E[P·Pᵀ]`` is averaged over permutation keys.
  ``freenoise_chunked`` declares the backbone chunk-only (``frames_per_chunk = f``), so FreeNoise
  fuses the layout's windows (Gen-L-Video on rescheduled noise; ``M`` is Gen-L-Video's map) — the
  reading that matters for a real chunk-only backbone.
  SynCoS and CSD-only are not affine (data-dependent RBF kernel, AdamW): no closed form.
* **mean check** (affine samplers): the empirical mean against ``f(0)`` on the full frame shape,
  ``χ² = n·δᵀC⁺δ`` per pixel, summed over the independent pixels.
* **prior**: ``λ + k(d)``. Finite-step DDIM under-disperses (ALGORITHM.md §1), so a sampler is
  judged against its own closed form first; the gap between the closed form and the prior is the
  sampler's bias.

Writes ``gaussian_identity.json`` (settings and per-sampler ``cov``, ``se``, ``closed_form``,
``prior``), ``gaussian_identity.md`` (a table at a few distances) and ``gaussian_identity.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from tqdm import tqdm

from syncos_jax import schedules
from syncos_jax.backbones.gaussian import GaussianVideoPrior
from syncos_jax.chunking import ChunkLayout
from syncos_jax.backbones.protocol import split_denoiser
from syncos_jax.samplers import csd_only, ddim, fifo, freenoise, gen_l_video, sample, syncos
from syncos_jax.prompts import Conditioning

SAMPLER_ORDER = ("ddim", "gen_l_video", "syncos", "csd_only", "fifo", "fifo_eta0", "freenoise", "freenoise_chunked",
                 "renoise_only", "syncos_no_repulsion", "syncos_clean_kernel", "syncos_sgd", "syncos_tmin_400",
                 "syncos_no_tmin", "syncos_tmin_400_no_repulsion",
                 "syncos_tmin_400_sgd", "renoise_only_tmin_400")
# The mechanism study's SynCoS variants (extensions beyond the paper; see experiments/mechanism.py),
# on top of SynCoS's settings.
SYNCOS_VARIANTS = {"renoise_only": dict(iters=1, lr=0.0), "syncos_no_repulsion": dict(repulsion=False),
                   "syncos_clean_kernel": dict(kernel_on="clean"), "syncos_sgd": dict(optimizer="sgd"),
                   "syncos_tmin_400": dict(t_min=400), "syncos_no_tmin": dict(t_min=None),
                   "syncos_tmin_400_no_repulsion": dict(t_min=400, repulsion=False),
                   "syncos_tmin_400_sgd": dict(t_min=400, optimizer="sgd"),
                   "renoise_only_tmin_400": dict(t_min=400, iters=1, lr=0.0)}
DISPLAY = {"fifo": "fifo (η = 1)", "fifo_eta0": "fifo (η = 0)", "freenoise": "freenoise (whole video)",
           "freenoise_chunked": "freenoise (chunk-only backbone)", "renoise_only": "SynCoS, re-noise only (lr 0)",
           "syncos_no_repulsion": "SynCoS, no repulsion", "syncos_clean_kernel": "SynCoS, kernel on clean chunks",
           "syncos_sgd": "SynCoS, SGD", "syncos_tmin_400": "SynCoS, t_min = 400",
           "syncos_no_tmin": "SynCoS, stage 2 at every step",
           "syncos_tmin_400_no_repulsion": "SynCoS, t_min = 400, no repulsion",
           "syncos_tmin_400_sgd": "SynCoS, t_min = 400, SGD", "renoise_only_tmin_400": "re-noise only, t_min = 400"}
TABLE_DISTANCES = (0, 1, 4, 8, 16, 32)
LONG_RANGE = 16  # the "long-range" summary averages cov[d] over d >= this


def settings_from_args(args) -> dict:
    """Returns the experiment's settings (plain Python values, written to the JSON)."""
    s = dict(
        schedule="cogvideox_2b", num_steps=50, identity_variance=0.5, kernel="exponential", rho=0.8,
        variance=0.5, num_prompts=2, mean_spread=0.5, num_frames=48, chunk_frames=8, stride=4,
        frame_shape=[2, 2, 2], guidance_scale=1.0, num_keys=1024, key_batch=256, seed=0,
        syncos=dict(t_min=800, iters=20, lr=0.5), csd_only=dict(iters=20, lr=0.5),
        fifo=dict(num_partitions=4, lookahead=True), freenoise=dict(window=8, noise_stride=4),
        perm_keys=4096,
    )
    if args.quick:
        s.update(num_frames=32, num_keys=64, key_batch=64, perm_keys=1024)
    s["key_seed"] = int(args.key_seed)  # the sampling keys only; the prompt means stay fixed by seed
    if args.keys is not None:
        s["num_keys"] = int(args.keys)
    s["quick"] = bool(args.quick)
    return s


def build(s: dict, frame_shape=None):
    """Returns ``(prior, schedule, layout, cond)``; ``frame_shape`` overrides the pixels (the Jacobian uses one)."""
    sch = getattr(schedules, s["schedule"])(s["num_steps"])
    fs = tuple(s["frame_shape"])
    means = s["mean_spread"] * jax.random.normal(jax.random.key(s["seed"]), (s["num_prompts"],) + fs)
    if frame_shape is not None:  # the first pixel of the same means: its law is every pixel's covariance
        means = means[:, : frame_shape[0], : frame_shape[1], : frame_shape[2]]
    prior = GaussianVideoPrior(means, sch, temporal_kernel=s["kernel"], rho=s["rho"], variance=s["variance"],
                               identity_variance=s["identity_variance"])
    cond = Conditioning(prompts=jnp.arange(s["num_prompts"]), uncond=jnp.array([prior.null_id]))
    layout = ChunkLayout(s["num_frames"], s["chunk_frames"], s["stride"])
    return prior, sch, layout, cond


def sampler_options(name: str, s: dict) -> dict:
    """Returns the keyword options of sampler ``name`` (``fifo_eta0`` is FIFO with ``η = 0``)."""
    g = dict(guidance_scale=s["guidance_scale"])
    if name == "syncos":
        return {**g, **s["syncos"]}
    if name in SYNCOS_VARIANTS:
        return {**g, **s["syncos"], **SYNCOS_VARIANTS[name]}
    if name == "csd_only":
        return {**g, **s["csd_only"]}
    if name == "fifo":
        return {**g, **s["fifo"]}  # FIFO's own η = 1
    if name == "fifo_eta0":
        return {**g, **s["fifo"], "eta": 0.0}
    if name in ("freenoise", "freenoise_chunked"):
        return {**g, **s["freenoise"]}
    return g


def sampling(build):
    """Returns ``(denoiser, schedule, layout, cond, *, key, **options) -> SampleResult`` through the
    sampler builder ``build`` (start-noise options go to ``init``, the rest to ``build``)."""

    def fn(den, sch, layout, cond, *, key, **options):
        init = {k: options.pop(k) for k in ("initial_noise", "base_video_noise", "queue_noise") if k in options}
        return sample(build(den, sch, layout, cond, **options), split_denoiser(den)[1], key, **init)

    return fn


def sample_fn(name: str):
    """Returns the sampling function behind ``name`` (see :func:`sampling`)."""
    return sampling({"ddim": ddim.build, "gen_l_video": gen_l_video.build, "syncos": syncos.build,
                     "csd_only": csd_only.build, "fifo": fifo.build, "fifo_eta0": fifo.build,
                     "freenoise": freenoise.build, "freenoise_chunked": freenoise.build,
                     **{v: syncos.build for v in SYNCOS_VARIANTS}}[name])


def draw(name: str, s: dict, pbar) -> tuple[np.ndarray, float]:
    """Returns ``(latents [n, F, H, W, C] float64, seconds)`` for ``num_keys`` keys, in key batches."""
    prior, sch, layout, cond = build(s)
    opts = sampler_options(name, s)
    root = jax.random.fold_in(jax.random.key(s["seed"]), 1000 + s["key_seed"])
    keys = jax.random.split(jax.random.fold_in(root, SAMPLER_ORDER.index(name) + 1), s["num_keys"])
    out, t0 = [], time.perf_counter()
    for b in range(0, s["num_keys"], s["key_batch"]):
        r = sample_fn(name)(denoiser_for(name, prior, layout), sch, layout, cond, key=keys[b : b + s["key_batch"]],
                            frame_shape=tuple(s["frame_shape"]), **opts)
        out.append(np.asarray(jax.block_until_ready(r.latents), np.float64))
        pbar.update(1)
    return np.concatenate(out), time.perf_counter() - t0


def distance_covariance(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(cov[d], se[d], mean)`` of samples ``x: [n, F, ...]`` (see the module docstring).

    ``cov[d]`` averages the empirical covariance of frames ``i`` and ``i + d`` over ``i`` and pixels;
    ``se[d]`` is the standard error across the ``n`` independent keys.
    """
    n, F = x.shape[:2]
    mean = x.mean(0)
    r = (x - mean).reshape(n, F, -1)  # [n, F, P]
    per_key = np.stack([np.einsum("kip,kip->k", r[:, : F - d], r[:, d:]) / ((F - d) * r.shape[-1]) for d in range(F)], 1)
    per_key *= n / (n - 1)
    return per_key.mean(0), per_key.std(0, ddof=1) / np.sqrt(n), mean


def distance_average(cov: np.ndarray) -> np.ndarray:
    """Returns ``c[d]``, the mean of ``cov[i, i + d]`` over ``i``, for an ``[F, F]`` covariance."""
    F = cov.shape[0]
    return np.array([np.diagonal(cov, d).mean() for d in range(F)])


def affine_law(run, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(f(0), J·Jᵀ)`` (float64) of a map ``run: [dim] → [F]`` affine in its noise."""
    zero = jnp.zeros((dim,), jnp.float32)
    mean = np.asarray(run(zero), np.float64)
    J = np.asarray(jax.jacfwd(run)(zero), np.float64)
    return mean, J @ J.T


def closed_form(name: str, s: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Returns the exact ``(mean [F] of pixel 0, covariance [F, F])`` of an affine sampler, else ``None``."""
    if name in ("syncos", "csd_only", "fifo") or name in SYNCOS_VARIANTS:
        return None
    one = (1, 1, 1)
    prior, sch, layout, cond = build(s, frame_shape=one)
    F, key = layout.num_frames, jax.random.key(0)
    opts = sampler_options(name, s)
    if name in ("ddim", "gen_l_video"):
        fn = sample_fn(name)
        return affine_law(lambda z: fn(prior, sch, layout, cond, key=key, initial_noise=z.reshape((F,) + one),
                                       **opts).latents.reshape(-1), F)
    if name == "fifo_eta0":
        f = layout.chunk_frames
        cfg = fifo.make_config(**opts)
        Q = cfg.num_partitions * f + (f // 2 if cfg.lookahead else 0)
        dims = (f, Q, fifo.num_iterations(layout, cfg))

        def run(z):
            base, queue, push = jnp.split(z, np.cumsum(dims)[:-1])
            return sample_fn("fifo")(prior, sch, layout, cond, key=key, base_video_noise=base.reshape((f,) + one),
                                     queue_noise=queue.reshape((Q,) + one), push_noise=push.reshape((dims[2],) + one),
                                     **opts).latents.reshape(-1)

        return affine_law(run, sum(dims))
    if name in ("freenoise", "freenoise_chunked"):
        fo = s["freenoise"]
        # DDIM's (or, on chunks, Gen-L-Video's) own affine map, then the rescheduling P in front of it.
        inner = "ddim" if name == "freenoise" else "gen_l_video"
        fn = sample_fn(inner)
        run = lambda z: fn(prior, sch, layout, cond, key=key, initial_noise=z.reshape((F,) + one),
                           guidance_scale=s["guidance_scale"]).latents.reshape(-1)
        zero = jnp.zeros((F,), jnp.float32)
        mean, M = np.asarray(run(zero), np.float64), np.asarray(jax.jacfwd(run)(zero), np.float64)
        EPP = rescheduling_second_moment(F, fo["window"], fo["noise_stride"], s["perm_keys"], s["seed"] + 1)
        eye = jnp.eye(F, dtype=jnp.float32)
        # One key checked end to end: FreeNoise's own Jacobian is M·P_key.
        k = jax.random.key(123)
        den = denoiser_for(name, prior, layout)
        fk = lambda z: sample_fn("freenoise")(den, sch, layout, cond, key=k, initial_noise=z.reshape((F,) + one),
                                              **opts).latents.reshape(-1)
        Jk = np.asarray(jax.jacfwd(fk)(zero), np.float64)
        Pk = np.asarray(freenoise.reschedule_noise(jax.random.split(k, 3)[1], eye, fo["window"], fo["noise_stride"]))
        err = np.abs(Jk - M @ Pk).max()
        if err > 1e-4:
            raise AssertionError(f"{name}'s Jacobian differs from {inner}'s map times its rescheduling by {err:.2e}.")
        return mean, M @ EPP @ M.T
    raise KeyError(name)


def rescheduling_second_moment(F: int, window: int, stride: int, num_keys: int, seed: int) -> np.ndarray:
    """Returns ``E[P·Pᵀ]`` ``[F, F]`` of FreeNoise's rescheduling ``ε ↦ P·ε`` (``P`` copies frames).

    ``(P·Pᵀ)_ij = 1`` when frames ``i`` and ``j`` end up with the same source noise. When ``stride``
    divides ``window`` and ``F``, block ``b`` (``stride`` frames) is a uniformly shuffled copy of block
    ``b − window/stride``, so two frames in different blocks of the same class ``b mod (window/stride)``
    share a source with probability exactly ``1/stride``, other pairs never: that exact value is
    returned, after checking it against a Monte Carlo average over ``num_keys`` permutation keys of
    the sampler's own :func:`~syncos_jax.samplers.freenoise.reschedule_noise`. Otherwise the Monte
    Carlo average itself is returned.
    """
    eye = jnp.eye(F, dtype=jnp.float32)
    pkeys = jax.random.split(jax.random.key(seed), num_keys)
    P = jax.vmap(lambda k: freenoise.reschedule_noise(k, eye, window, stride))(pkeys)
    mc = np.asarray(jnp.einsum("kij,klj->il", P, P) / num_keys, np.float64)
    if window % stride or F % stride or F <= window:
        return mc
    block = np.arange(F) // stride
    m = window // stride
    same_class = (block[:, None] % m) == (block[None, :] % m)
    exact = np.where(same_class & (block[:, None] != block[None, :]), 1.0 / stride, 0.0) + np.eye(F)
    tol = 6 * np.sqrt(0.25 / num_keys) + 1e-6  # 6 Monte Carlo standard deviations of a Bernoulli mean
    if np.abs(mc - exact).max() > tol:
        raise AssertionError(f"FreeNoise's rescheduling differs from its exact second moment by {np.abs(mc - exact).max():.3f}.")
    return exact


def exact_mean(name: str, s: dict) -> np.ndarray:
    """Returns ``f(0)`` ``[F, H, W, C]`` on the full frame shape: the exact mean of an affine sampler."""
    prior, sch, layout, cond = build(s)
    F, fs, key = layout.num_frames, tuple(s["frame_shape"]), jax.random.key(0)
    opts = sampler_options(name, s)
    if name == "fifo_eta0":
        f = layout.chunk_frames
        cfg = fifo.make_config(**opts)
        Q = cfg.num_partitions * f + (f // 2 if cfg.lookahead else 0)
        z = lambda n: jnp.zeros((n,) + fs, jnp.float32)
        return np.asarray(sample_fn("fifo")(prior, sch, layout, cond, key=key, base_video_noise=z(f), queue_noise=z(Q),
                                            push_noise=z(fifo.num_iterations(layout, cfg)), **opts).latents, np.float64)
    return np.asarray(sample_fn(name)(denoiser_for(name, prior, layout), sch, layout, cond, key=key,
                                      initial_noise=jnp.zeros((F,) + fs, jnp.float32), **opts).latents, np.float64)


def denoiser_for(name: str, prior, layout):
    """Returns the prior, or for ``freenoise_chunked`` its split form declared to take only ``f``-frame chunks.

    FreeNoise runs DDIM over the whole video when the backbone can see it (the Gaussian prior can);
    a chunk-only backbone makes it fuse the layout's windows instead (Gen-L-Video on rescheduled noise).
    """
    if name != "freenoise_chunked":
        return prior
    defn, params = prior.split()
    return dataclasses.replace(defn, frames_per_chunk=layout.chunk_frames), params


def prior_curve(s: dict) -> np.ndarray:
    """Returns ``λ + k(d)`` for ``d = 0 … F − 1``."""
    d = np.arange(s["num_frames"])
    return s["identity_variance"] + s["variance"] * s["rho"] ** d


def markdown_table(results: dict, s: dict) -> str:
    """Returns the Markdown table: sampled ± se / closed form / prior at a few distances."""
    F = s["num_frames"]
    ds = [d for d in TABLE_DISTANCES if d < F - 1] + [F - 1]
    head = "| sampler | | " + " | ".join(f"d={d}" for d in ds) + f" | mean d≥{LONG_RANGE} |"
    lines = [head, "|---|---|" + "---|" * (len(ds) + 1)]
    for name in SAMPLER_ORDER:
        if name not in results:
            continue
        r = results[name]
        cov, se, cf = np.array(r["cov"]), np.array(r["se"]), r["closed_form"]
        lr = r["long_range"]
        lines.append(f"| {name} | sampled | " + " | ".join(f"{cov[d]:.3f} ± {se[d]:.3f}" for d in ds)
                     + f" | {lr['cov']:.3f} ± {lr['se']:.3f} |")
        if cf is not None:
            cf = np.array(cf)
            lines.append("| | closed form | " + " | ".join(f"{cf[d]:.3f}" for d in ds) + f" | {lr['closed_form']:.3f} |")
    pr = prior_curve(s)
    lines.append("| prior | λ + k(d) | " + " | ".join(f"{pr[d]:.3f}" for d in ds) + f" | {pr[LONG_RANGE:].mean():.3f} |")
    return "\n".join(lines)


def plot(results: dict, s: dict, path: str, ylim=(-0.15, 1.3), elim=(-0.75, 0.5)) -> None:
    """Writes the figure: covariance against d per sampler (prior thick), and the error against the prior.

    Both panels are clipped to ``ylim`` / ``elim`` so the chunked samplers stay readable; a curve that
    leaves the range says so in its legend entry (with its range of values).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    F = s["num_frames"]
    d = np.arange(F)
    pr = prior_curve(s)
    tab = plt.get_cmap("tab10").colors
    extra = plt.get_cmap("Dark2").colors
    colors = dict(zip(SAMPLER_ORDER, [tab[i] for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)] + [extra[i] for i in (0, 2, 3, 5, 6, 7, 1)]
                                   + list(plt.get_cmap("tab20b").colors[::5])))
    fig, axes = plt.subplots(1, 2, figsize=(14, 8.0))
    for ax, diff, lim in zip(axes, (False, True), (ylim, elim)):
        ref = pr if diff else 0 * pr
        ax.plot(d, pr - ref, color="black", lw=5, alpha=0.3, label="prior λ + k(d)")
        for name in SAMPLER_ORDER:
            if name not in results:
                continue
            r, c = results[name], colors[name]
            cov, se = np.array(r["cov"]), np.array(r["se"])
            y = cov - ref
            label = DISPLAY.get(name, name)
            if y.min() < lim[0] or y.max() > lim[1]:
                label += f" — off scale: {'error' if diff else 'cov'} {y.min():.2f} … {y.max():.2f}"
            ax.plot(d, y, color=c, lw=1.6, ls="--" if name in SYNCOS_VARIANTS else "-", label=label)
            ax.fill_between(d, y - 2 * se, y + 2 * se, color=c, alpha=0.18, lw=0)
            if r["closed_form"] is not None:
                ax.plot(d, np.array(r["closed_form"]) - ref, color=c, lw=1.1, ls="--")
        for k in range(1, F // s["chunk_frames"] + 1):
            ax.axvline(k * s["chunk_frames"], color="grey", lw=0.5, ls=":")
        ax.axhline(0.0 if diff else s["identity_variance"], color="grey", lw=0.8)
        ax.set_xlabel("distance d between frames (dotted: multiples of the chunk length f)")
        ax.set_xlim(0, F - 1)
        ax.set_ylim(*lim)
    axes[0].set_ylabel("cov(d): mean over pairs at distance d and pixels")
    axes[1].set_ylabel("cov(d) − (λ + k(d))")
    axes[0].set_title(f"covariance at distance d (λ = {s['identity_variance']}, f = {s['chunk_frames']}, "
                      f"stride {s['stride']}, F = {F})\nsolid: sampled, band ± 2 se; dashed: the sampler's closed form",
                      fontsize=10)
    axes[1].set_title("error against the prior (dashed: the closed form's own error)", fontsize=10)
    # One legend below both panels (the first panel's labels say where a curve runs off its scale).
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.05 + 0.016 * -(-len(labels) // 3), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def consistency_table(results: dict) -> str:
    """Returns the Markdown table of sampled vs closed form: z-scores of cov[d], χ² of the mean."""
    lines = [r"| sampler | max \|z\| of cov[d] (at d) | rms z over d | z of the d≥16 mean | mean: χ² / dof (p) |",
             "|---|---|---|---|---|"]
    for name in SAMPLER_ORDER:
        r = results.get(name)
        if r is None or r["closed_form"] is None:
            continue
        z = r["z_vs_closed_form"]
        lines.append(f"| {name} | {z['max_abs']:.2f} (d={z['argmax_d']}) | {z['rms']:.2f} | {z['long_range']:+.2f} | "
                     f"{r['mean_chi2']['chi2']:.0f} / {r['mean_chi2']['dof']} (p = {r['mean_chi2']['p_value']:.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced run: F = 32, 64 keys")
    ap.add_argument("--out", default="experiments/results", help="output folder")
    ap.add_argument("--keys", type=int, default=None, help="override the number of keys")
    ap.add_argument("--key-seed", type=int, default=0, help="seed of the sampling keys (the prior is unchanged)")
    ap.add_argument("--samplers", nargs="*", default=list(SAMPLER_ORDER), choices=SAMPLER_ORDER)
    ap.add_argument("--merge", action="store_true",
                    help="keep the other samplers' results of an earlier run with the same settings (add or redo some)")
    args = ap.parse_args(argv)
    s = settings_from_args(args)
    os.makedirs(args.out, exist_ok=True)
    batches = -(-s["num_keys"] // s["key_batch"])
    results, t_all = {}, time.perf_counter()
    pr = prior_curve(s)
    with tqdm(total=len(args.samplers) * (batches + 1), desc="gaussian_identity") as pbar:
        for name in args.samplers:
            pbar.set_postfix_str(name)
            x, secs = draw(name, s, pbar)
            cov, se, mean = distance_covariance(x)
            t0 = time.perf_counter()
            law = closed_form(name, s)
            cf_secs = time.perf_counter() - t0
            pbar.update(1)
            n = x.shape[0]
            per_key_lr = None
            r = dict(cov=cov.tolist(), se=se.tolist(), prior=pr.tolist(), closed_form=None,
                     options=sampler_options(name, s), sample_seconds=round(secs, 1),
                     closed_form_seconds=round(cf_secs, 1) if law is not None else None)
            # Long-range summary: mean over d >= LONG_RANGE; its se from the per-key averages.
            xs = x - mean
            rr = xs.reshape(n, s["num_frames"], -1)
            F = s["num_frames"]
            per_key_lr = np.mean([np.einsum("kip,kip->k", rr[:, : F - d], rr[:, d:]) / ((F - d) * rr.shape[-1])
                                  for d in range(LONG_RANGE, F)], 0) * n / (n - 1)
            r["long_range"] = dict(cov=float(per_key_lr.mean()), se=float(per_key_lr.std(ddof=1) / np.sqrt(n)),
                                   prior=float(pr[LONG_RANGE:].mean()), closed_form=None)
            if law is not None:
                _, C = law
                cf = distance_average(C)
                r["closed_form"] = cf.tolist()
                r["long_range"]["closed_form"] = float(cf[LONG_RANGE:].mean())
                z = (cov - cf) / se
                r["z_vs_closed_form"] = dict(max_abs=float(np.abs(z).max()), argmax_d=int(np.abs(z).argmax()),
                                             rms=float(np.sqrt(np.mean(z**2))),
                                             long_range=float((r["long_range"]["cov"] - r["long_range"]["closed_form"])
                                                              / r["long_range"]["se"]))
                # The empirical mean against f(0): per pixel n·δᵀC⁺δ ~ χ²(rank C); pixels are independent.
                # C is singular for FreeNoise (a shuffled copy keeps its block's noise sum), so a pseudo-inverse.
                delta = (mean - exact_mean(name, s)).reshape(F, -1)
                w, U = np.linalg.eigh(C)
                keep = w > 1e-6 * w.max()
                proj = U[:, keep].T @ delta
                chi2 = float(n * np.sum(proj**2 / w[keep, None]))
                dof = int(keep.sum()) * delta.shape[1]
                r["mean_chi2"] = dict(chi2=chi2, dof=dof, rank=int(keep.sum()), p_value=float(scipy.stats.chi2.sf(chi2, dof)))
            results[name] = r
            tqdm.write(f"{name}: sampled {secs:.1f}s" + (f", closed form {cf_secs:.1f}s" if law is not None else "")
                       + f"; cov[0]={cov[0]:.3f} long-range={r['long_range']['cov']:.3f}"
                       + (f" (closed form {r['long_range']['closed_form']:.3f}, max|z|={r['z_vs_closed_form']['max_abs']:.1f})"
                          if law is not None else ""))
    s["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    s["devices"] = f"{jax.default_backend()} x{jax.device_count()}"
    stem = os.path.join(args.out, "gaussian_identity" + ("_quick" if args.quick else ""))
    if args.merge and os.path.exists(stem + ".json"):
        with open(stem + ".json") as fh:
            old = json.load(fh)
        same = lambda d: {k: v for k, v in d.items() if k not in ("wall_seconds", "devices")}  # noqa: E731
        if same(old["settings"]) != same(s):
            raise SystemExit(f"--merge: {stem}.json was made with other settings; rerun without --merge")
        results = {n: results.get(n, old["samplers"].get(n)) for n in SAMPLER_ORDER if n in results or n in old["samplers"]}
        s["wall_seconds"] = round(s["wall_seconds"] + old["settings"]["wall_seconds"], 1)
    table = markdown_table(results, s)
    consistency = consistency_table(results)
    with open(stem + ".json", "w") as fh:
        json.dump(dict(settings=s, samplers=results), fh, indent=1)
    N = ChunkLayout(s["num_frames"], s["chunk_frames"], s["stride"]).num_chunks
    notes = (f"# Covariance between frames at distance d, per sampler\n\n"
             f"Gaussian prior with a shared identity (λ = {s['identity_variance']}) plus AR(1) "
             f"(ρ = {s['rho']}, v = {s['variance']}): prior covariance λ + v·ρ^d, never below λ. "
             f"F = {s['num_frames']}, chunks f = {s['chunk_frames']}, stride {s['stride']} (N = {N}), "
             f"{s['num_keys']} keys × {int(np.prod(s['frame_shape']))} pixels, {s['schedule']}({s['num_steps']}), "
             f"guidance 1, {s['num_prompts']} prompts (mean spread {s['mean_spread']}). SynCoS: "
             f"{s['syncos']}; CSD-only: {s['csd_only']}; FIFO: {s['fifo']}; FreeNoise: {s['freenoise']}.\n\n"
             "* **sampled**: the empirical per-frame, per-pixel mean over keys removed, `r_i·r_j` averaged over "
             "all pairs at distance d and over pixels; ± one standard error across keys (each key is one "
             "independent video and gives one pair average).\n"
             "* **closed form**: `J·Jᵀ` of the sampler's own affine map (`jax.jacfwd` w.r.t. its explicit noise, "
             "one pixel), averaged over pairs at distance d; only where the sampler is affine in its noise. "
             "FreeNoise: `M·E[P·Pᵀ]·Mᵀ`, `M` the map of the DDIM (whole video) or Gen-L-Video "
             "(`freenoise_chunked`: the backbone declared chunk-only, so the windows are fused) trajectory, "
             "`P` the noise rescheduling.\n"
             "* `fifo` is FIFO's default η = 1 (stochastic, no closed form); `fifo_eta0` the deterministic one.\n\n"
             f"Made by `python experiments/gaussian_identity.py{' --quick' if args.quick else ''}` "
             f"in {s['wall_seconds']:.0f} s (2 CPU cores).\n\n")
    with open(stem + ".md", "w") as fh:
        fh.write(notes + table + "\n\n## Sampled against the sampler's own closed form\n\n"
                 "z = (sampled − closed form) / se. Over d the z's are strongly correlated (the identity moves "
                 "every distance together), so max |z| up to ≈ 3 is chance. The mean: the empirical per-frame "
                 "mean against `f(0)`, χ² = n·δᵀC⁺δ summed over pixels, dof = rank(C) × pixels (FreeNoise's C "
                 "is singular: a shuffled copy of a block keeps the block's noise sum).\n\n" + consistency + "\n")
    plot(results, s, stem + ".png")
    print(table)
    print()
    print(consistency)
    print(f"wrote {stem}.{{json,md,png}} in {s['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
