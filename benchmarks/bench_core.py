"""Times the core math: take+fuse and csd_gradient, against a per-chunk Python-loop fusion.

    python benchmarks/bench_core.py [--latent 16 16 4] [--chunk 16] [--stride 4] [--repeats 20]

Prints one row per video length (64, 256, 1024 frames): the compiled take+fuse, the same fusion
written as a per-chunk Python loop (eager, and unrolled under jit), the ratios (loop time / ours),
the compile time of ours and of the unrolled loop (which grows with N), and csd_gradient
over a minibatch of B = 4 chunks and over all N chunks. Times are medians of --repeats runs after
a warm-up call (compile time excluded), on whatever device JAX picks.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from syncos_jax.chunking import ChunkLayout, fuse, take
from syncos_jax.csd import csd_gradient


def _compile_time(jitted, *args):
    t0 = time.perf_counter()
    jitted.lower(*args).compile()
    return time.perf_counter() - t0


def _time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def loop_take_fuse(layout: ChunkLayout, x):
    """The straightforward implementation: slice every chunk, add it back, divide by the counts."""
    f = layout.chunk_frames
    chunks = [x[s : s + f] for s in layout.starts.tolist()]
    out = jnp.zeros_like(x)
    count = jnp.zeros((x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
    for s, c in zip(layout.starts.tolist(), chunks):
        out = out.at[s : s + f].add(c)
        count = count.at[s : s + f].add(1.0)
    return out / count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latent", type=int, nargs=3, default=[16, 16, 4], metavar=("H", "W", "C"))
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--frames", type=int, nargs="+", default=[64, 256, 1024])
    args = ap.parse_args()

    print(f"device: {jax.devices()[0].platform} ({jax.device_count()}), latent {tuple(args.latent)}, "
          f"chunk {args.chunk}, stride {args.stride}, median of {args.repeats}")
    header = (f"{'F':>5} {'N':>4} | {'take+fuse':>10} {'loop eager':>11} {'ratio':>7} "
              f"{'loop jit':>9} {'ratio':>6} | {'compile':>8} {'loop jit':>8} | {'csd B=4':>9} {'csd B=N':>9}")
    print(header)
    print("-" * len(header))
    for F in args.frames:
        layout = ChunkLayout(F, args.chunk, args.stride)
        x = jax.random.normal(jax.random.key(0), (F, *args.latent))
        fast = jax.jit(lambda v: fuse(layout, take(layout, v)))
        loop_eager = lambda v: loop_take_fuse(layout, v)  # noqa: E731
        loop_jit = jax.jit(loop_eager)
        c_fast, c_loop = _compile_time(fast, x), _compile_time(loop_jit, x)  # before any call: nothing cached
        t_fast = _time(fast, x, repeats=args.repeats)
        t_eager = _time(loop_eager, x, repeats=max(3, args.repeats // 5))
        t_loopjit = _time(loop_jit, x, repeats=args.repeats)

        chunks = take(layout, x)
        resid = jax.random.normal(jax.random.key(1), chunks.shape)
        csd = jax.jit(csd_gradient)
        t_csd4 = _time(csd, chunks[:4], resid[:4], 0.5, repeats=args.repeats)
        t_csdn = _time(csd, chunks, resid, 0.5, repeats=args.repeats)
        ms = lambda s: f"{1e3 * s:8.3f}ms"  # noqa: E731
        print(f"{F:>5} {layout.num_chunks:>4} | {ms(t_fast):>10} {ms(t_eager):>11} {t_eager / t_fast:>6.1f}x "
              f"{ms(t_loopjit):>9} {t_loopjit / t_fast:>5.1f}x | {c_fast:>7.2f}s {c_loop:>7.2f}s | "
              f"{ms(t_csd4):>9} {ms(t_csdn):>9}")


if __name__ == "__main__":
    main()
