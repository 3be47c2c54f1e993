"""Times every sampler with a tiny random nnx video DiT and reports the loop's overhead over its backbone calls.

    python benchmarks/bench_samplers.py [--steps 10] [--iters 20] [--samplers syncos gen-l-video ...]

Setting (issue 3): 32 latent frames of 16×16×4, chunk 8, stride 2 (N = 13 chunks), a DiT of about
1.7 M parameters (2×2 patches, factorised spatial/temporal attention, per-frame adaLN), guidance 6.

For each sampler it prints: compile time (first call minus a steady call), steady wall time
(median of --repeats), NFE, and the **overhead ratio** = wall time / Σ over the sampler's backbone
calls of the time that call takes alone (each batch size the sampler uses is timed separately, as
one jitted backbone call on random inputs). A ratio near 1 means the sampler adds little beyond
its backbone calls.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from syncos_jax import schedules as S
from syncos_jax.backbones.protocol import NnxDenoiser
from syncos_jax.chunking import ChunkLayout
from syncos_jax.guidance import calls_per_chunk
from syncos_jax.prompts import Conditioning
from syncos_jax.samplers import SAMPLERS, fifo, sample
from syncos_jax.samplers.fifo import num_iterations, queue_plan
from syncos_jax.samplers.syncos import batch_chunks, make_config


class Block(nnx.Module):
    """Spatial attention, temporal attention and an MLP, each with per-frame adaLN (shift, scale, gate)."""

    def __init__(self, dim, heads, *, rngs):
        self.spatial = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.temporal = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.mlp1 = nnx.Linear(dim, 4 * dim, rngs=rngs)
        self.mlp2 = nnx.Linear(4 * dim, dim, rngs=rngs)
        self.ada = nnx.Linear(dim, 9 * dim, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        self.norm = nnx.LayerNorm(dim, use_scale=False, use_bias=False, rngs=rngs)

    def __call__(self, h, c):  # h: [B, f, P, D]; c: [B, f, D]
        mods = jnp.split(self.ada(nnx.silu(c))[:, :, None], 9, axis=-1)

        def mod(x, i):
            return self.norm(x) * (1 + mods[i + 1]) + mods[i]

        h = h + mods[2] * self.spatial(mod(h, 0))
        t = jnp.swapaxes(mod(h, 3), 1, 2)  # attend over frames
        h = h + mods[5] * jnp.swapaxes(self.temporal(t), 1, 2)
        return h + mods[8] * self.mlp2(nnx.gelu(self.mlp1(mod(h, 6))))


class TinyDiT(nnx.Module):
    """A small text-conditioned video DiT with per-frame timesteps (random weights: timing only)."""

    def __init__(self, channels=4, patch=2, dim=128, depth=4, heads=4, num_prompts=4, frames=8, size=16, *, rngs):
        self.patch = patch
        self.embed = nnx.Linear(patch * patch * channels, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, frames, (size // patch) ** 2, dim)))
        self.time = nnx.Linear(dim, dim, rngs=rngs)
        self.text = nnx.Embed(num_prompts + 1, dim, rngs=rngs)
        self.blocks = nnx.List([Block(dim, heads, rngs=rngs) for _ in range(depth)])
        self.out = nnx.Linear(dim, patch * patch * channels, rngs=rngs)
        self.dim = dim

    def __call__(self, x, t, cond):
        B, f, H, W, C = x.shape
        p = self.patch
        tokens = x.reshape(B, f, H // p, p, W // p, p, C).transpose(0, 1, 2, 4, 3, 5, 6).reshape(B, f, -1, p * p * C)
        h = self.embed(tokens) + self.pos[...]
        t = jnp.broadcast_to(t.reshape(t.shape + (1,) * (2 - t.ndim)), (B, f)).astype(jnp.float32)
        freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(self.dim // 2) / (self.dim // 2))
        temb = jnp.concatenate([jnp.sin(t[..., None] * freqs), jnp.cos(t[..., None] * freqs)], -1)
        c = self.time(temb) + self.text(cond)[:, None]
        for blk in self.blocks:
            h = blk(h, c)
        out = self.out(h).reshape(B, f, H // p, W // p, p, p, C).transpose(0, 1, 2, 4, 3, 5, 6)
        return out.reshape(B, f, H, W, C)


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def call_profile(name, schedule, layout, opts):
    """Returns ``Counter({batch size: number of backbone calls})`` of one run, in closed form."""
    c = calls_per_chunk(opts.get("guidance_scale", 6.0))
    steps = schedule.num_steps
    if name == "fifo":
        cfg = fifo.make_config(**opts)
        windows = queue_plan(layout.chunk_frames, cfg).windows.shape[0]
        # The base video (one chunk per step), then one call over all windows per iteration.
        return Counter({("chunk", c): steps, ("chunk", c * windows): num_iterations(layout, cfg)})
    if name in ("ddim", "freenoise"):
        return Counter({("video", c): steps})
    cfg = make_config(**{"syncos": {}, "gen-l-video": {"stages": (1, 3)},
                         "csd-only": {"stages": (2,), "t_min": None, "fixed_baseline_noise": False}}[name],
                      **{k: v for k, v in opts.items() if k in ("iters", "guidance_scale", "t_min")})
    prof = Counter()
    if 1 in cfg.stages:
        prof[("chunk", c * layout.num_chunks)] += steps
    if 2 in cfg.stages:
        runs = steps if cfg.t_min is None else int(np.sum(np.asarray(schedule.timesteps) > cfg.t_min))
        prof[("chunk", c * batch_chunks(cfg, layout))] += runs * cfg.iters
    return prof


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--samplers", nargs="+", default=["syncos", "gen-l-video", "csd-only", "fifo", "ddim", "freenoise"])
    args = ap.parse_args()

    F, f, stride, size, C = 32, 8, 2, 16, 4
    layout = ChunkLayout(F, f, stride)
    schedule = S.cogvideox_2b(args.steps)
    chunk_net = TinyDiT(frames=f, rngs=nnx.Rngs(0))
    video_net = TinyDiT(frames=F, rngs=nnx.Rngs(0))
    n_params = sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(nnx.state(chunk_net, nnx.Param)))
    chunk_den = NnxDenoiser(chunk_net, prediction_type="v_prediction", frames_per_chunk=f, per_frame_timesteps=True)
    video_den = NnxDenoiser(video_net, prediction_type="v_prediction", frames_per_chunk=F, per_frame_timesteps=True)
    cond = Conditioning(prompts=jnp.arange(2), uncond=jnp.array([4]))
    print(f"device: {jax.devices()[0].platform}; DiT {n_params / 1e6:.2f} M params; {F} frames of {size}x{size}x{C}, "
          f"chunk {f}, stride {stride} (N={layout.num_chunks}); {args.steps} steps, iters {args.iters}, guidance 6")

    # Time one backbone call alone at every batch size the samplers use.
    alone = {}

    def call_time(kind, batch):
        if (kind, batch) not in alone:
            den = chunk_den if kind == "chunk" else video_den
            frames = f if kind == "chunk" else F
            defn, params = den.split()
            fn = jax.jit(defn.apply)
            x = jax.random.normal(jax.random.key(0), (batch, frames, size, size, C))
            t = jnp.full((batch, frames), 500, jnp.int32)
            cc = jnp.zeros((batch,), jnp.int32)
            jax.block_until_ready(fn(params, x, t, cc))
            alone[(kind, batch)] = _median_time(lambda: fn(params, x, t, cc), 5)
        return alone[(kind, batch)]

    header = f"{'sampler':<12} {'compile':>9} {'wall':>9} {'NFE':>6} {'Σ calls':>9} {'overhead':>9}"
    print(header)
    print("-" * len(header))
    for name in args.samplers:
        opts = {"guidance_scale": 6.0}
        if name in ("syncos", "csd-only"):
            opts["iters"] = args.iters
        if name == "fifo":
            opts["num_partitions"] = 4
        den = video_den if name in ("ddim", "freenoise") else chunk_den
        sched = schedule
        sampler = SAMPLERS[name](den, sched, layout, cond, frame_shape=(size, size, C), **opts)
        params = den.split()[1]
        run = lambda: sample(sampler, params, jax.random.key(1)).latents  # noqa: E731
        t0 = time.perf_counter()
        res = sample(sampler, params, jax.random.key(1))
        jax.block_until_ready(res.latents)
        first = time.perf_counter() - t0
        wall = _median_time(run, args.repeats)
        prof = call_profile(name, sched, layout, opts)
        total = sum(n * call_time(kind, b) for (kind, b), n in prof.items())
        print(f"{name:<12} {first - wall:>8.2f}s {wall:>8.2f}s {int(res.nfe):>6} {total:>8.2f}s {wall / total:>8.3f}")


if __name__ == "__main__":
    main()
