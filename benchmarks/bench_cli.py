"""What the command line's safety costs: NaN/Inf checks and segmented, checkpointed sampling.

    python benchmarks/bench_cli.py [--samplers syncos gen-l-video] [--frames 32] [--steps 50]
                                   [--repeats 3] [--weights FILE]

``syncos generate`` checks every step's values for NaN/Inf (``check_finite``) and drives the
compiled loop in segments, saving the sampler state with orbax after each (:mod:`syncos_jax.cli`):
by default segments of about ``cli.SEGMENT_SECONDS``, sized from the pace of the last one. For
each sampler, on the shipped toy model (or ``--weights``) and the ``four_turns`` scenario, this
times the sampling loop four ways:

* ``plain``: one ``run`` of all steps, no checks (what ``sample`` does);
* ``checked``: the same with ``check_finite=True`` (the command line's default);
* ``1-step``: checked, one step per segment with an orbax save after each — its excess over
  ``checked``, divided by the number of segments, is the fixed cost of one segment;
* ``auto``: checked, in the command line's default segments.

Every configuration is compiled and run once before it is timed; the figure is the best of
``--repeats`` timed runs, the configurations interleaved round by round. It prints the times,
the cost of the checks, the cost of one segment, the overhead of the default segments (measured,
and as their count × the cost of one: the difference of two timings is as noisy as the machine),
and asserts nothing: the test suite never asserts wall-clock times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import jax

from syncos_jax import checkpoint
from syncos_jax.cli import SEGMENT_SECONDS
from syncos_jax.backbones import toy
from syncos_jax.chunking import ChunkLayout
from syncos_jax.prompts import build_conditioning, load_scenario
from syncos_jax.samplers import gen_l_video, run, syncos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = {"syncos": {}, "gen-l-video": gen_l_video.DEFAULTS}


def _progress(n):  # one object: the compiled loop is keyed on the progress callback, as in the CLI
    pass


def _best_times(fns, repeats):
    """The best wall time of each of ``fns`` over ``repeats`` rounds, run interleaved (round by
    round) so that a slow spell of the machine hits every configuration alike."""
    for fn in fns:
        fn()  # compile and warm up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samplers", nargs="+", default=["syncos", "gen-l-video"], choices=sorted(DEFAULTS))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--weights", default=None, help="a toy weights file (default: the shipped one)")
    args = ap.parse_args()

    backbone = toy.load_default(args.weights) if args.weights else toy.load_default()
    scenario = load_scenario(os.path.join(ROOT, "examples", "scenarios", "four_turns.yaml"))
    f = backbone.chunk_frames
    layout = ChunkLayout(args.frames, f, f // 2)
    schedule = backbone.schedule(args.steps)
    cond = build_conditioning(backbone.encode, scenario.prompt)
    den = backbone.denoiser
    params = den.split()[1]
    key = jax.random.key(0)
    print(f"device: {jax.devices()[0].platform}, toy model, {args.frames} frames ({layout.num_chunks} chunks), "
          f"{args.steps} steps, default segments of ~{SEGMENT_SECONDS:g} s, best of {args.repeats}")
    header = (f"{'sampler':<12} | {'plain':>7} {'checked':>8} {'1-step':>7} {'auto':>7} | {'checks':>7} "
              f"{'one segment':>11} {'auto segments':>13} {'count':>5} {'count×cost':>10}")
    print(header)
    print("-" * len(header))
    for name in args.samplers:
        base = dict(DEFAULTS[name], guidance_scale=backbone.default_guidance)
        plain_sampler = syncos.build(den, schedule, layout, cond, **base)
        checked_sampler = syncos.build(den, schedule, layout, cond, **base, check_finite=True)
        state0 = plain_sampler.init(key)

        def plain():
            st, _ = run(plain_sampler, state0, params, progress=_progress)
            jax.block_until_ready(st.x)

        def checked():
            st, _ = run(checked_sampler, state0, params, progress=_progress)
            jax.block_until_ready(st.x)

        counts = {}

        def segmented(fixed):
            d = tempfile.mkdtemp()
            n = 0
            try:  # the command line's loop: the first segment one step, then sized to SEGMENT_SECONDS
                st, step, length, first = state0, 0, fixed or 1, True
                while step < args.steps:
                    t0 = time.perf_counter()
                    st, _ = run(checked_sampler, st, params, progress=_progress, stop=min(step + length, args.steps))
                    done, step = int(st.step) - step, int(st.step)
                    if not fixed and not first:
                        length = max(1, int(round(SEGMENT_SECONDS * done / (time.perf_counter() - t0))))
                    first = False
                    checkpoint.save_state(d, st, max_to_keep=1)
                    n += 1
                counts[fixed] = n
                jax.block_until_ready(st.x)
            finally:
                shutil.rmtree(d, ignore_errors=True)

        t_plain, t_checked, t_one, t_auto = _best_times((plain, checked, lambda: segmented(1), lambda: segmented(None)),
                                                        args.repeats)
        per_segment = (t_one - t_checked) / args.steps
        expected = counts[None] * per_segment / t_checked  # less noisy than the difference of two timings
        print(f"{name:<12} | {t_plain:6.2f}s {t_checked:7.2f}s {t_one:6.2f}s {t_auto:6.2f}s | "
              f"{100 * (t_checked / t_plain - 1):+6.1f}% {1e3 * per_segment:9.0f}ms {100 * (t_auto / t_checked - 1):+12.1f}% "
              f"{counts[None]:>5} {100 * expected:+9.1f}%")


if __name__ == "__main__":
    main()
