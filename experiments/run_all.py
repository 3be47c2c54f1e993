"""Runs every experiment of the evidence study, in order, and lists what it wrote.

``python experiments/run_all.py --quick`` is the reduced run (2 scenarios × 2 seeds, 25 steps, three
sweep values; 18 minutes on this 2-core machine from a cold start (no compilation cache) with the first
world's weights, 46 minutes from empty run caches with today's, sharing the cores with another job) into
``experiments/results/quick/``;
``python experiments/run_all.py`` the full one (30 scenarios × 3 seeds, 50 steps) into
``experiments/results/``. Sampled runs are cached per variant (``results/runs/*.jsonl``), so a
killed run resumes where it stopped. ``--only NAME ...`` runs some of the scripts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import importlib  # noqa: E402

import common as C  # noqa: E402

# Run in this order: the identity study and Tables 3 and 4 reuse Table 1's runs, the sweeps reuse SynCoS's.
SCRIPTS = ("table1_baselines", "identity_drift", "table3_stages", "table2_ablations", "mechanism", "sweeps", "table4_cost",
           "gaussian_identity", "discrete_identity")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    p.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), default=None)
    args = p.parse_args(argv)
    flags = C.argv_of(args)
    t0 = time.time()
    for name in args.only or SCRIPTS:
        t = time.time()
        print(f"\n=== {name} ===", flush=True)
        if name in ("gaussian_identity", "discrete_identity"):  # the analytic worlds: no scenarios, their own output flag
            argv_ = (["--quick"] if args.quick else []) + ["--out", args.results or C.results_dir(args.quick)]
        else:
            argv_ = flags
        importlib.import_module(name).main(argv_)
        print(f"=== {name}: {time.time() - t:.0f} s ===", flush=True)
    print(f"\nrun_all: {time.time() - t0:.0f} s in all; results in {os.path.relpath(args.results or C.results_dir(args.quick))}")


if __name__ == "__main__":
    main()
