"""Where does the toy model lose the shape? Denoising real renders from intermediate noise levels.

    python experiments/toy_denoise_from.py [--weights FILE] [--num 32] [--starts 5 15 25 35 45] [--json OUT]

For ``--num`` random captions (the quality bar's distribution, ``eval_toy_model.py``'s seed), the
world renders the true clip ``x_0``. For each start index ``k`` of the 50-step DDIM grid
(``t_k = schedule.timesteps[k]``; ``k = 0`` is pure noise, ``k = 49`` almost clean) the clip is
noised to ``x_{t_k} = α_k·x_0 + σ_k·ε`` and then:

* **one step**: the model's ``x̂_0`` at ``t_k`` (classifier-free guidance at the default scale) is
  judged directly;
* **DDIM from t_k**: the deterministic DDIM steps ``k … 49`` (SDEdit) run to the end, and the result is
  judged.

Judged by ``eval_toy_model.judge`` (the analytic probes): shape, colour, size, unprompted identity.
If a factor is right when denoising starts late (small ``t``) but wrong from early starts, the
model renders it but fails to decide it at high noise; if it is wrong even from late starts, the
model cannot render it at all (a capacity or resolution limit, not a sampling one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_toy_model import judge, weights_record  # noqa: E402

from syncos_jax import schedules  # noqa: E402
from syncos_jax.backbones import toy  # noqa: E402
from syncos_jax.backbones.toy import world  # noqa: E402
from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS  # noqa: E402

FACTORS = ("shape", "colour", "size", "unprompted_clip")


def guided_x0(defn, params, schedule, x, t, tokens, null, scale):
    """``x̂_0`` of classifier-free guidance at model time ``t`` (``x: [B, f, H, W, C]``, ``t: []``)."""
    B = x.shape[0]
    tt = jnp.full((2 * B,), t)
    out = defn.apply(params, jnp.concatenate([x, x]), tt, jnp.concatenate([tokens, null]))
    cond, uncond = out[:B], out[B:]
    x0, _ = schedule.to_x0_eps(uncond + scale * (cond - uncond), x, t)
    return x0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS)
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--starts", type=int, nargs="+", default=[5, 15, 25, 35, 45])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    backbone = toy.load_default(args.weights)
    defn, params = backbone.denoiser.split()
    schedule = backbone.schedule(50)
    if not all(0 <= k < schedule.num_steps for k in args.starts):
        raise SystemExit(f"--starts must lie in [0, {schedule.num_steps - 1}], got {args.starts}")
    rng = np.random.default_rng(args.seed)
    texts = [world.random_caption(rng) for _ in range(args.num)]
    f = backbone.chunk_frames
    clean = np.stack([world.render(world.track_from_caption(t, f, rng)) for t in texts]).astype(np.float32)
    tokens = jnp.asarray(backbone.encode(texts))
    null = jnp.asarray(np.broadcast_to(backbone.encode([""]), tokens.shape))
    step = jax.jit(lambda p, x, t, tok, nul: guided_x0(defn, p, schedule, x, t, tok, nul, backbone.default_guidance))
    eps = np.asarray(jax.random.normal(jax.random.key(args.seed), clean.shape))
    rows = []
    print(f"{args.weights}: {args.num} renders noised to t_k, then judged; DDIM 50-step grid, guidance {backbone.default_guidance:g}")
    for k in args.starts:
        a, s = float(schedule.alphas[k]), float(schedule.sigmas[k])
        x = jnp.asarray(a * clean + s * eps)
        first, last = None, x
        for i in range(k, schedule.num_steps):
            x0 = step(params, last, schedule.timesteps[i], tokens, null)
            first = x0 if first is None else first
            e = (last - schedule.alphas[i] * x0) / schedule.sigmas[i]
            last = schedules.ddim_step(x0, e, schedule.alphas[i + 1], schedule.sigmas[i + 1])
        one = [judge(t, np.clip(np.asarray(c), -1, 1)) for t, c in zip(texts, first)]
        full = [judge(t, np.clip(np.asarray(c), -1, 1)) for t, c in zip(texts, last)]
        row = {"k": k, "t": int(schedule.timesteps[k]), "alpha": a,
               "one_step": {n: float(np.mean([j[n] for j in one])) for n in FACTORS},
               "ddim": {n: float(np.mean([j[n] for j in full])) for n in FACTORS}}
        rows.append(row)
        print(f"k {k:>2}, t {row['t']:>4}, alpha {a:.3f}: " + "; ".join(f"{n}: 1-step {row['one_step'][n]:.0%}, DDIM {row['ddim'][n]:.0%}"
                                                           for n in FACTORS), flush=True)
    renders = [judge(t, c) for t, c in zip(texts, clean)]
    print("renders themselves: " + ", ".join(f"{n} {np.mean([j[n] for j in renders]):.0%}" for n in FACTORS))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**weights_record(args.weights), "num": args.num, "seed": args.seed, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
