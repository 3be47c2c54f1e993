"""CogVideoX forward: our flax.nnx port vs diffusers, on the same input (real 2B config, random weights).

    python benchmarks/bench_cogvideox.py [--frames 4 --height 16 --width 16 --text 226 --repeats 3]
    python benchmarks/bench_cogvideox.py --paper-size --dtype bfloat16      # on a GPU: 13×60×90

Each implementation runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its
own: diffusers builds the model, runs the forward ``--repeats`` times and reports the median; ours
builds the abstract model, converts the same random weights (seeded identically in torch, then
passed as numpy), compiles and runs. Prints the median forward time of each, the ratio, and the
peak memory. On a GPU the JAX side reports ``jax.devices()[0].memory_stats()['peak_bytes_in_use']``
as well. ``--only jax`` skips diffusers (e.g. on a machine without torch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def _inputs(args):
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, args.frames, 16, args.height, args.width), np.float32)  # diffusers layout
    text = rng.standard_normal((1, args.text, 4096), np.float32)
    return x, text, np.array([500])


def run_diffusers(args) -> dict:
    import torch
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel().eval()
    x, text, t = (torch.from_numpy(a) for a in _inputs(args))
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            model(x, text, t)
            times.append(time.perf_counter() - t0)
    return {"impl": "diffusers", "first_s": times[0], "median_s": _median(times[1:]), "threads": torch.get_num_threads()}


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from converters.cogvideox import RULES
    from converters.common import convert
    from syncos_jax.backbones.cogvideox import CogVideoXConfig, model_abstract

    cfg = CogVideoXConfig()
    _, graphdef, abstract = model_abstract(cfg.to_dict())
    rng = np.random.default_rng(0)
    # random weights of the diffusers names and shapes (the forward's cost does not depend on the values)
    sd = {name: (0.02 * rng.standard_normal(shape, dtype=np.float32)) for name, shape in _torch_names(cfg).items()}
    state = convert(sd, RULES, abstract, dtype=args.dtype)
    del sd
    state = jax.device_put(state)
    x, text, t = _inputs(args)
    dt = jnp.bfloat16 if args.dtype in ("bfloat16", "bf16") else jnp.float32
    x = jnp.asarray(x.transpose(0, 1, 3, 4, 2), dt)
    text = jnp.asarray(text, dt)
    fwd = jax.jit(lambda s, x, t, c: nnx.merge(graphdef, s)(x, t, c))
    t0 = time.perf_counter()
    fwd(state, x, jnp.asarray(t), text).block_until_ready()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fwd(state, x, jnp.asarray(t), text).block_until_ready()
        times.append(time.perf_counter() - t0)
    out = {"impl": "jax", "first_s": first, "median_s": _median(times), "device": str(jax.devices()[0]), "dtype": args.dtype}
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        out["device_peak_gib"] = stats["peak_bytes_in_use"] / 2**30
    return out


def _torch_names(cfg) -> dict:
    """diffusers parameter names and shapes of a config, from a meta-device model (nothing allocated)."""
    import torch
    from diffusers import CogVideoXTransformer3DModel

    with torch.device("meta"):
        ref = CogVideoXTransformer3DModel(**cfg.to_dict())
    return {k: tuple(v.shape) for k, v in ref.state_dict().items() if k != "patch_embed.pos_embedding"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--height", type=int, default=16)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--text", type=int, default=226)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--paper-size", action="store_true", help="13×60×90 latents (the paper's size)")
    ap.add_argument("--only", choices=("jax", "diffusers"), default=None)
    ap.add_argument("--worker", choices=("jax", "diffusers"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.paper_size:
        args.frames, args.height, args.width = 13, 60, 90
    if args.worker:
        res = (run_jax if args.worker == "jax" else run_diffusers)(args)
        res["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print("RESULT " + json.dumps(res))
        return 0
    results = {}
    for impl in ("diffusers", "jax"):
        if args.only and impl != args.only:
            continue
        cmd = [sys.executable, __file__, "--worker", impl, "--frames", str(args.frames), "--height", str(args.height),
               "--width", str(args.width), "--text", str(args.text), "--repeats", str(args.repeats), "--dtype", args.dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{impl} failed:\n{proc.stderr[-2000:]}")
            continue
        results[impl] = json.loads(line[0][len("RESULT "):])
    print(f"CogVideoX-2B forward, latent {args.frames}×{args.height}×{args.width}×16, {args.text} text tokens, {args.dtype}")
    print(f"{'impl':<10}{'first call':>12}{'median':>10}{'peak RSS':>10}  extra")
    for impl, r in results.items():
        extra = {k: v for k, v in r.items() if k not in ("impl", "first_s", "median_s", "peak_rss_gib")}
        print(f"{impl:<10}{r['first_s']:>11.2f}s{r['median_s']:>9.2f}s{r['peak_rss_gib']:>8.1f}GiB  {extra}")
    if len(results) == 2:
        print(f"ratio (ours / diffusers, median forward): {results['jax']['median_s'] / results['diffusers']['median_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
