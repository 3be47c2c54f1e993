"""Every sampler's output for fixed keys, on the Gaussian backbone and on a tiny random toy model.

``sampler_reference.npz`` was written by this script *before* the sampler-interface refactor
(issue 15), at commit b2698f1, with that commit's per-module ``sample(denoiser, schedule, layout,
cond, key=..., **options)`` functions. Since then the script samples through today's interface
(``sample(SAMPLERS[name](...), params, key)``, via ``sampler_helpers.draw``), and
``tests/test_sampler_reference.py`` asserts that every case is equal up to float rounding (bit
for bit under the recording's jaxlib; a later jaxlib may round compiled float code differently):
``python tests/data/make_sampler_reference.py --check`` prints each array's largest difference.

One deliberate change since: the batched SynCoS case (``gauss/syncos_batch_cf``) was re-recorded
when the compiled loop began to share the step counter across a batch (stage 2 a branch, not a
select; ``tests/test_samplers.py::test_a_batch_of_videos_keeps_stage2_a_branch``). Its latents
moved by float rounding only (max |Δ| 5.7e-6 of max |x| 24.9); the other 18 cases did not move.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import sampler_helpers as H  # noqa: E402

from syncos_jax.chunking import ChunkLayout  # noqa: E402
from syncos_jax.samplers import SAMPLERS  # noqa: E402
from syncos_jax.prompts import build_conditioning  # noqa: E402

PATH = os.path.join(HERE, "sampler_reference.npz")

# (name, sampler, backbone, options). Gaussian: F=12, f=4, stride 2 (N=5), 6 steps, 2 prompts.
# Toy: a tiny random model, F=16, f=8, stride 4 (N=3), 4 steps, 2 prompts (ddim: F=8).
GAUSS = [
    ("syncos", "syncos", dict(t_min=500, iters=3)),
    ("syncos_batch_cf", "syncos", dict(t_min=500, iters=3, check_finite=True, diagnostics=("x0_fused", "grad_norm", "nfe"))),
    ("syncos_free_noise", "syncos", dict(t_min=None, iters=2, fixed_baseline_noise=False, grounded_timestep=False)),
    ("syncos_ext", "syncos", dict(t_min=500, iters=2, optimizer="sgd", lr=0.1, kernel_on="clean", repulsion=False,
                                  eta=0.3, eta_above_t_min=1.0, weighting="one", native_residual=True,
                                  fusion_weights="triangular", batch_chunks=2, kernel_gamma=0.7)),
    ("syncos_dyncfg", "syncos", dict(t_min=500, iters=2, guidance_scale=(6.0, 5.0, 4.0, 3.0, 2.0, 1.0))),
    ("syncos_unguided", "syncos", dict(t_min=500, iters=2, guidance_scale=1.0, stages=(1, 2, 3))),
    ("stage2_only_fixed", "syncos", dict(stages=(2, 3), t_min=500, iters=2)),
    ("gen_l_video", "gen-l-video", dict()),
    ("csd_only", "csd-only", dict(iters=2)),
    ("ddim", "ddim", dict(eta=0.5)),
    ("fifo", "fifo", dict(num_partitions=2)),
    ("fifo_plain", "fifo", dict(num_partitions=2, lookahead=False, eta=0.0, check_finite=True, diagnostics=("prompt",))),
    ("freenoise", "freenoise", dict()),
]
TOY = [
    ("syncos", "syncos", dict(t_min=700, iters=2)),
    ("gen_l_video", "gen-l-video", dict()),
    ("csd_only", "csd-only", dict(iters=1)),
    ("ddim", "ddim", dict()),
    ("fifo", "fifo", dict(num_partitions=1)),
    ("freenoise", "freenoise", dict()),
]
BATCHED = {"syncos_batch_cf", "gen_l_video", "fifo"}  # sampled with 2 keys (vmapped)


def gaussian_setup():
    sch = H.small_schedule(6)
    prior, cond = H.gaussian(sch, frame_shape=(2, 2, 1), num_prompts=2)
    return prior, cond, sch, ChunkLayout(12, 4, 2)


def toy_setup():
    from flax import nnx

    from syncos_jax.backbones.toy import ToyBackbone, Tokenizer
    from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT
    from syncos_jax.prompts import StructuredPrompt

    model = ToyVideoDiT(ToyConfig(dim=16, depth=1, heads=2), rngs=nnx.Rngs(0))
    bb = ToyBackbone(model, Tokenizer(model.cfg.text_length))
    prompt = StructuredPrompt.make("a small red circle on grass", ["moves right", "moves up"])
    cond = build_conditioning(bb.encode, prompt)
    return bb.denoiser, cond, bb.schedule(4), ChunkLayout(16, bb.chunk_frames, 4)


def keys_for(name):
    if name in BATCHED:
        return jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32) + 7)
    return jax.random.key(3)


def cases():
    """Yields ``(record name, sampler, denoiser, schedule, layout, cond, key, options)``."""
    den, cond, sch, layout = gaussian_setup()
    for name, sampler, opts in GAUSS:
        yield "gauss/" + name, sampler, den, sch, layout, cond, keys_for(name), opts
    den, cond, sch, layout = toy_setup()
    for name, sampler, opts in TOY:
        lay = ChunkLayout(8, 8, 8) if sampler == "ddim" else layout
        yield "toy/" + name, sampler, den, sch, lay, cond, keys_for(name), opts


def outputs(name, sampler, den, sch, layout, cond, key, opts) -> dict:
    """``{name/latents, name/nfe, name/diag/<d>}`` of one case, sampled through today's interface."""
    res = H.draw(SAMPLERS[sampler], den, sch, layout, cond, key=key, **opts)
    out = {name + "/latents": np.asarray(res.latents), name + "/nfe": np.asarray(res.nfe)}
    for d, v in res.diagnostics.items():
        out[f"{name}/diag/{d}"] = np.asarray(v)
    return out


def max_difference(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """``(max|got − ref|, max|ref|)`` in float64 (``(0, 0)`` for empty arrays)."""
    if not ref.size:
        return 0.0, 0.0
    ref64 = ref.astype(np.float64)
    return float(np.abs(got.astype(np.float64) - ref64).max()), float(np.abs(ref64).max())


def main():
    got = {}
    for case in cases():
        got.update(outputs(*case))
    if "--check" in sys.argv:
        ref = np.load(PATH)
        if set(ref.files) != set(got):
            print(f"the arrays differ: missing {sorted(set(ref.files) - set(got))}, new {sorted(set(got) - set(ref.files))}")
        for k in sorted(set(ref.files) & set(got)):
            diff, scale = max_difference(got[k], ref[k])
            print(f"{k:45s} max |Δ| {diff:.3g}  ({diff / max(scale, 1e-30):.2g} of max |x| {scale:.3g})")
        return
    np.savez_compressed(PATH, **got)
    print(f"wrote {len(got)} arrays to {os.path.relpath(PATH)} ({os.path.getsize(PATH) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
