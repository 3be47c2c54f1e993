"""Train the toy model with its cosine schedule fitted into a wall-clock budget on this machine.

    python experiments/train_toy_timed.py --config experiments/configs/toy_gpu.yaml --minutes 4 \
        --workers 14 --workdir RUN --export RUN/ema.safetensors

The number of steps a budget buys depends on the machine (a CPU, an accelerator, how many workers
render the batches). This script measures it instead of guessing: a calibration run of the config
(in ``WORKDIR/calibration``, ``--calibrate`` steps of the same batches and workers) gives the steps
per second after the compile; then ``train.total_steps = rate × minutes × --fill`` is written with
the rest of the config to ``WORKDIR/config.yaml``, and :mod:`train_toy` trains it in ``WORKDIR``
(``run.max_minutes`` = the budget plus 10 % plus twice the calibration's first step: a guard that
stops, checkpoints and exports if the rate was over-estimated). ``WORKDIR/timed.json`` records the measured rate and the chosen steps.

A rerun of the same command (``--workers`` may differ) skips the calibration and resumes the run
from ``train_toy``'s checkpoints; other settings are refused, naming them. A run the guard stopped
stays stopped on a rerun (its spent time is already over ``run.max_minutes``): edit that field in
``WORKDIR/config.yaml`` to give it more. ``--init WEIGHTS`` is passed to both runs (a fine-tune
fitted to the budget).
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


def steps_per_second(loss_csv: str, skip: int) -> tuple[float, float]:
    """``(steps per second, seconds of the first step)`` from a ``loss.csv`` (columns step, loss,
    seconds). The rate is measured after the first ``skip`` rows (the compile, and the batches the
    workers rendered ahead while it ran); the first step's seconds are mostly the compile.

    Raises:
      ValueError: if fewer than 10 rows are left to measure on, or the seconds do not increase.
    """
    with open(loss_csv) as f:
        rows = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader(f)]
    if len(rows) - skip < 10:
        raise ValueError(f"{loss_csv}: {len(rows)} steps, too few to measure a rate after skipping {skip} "
                         "(need 10 more); give the calibration more steps")
    (s0, t0), (s1, t1) = rows[skip], rows[-1]
    if t1 <= t0:
        raise ValueError(f"{loss_csv}: the seconds column does not increase ({t0} -> {t1})")
    return (s1 - s0) / (t1 - t0), rows[0][1]


def _write_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a train_toy YAML config (its total_steps is replaced)")
    ap.add_argument("--minutes", type=float, required=True, help="training wall time to fit the schedule into")
    ap.add_argument("--calibrate", type=int, default=300, help="steps of the calibration run (default 300)")
    ap.add_argument("--fill", type=float, default=0.95, help="fraction of the budget the schedule is sized for")
    ap.add_argument("--workers", type=int, default=0, help="batch-rendering processes (train_toy --workers)")
    ap.add_argument("--init", default=None, metavar="WEIGHTS", help="start from these toy weights (train_toy --init)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--export", required=True, help="where the EMA weights are written")
    args = ap.parse_args(argv)
    for name in ("minutes", "fill"):
        if not getattr(args, name) > 0:
            print(f"error: --{name} must be > 0, got {getattr(args, name)}", file=sys.stderr)
            return 2
    skip = max(int(0.3 * args.calibrate), 2 * args.workers + 1)
    if args.calibrate < skip + 10:
        print(f"error: --calibrate must be >= {skip + 10} steps (10 measured after the {skip} skipped), "
              f"got {args.calibrate}", file=sys.stderr)
        return 2
    try:
        _, _, train_cfg, _ = train_toy.load_config(args.config)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    resolved = os.path.join(args.workdir, "config.yaml")
    timed_path = os.path.join(args.workdir, "timed.json")
    request = {"config": train_toy.repo_relative(args.config), "minutes": args.minutes, "fill": args.fill,
               "workers": args.workers, "calibration_steps": args.calibrate}
    common = ["--workers", str(args.workers)] + (["--init", args.init] if args.init else [])
    if os.path.exists(resolved) and os.path.exists(timed_path):
        with open(timed_path) as f:
            timed = json.load(f)
        # --workers changes no batch, so a resume may render with more or fewer of them
        changed = [k for k in request if k != "workers" and timed.get(k) != request[k]]
        if changed:
            print(f"error: {args.workdir} holds a timed run of other " + ", ".join(
                f"{k} ({timed.get(k)!r}, now {request[k]!r})" for k in changed) + "; use another --workdir",
                file=sys.stderr)
            return 2
        print(f"resuming the timed run in {args.workdir} ({timed['total_steps']} steps)", flush=True)
    else:
        with open(args.config) as f:
            raw = yaml.safe_load(f)
        cal_dir = os.path.join(args.workdir, "calibration")
        shutil.rmtree(cal_dir, ignore_errors=True)
        os.makedirs(cal_dir)
        # the schedule's length changes no step's cost, so a short schedule measures the long one's rate
        cal = {**raw, "train": {**(raw.get("train") or {}), "total_steps": args.calibrate, "warmup_steps": 1},
               "run": {**(raw.get("run") or {}), "checkpoint_every": 10**7, "max_minutes": None}}
        cal_config = os.path.join(cal_dir, "config.yaml")
        with open(cal_config, "w") as f:
            yaml.safe_dump(cal, f, sort_keys=False)
        rc = train_toy.main(["--config", cal_config, "--workdir", cal_dir,
                             "--export", os.path.join(cal_dir, "ema.safetensors"), *common])
        if rc:
            return rc
        rate, first = steps_per_second(os.path.join(cal_dir, "loss.csv"), skip)
        steps = int(rate * 60 * args.minutes * args.fill)
        if steps <= train_cfg.warmup_steps:
            print(f"warning: {args.minutes} minutes at {rate:.2f} steps/s buy {steps} steps, not more than the "
                  f"{train_cfg.warmup_steps} warm-up steps; training {train_cfg.warmup_steps + 1}", file=sys.stderr)
            steps = train_cfg.warmup_steps + 1
        # the guard counts the compile too (train_toy's clock starts before the first step)
        run_cfg = {**(raw.get("run") or {}), "max_minutes": round(args.minutes * 1.1 + 2 * first / 60, 3)}
        with open(timed_path, "w") as f:  # first: a config.yaml without it is recalibrated
            json.dump({**request, "steps_per_second": round(rate, 3), "first_step_seconds": round(first, 1),
                       "total_steps": steps}, f, indent=2)
        _write_atomically(resolved, f"# {os.path.basename(args.config)} with total_steps fitted to {args.minutes} "
                          f"training minutes at the measured {rate:.2f} steps/s (experiments/train_toy_timed.py)\n"
                          + yaml.safe_dump({**raw, "train": {**(raw.get("train") or {}), "total_steps": steps},
                                            "run": run_cfg}, sort_keys=False))
        shutil.rmtree(os.path.join(cal_dir, "checkpoints"), ignore_errors=True)
        print(f"calibrated: {rate:.2f} steps/s -> total_steps {steps} for {args.minutes} minutes", flush=True)
    return train_toy.main(["--config", resolved, "--workdir", args.workdir, "--export", args.export, *common])


if __name__ == "__main__":
    sys.exit(main())
