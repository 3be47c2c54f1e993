"""Table 4 in miniature: NFE and wall time per method at equal video length.

From Table 1's cached runs (run it first): per method and video length, the NFE (the sampler's
own count, equal to its closed form ``expected_nfe``) and the wall time per video of the fastest
batch of that length, which is a warm (already compiled) one wherever the suite holds two
scenarios of the same shape. Ratios are against Gen-L-Video. Writes ``table4_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import common as C
import table1_baselines

METHODS = table1_baselines.VARIANTS


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    st = C.setup(p.parse_args(argv))
    recs = C.collect(st, METHODS, "table4")  # cached by Table 1: samples only what is missing
    rows = {}
    for v in METHODS:
        by_len = defaultdict(list)
        for r in recs[v.name]:
            by_len[r["metrics"]["frames"]].append(r)
        for F, rs in sorted(by_len.items()):
            rows[(F, v.name)] = {"frames": F, "method": v.label, "nfe": float(sum(r["nfe"] for r in rs) / len(rs)),
                                 "wall_seconds": min(r["wall_seconds"] for r in rs), "videos": len(rs)}
    lengths = sorted({F for F, _ in rows})
    lines = ["# Table 4: cost per method at equal video length", "",
             f"{st.steps} steps, stride 4, guidance {C.backbone().default_guidance:g}; wall time per video of the fastest "
             "(warm) batch of each length on this machine's CPU (2 cores), from Table 1's runs.", "",
             "| frames | method | NFE | wall (s / video) | NFE / Gen-L-Video | time / Gen-L-Video |", "|---|---|---|---|---|---|"]
    for F in lengths:
        if (F, C.GEN_L_VIDEO.name) not in rows:
            continue
        ref = rows[(F, C.GEN_L_VIDEO.name)]
        for v in METHODS:
            if (F, v.name) not in rows:  # a partial (--cached-only) run without this length
                continue
            r = rows[(F, v.name)]
            r["nfe_ratio"] = round(r["nfe"] / ref["nfe"], 3)
            r["time_ratio"] = round(r["wall_seconds"] / ref["wall_seconds"], 3)
            lines.append(f"| {F} | {r['method']} | {r['nfe']:.0f} | {r['wall_seconds']:.1f} | {r['nfe_ratio']:.2f}× | {r['time_ratio']:.2f}× |")
    lines.append("\nThe paper's Table 4: SynCoS 55 min against Gen-L-Video's 21 min (2.6×) on CogVideoX-2B, "
                 "4× videos (52 latent frames, N = 11 chunks).")
    payload = {"title": "Table 4: cost per method", "setup": st.describe(), "rows": list(rows.values())}
    C.write_outputs(st.results, "table4_cost", payload, "\n".join(lines))
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
