"""Table 4 in miniature: NFE and wall time per method at equal video length.

One video at a time (a batch of one key, as the paper generates them), per method and video length: the
first call (compilation + sampling) and then ``--repeats`` warm calls (the fastest is reported),
timed around ``samplers.sample`` (the start noise's ``init`` and the compiled run) up to
``block_until_ready``, so decoding and the probes are not counted. The NFE is the sampler's own count (equal to its closed form
``expected_nfe``). Ratios are against Gen-L-Video at the same length. Each length uses the first
scenario of the suite with that many frames (the full run: 48 frames, N = 11 chunks as in the
paper's Table 4; ``--frames`` for others; ``--quick``: the first quick scenario, 32 frames, 25
steps; ``--names`` times those scenarios instead). ``--seeds`` and ``--scenarios`` do not apply (one
video, seed 0), and ``--cached-only`` leaves the table as it is (timing needs sampling). Writes
``table4_cost.{json,md}``::

    python experiments/table4_cost.py                     # 50 steps, 48 frames
    python experiments/table4_cost.py --frames 32 48 64   # 50 steps, three lengths
    python experiments/table4_cost.py --quick             # 25 steps, 32 frames

Wall times are this machine's CPU; run it with nothing else on the machine (the other scripts
record batched wall times that include compilation and share the cores).
"""

from __future__ import annotations

import argparse
import os
import time

import common as C
import table1_baselines

METHODS = table1_baselines.VARIANTS
FULL_LENGTHS = (48,)  # N = 11 chunks of 8 at stride 4, the paper's Table 4


def scenario_of_length(frames: int) -> str:
    """The first scenario of the full suite with ``frames`` frames."""
    for name in C.scenario_names(False):
        if C.load(name).frames == frames:
            return name
    raise SystemExit(f"no scenario of {frames} frames in {os.path.relpath(C.SCENARIO_DIR)}")


def time_one(variant: C.Variant, name: str, steps: int, repeats: int) -> dict:
    """``{"nfe", "expected_nfe", "first_call_seconds", "wall_seconds"}`` of one video (seed 0)."""
    import jax

    from syncos_jax.samplers import sample

    sampler, params = C.build_sampler(variant, name, steps=steps)
    key = jax.random.key(0)[None]  # a batch of one video: the program Table 1 compiles for one seed
    times = []
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        result = sample(sampler, params, key)
        jax.block_until_ready(result.latents)
        times.append(time.perf_counter() - t0)
    return {"nfe": int(result.nfe[0]), "expected_nfe": int(sampler.expected_nfe), "first_call_seconds": round(times[0], 3),
            "wall_seconds": round(min(times[1:]), 3)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    p.add_argument("--repeats", type=int, default=1, help="warm calls per method and length (the fastest is reported)")
    p.add_argument("--frames", nargs="+", type=int, default=FULL_LENGTHS, help="video lengths of the full run")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    st = C.setup(args)
    if st.cached_only:
        print("table4_cost: --cached-only leaves the table as it is (timing needs sampling)")
        return {}
    if args.names:
        names = list(st.scenarios)
    else:
        names = [st.scenarios[0]] if st.quick else [scenario_of_length(F) for F in sorted(set(args.frames))]
    bar = C.progress_bar(len(names) * len(METHODS), "table4_cost")
    rows = []
    try:
        for name in names:
            F = C.load(name).frames
            for v in METHODS:
                rows.append({"frames": F, "scenario": name, "method": v.label, "variant": v.name,
                             **time_one(v, name, st.steps, args.repeats)})
                bar.update(1)
    finally:
        bar.close()
    lines = ["# Table 4: cost per method at equal video length", "",
             f"{st.steps} steps, stride 4, guidance {C.backbone().default_guidance:g}; one video (one key) at a time on "
             f"this machine's CPU; warm: the fastest of {args.repeats} call(s) after the first (compiling) one.", "",
             "| frames | method | NFE | first call (s) | warm (s / video) | NFE / Gen-L-Video | time / Gen-L-Video |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = next(q for q in rows if q["frames"] == r["frames"] and q["variant"] == C.GEN_L_VIDEO.name)
        r["nfe_ratio"] = round(r["nfe"] / ref["nfe"], 3)
        r["time_ratio"] = round(r["wall_seconds"] / ref["wall_seconds"], 3)
        lines.append(f"| {r['frames']} | {r['method']} | {r['nfe']} | {r['first_call_seconds']:.1f} | "
                     f"{r['wall_seconds']:.1f} | {r['nfe_ratio']:.2f}× | {r['time_ratio']:.2f}× |")
    lines.append("\nThe paper's Table 4: SynCoS 55 min against Gen-L-Video's 21 min (2.6×) on CogVideoX-2B, "
                 "4× videos (52 latent frames, N = 11 chunks).")
    payload = {"title": "Table 4: cost per method", "setup": {**st.describe(), "scenarios": names, "seeds": [0],
                                                                "repeats": args.repeats}, "rows": rows}
    C.write_outputs(st.results, "table4_cost", payload, "\n".join(lines))
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
