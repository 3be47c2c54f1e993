"""Train the toy model with its cosine schedule fitted into a wall-clock budget on this machine.

    python experiments/train_toy_timed.py --config experiments/configs/toy_gpu.yaml --minutes 4 \
        --workers 14 --workdir RUN --export RUN/ema.safetensors

The number of steps a budget buys depends on the machine (a CPU, an accelerator, how many workers
render the batches). This script measures it instead of guessing: a calibration run of the config
(in ``WORKDIR/calibration``, ``--calibrate`` steps of the same batches and workers) gives the steps
per second after the compile; then ``train.total_steps = rate × minutes × --fill`` is written with
the rest of the config to ``WORKDIR/config.yaml``, and :mod:`train_toy` trains it in ``WORKDIR``
(``run.max_minutes`` = the budget plus 10 % plus twice the calibration's first step, a guard that stops, checkpoints and exports if the
rate was over-estimated). ``WORKDIR/timed.json`` records the measured rate and the chosen steps.

A rerun of the same command with a complete ``WORKDIR/config.yaml`` skips the calibration and
resumes the run (``train_toy``'s checkpoints).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_toy  # noqa: E402


def steps_per_second(loss_csv: str, skip_fraction: float = 0.3) -> tuple[float, float]:
    """``(steps per second, seconds of the first step)`` from a ``loss.csv`` (columns step, loss,
    seconds). The rate ignores the first ``skip_fraction`` of its rows (the compile and the
    workers' start); the first step's seconds are mostly the compile.

    Raises:
      ValueError: if the file has fewer than 10 rows to measure on.
    """
    with open(loss_csv) as f:
        rows = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader(f)]
    if len(rows) < 10:
        raise ValueError(f"{loss_csv}: {len(rows)} steps, too few to measure a rate (need >= 10); "
                         "give the calibration more steps")
    (s0, t0), (s1, t1) = rows[int(skip_fraction * len(rows))], rows[-1]
    if t1 <= t0:
        raise ValueError(f"{loss_csv}: the seconds column does not increase ({t0} -> {t1})")
    return (s1 - s0) / (t1 - t0), rows[0][1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a train_toy YAML config (its total_steps is replaced)")
    ap.add_argument("--minutes", type=float, required=True, help="training wall time to fit the schedule into")
    ap.add_argument("--calibrate", type=int, default=300, help="steps of the calibration run (default 300)")
    ap.add_argument("--fill", type=float, default=0.95, help="fraction of the budget the schedule is sized for")
    ap.add_argument("--workers", type=int, default=0, help="batch-rendering processes (train_toy --workers)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--export", required=True, help="where the EMA weights are written")
    args = ap.parse_args(argv)
    for name in ("minutes", "fill"):
        if not getattr(args, name) > 0:
            print(f"error: --{name} must be > 0, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.calibrate < 10:
        print(f"error: --calibrate must be >= 10 steps, got {args.calibrate}", file=sys.stderr)
        return 2
    try:
        train_toy.load_config(args.config)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    resolved = os.path.join(args.workdir, "config.yaml")
    common = ["--workers", str(args.workers)]
    if not os.path.exists(resolved):
        with open(args.config) as f:
            raw = yaml.safe_load(f)
        cal_dir = os.path.join(args.workdir, "calibration")
        shutil.rmtree(cal_dir, ignore_errors=True)
        os.makedirs(cal_dir)
        # the schedule's length changes no step's cost, so a short schedule measures the long one's rate
        cal = {**raw, "train": {**raw["train"], "total_steps": args.calibrate, "warmup_steps": 1},
               "run": {**(raw.get("run") or {}), "checkpoint_every": 10**7, "max_minutes": None}}
        cal_config = os.path.join(cal_dir, "config.yaml")
        with open(cal_config, "w") as f:
            yaml.safe_dump(cal, f, sort_keys=False)
        rc = train_toy.main(["--config", cal_config, "--workdir", cal_dir,
                             "--export", os.path.join(cal_dir, "ema.safetensors"), *common])
        if rc:
            return rc
        rate, first = steps_per_second(os.path.join(cal_dir, "loss.csv"))
        steps = max(int(rate * 60 * args.minutes * args.fill), raw["train"].get("warmup_steps", 0) + 1)
        # the guard counts the compile too (train_toy's clock starts before the first step)
        run_cfg = {**(raw.get("run") or {}), "max_minutes": round(args.minutes * 1.1 + 2 * first / 60, 3)}
        with open(resolved, "w") as f:
            f.write(f"# {os.path.basename(args.config)} with total_steps fitted to {args.minutes} training minutes "
                    f"at the measured {rate:.2f} steps/s (experiments/train_toy_timed.py)\n")
            yaml.safe_dump({**raw, "train": {**raw["train"], "total_steps": steps}, "run": run_cfg}, f, sort_keys=False)
        with open(os.path.join(args.workdir, "timed.json"), "w") as f:
            json.dump({"config": train_toy.repo_relative(args.config), "minutes": args.minutes, "fill": args.fill,
                       "workers": args.workers, "calibration_steps": args.calibrate,
                       "steps_per_second": round(rate, 3), "first_step_seconds": round(first, 1),
                       "total_steps": steps}, f, indent=2)
        shutil.rmtree(os.path.join(cal_dir, "checkpoints"), ignore_errors=True)
        print(f"calibrated: {rate:.2f} steps/s -> total_steps {steps} for {args.minutes} minutes", flush=True)
    return train_toy.main(["--config", resolved, "--workdir", args.workdir, "--export", args.export, *common])


if __name__ == "__main__":
    sys.exit(main())
