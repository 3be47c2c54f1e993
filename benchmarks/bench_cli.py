"""What the command line's safety costs: NaN/Inf checks and segmented, checkpointed sampling.

    python benchmarks/bench_cli.py [--samplers syncos gen-l-video] [--frames 32] [--steps 50]
                                   [--segment 5] [--repeats 2] [--weights FILE]

``syncos generate`` checks every step's values for NaN/Inf (``check_finite``) and drives the
compiled loop in segments of ``--segment`` steps, saving the sampler state with orbax after each
(:mod:`syncos_jax.cli`). For each sampler, on the shipped toy model (or ``--weights``) and the
``four_turns`` scenario, this times the sampling loop three ways, as the command line runs it:

* ``plain``: one ``run`` of all steps, no checks (what ``sample`` does);
* ``checked``: the same with ``check_finite=True``;
* ``segmented``: checked, in segments of ``--segment`` steps with an orbax save after each.

Every configuration is compiled and run once before it is timed; the figure is the best of
``--repeats`` timed runs. It prints the times and the two overheads (checked vs plain, segmented
vs checked), and asserts nothing: the test suite never asserts wall-clock times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import jax

from syncos_jax import checkpoint
from syncos_jax.backbones import toy
from syncos_jax.chunking import ChunkLayout
from syncos_jax.prompts import load_scenario
from syncos_jax.samplers import build_conditioning, gen_l_video, syncos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = {"syncos": {}, "gen-l-video": gen_l_video.DEFAULTS}


def _progress(n):  # one object: the compiled loop is keyed on the progress callback, as in the CLI
    pass


def _time(fn, repeats):
    fn()  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samplers", nargs="+", default=["syncos", "gen-l-video"], choices=sorted(DEFAULTS))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--segment", type=int, default=5, help="steps per segment (the CLI's --checkpoint-every)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--weights", default=None, help="a toy weights file (default: the shipped one)")
    args = ap.parse_args()

    backbone = toy.load_default(args.weights) if args.weights else toy.load_default()
    scenario = load_scenario(os.path.join(ROOT, "examples", "scenarios", "four_turns.yaml"))
    f = backbone.chunk_frames
    layout = ChunkLayout(args.frames, f, f // 2)
    schedule = backbone.schedule(args.steps)
    cond = build_conditioning(backbone.encode, scenario.prompt)
    den = backbone.denoiser
    key = jax.random.key(0)
    print(f"device: {jax.devices()[0].platform}, toy model, {args.frames} frames ({layout.num_chunks} chunks), "
          f"{args.steps} steps, segments of {args.segment}, best of {args.repeats}")
    header = f"{'sampler':<12} | {'plain':>8} {'checked':>8} {'segmented':>10} | {'check cost':>10} {'segment cost':>12}"
    print(header)
    print("-" * len(header))
    for name in args.samplers:
        base = dict(DEFAULTS[name], guidance_scale=backbone.default_guidance)
        plain_cfg = syncos.make_config(**base)
        checked_cfg = syncos.make_config(**base, check_finite=True)
        state0 = syncos.init(key, layout, backbone.frame_shape)

        def plain():
            st, _ = syncos.run(den, schedule, layout, cond, state0, config=plain_cfg, progress=_progress)
            jax.block_until_ready(st.x)

        def checked():
            st, _ = syncos.run(den, schedule, layout, cond, state0, config=checked_cfg, progress=_progress)
            jax.block_until_ready(st.x)

        def segmented():
            d = tempfile.mkdtemp()
            try:
                st, step = state0, 0
                while step < args.steps:
                    st, _ = syncos.run(den, schedule, layout, cond, st, config=checked_cfg, progress=_progress,
                                       stop=min(step + args.segment, args.steps))
                    step = int(st.step)
                    checkpoint.save_state(d, st, max_to_keep=1)
                jax.block_until_ready(st.x)
            finally:
                shutil.rmtree(d, ignore_errors=True)

        t_plain, t_checked, t_seg = (_time(fn, args.repeats) for fn in (plain, checked, segmented))
        print(f"{name:<12} | {t_plain:7.2f}s {t_checked:7.2f}s {t_seg:9.2f}s | {100 * (t_checked / t_plain - 1):+9.1f}% "
              f"{100 * (t_seg / t_checked - 1):+11.1f}%")


if __name__ == "__main__":
    main()
