#!/usr/bin/env bash
# One accelerator session, run from the repository root (the device tool's `run`):
#
#     bash experiments/device_toy_gpu.sh MINUTES WORKERS SECONDS
#
#  1. the toy recipe scaled to the accelerator (experiments/configs/toy_gpu.yaml), trained from
#     scratch for MINUTES of training (experiments/train_toy_timed.py, WORKERS batch-rendering
#     processes), its EMA judged on issue 13's bar (eval_toy_model.py, 200 captions, default guidance);
#  2. benchmarks/bench_gpu.py at CogVideoX-2B size, bf16, with what is left of SECONDS;
#  3. the same EMA at guidance 2, if time is left.
# Everything lands in $OUT (at most 8 files come back: the run's records are packed in run.tar).
# If the machine's own flax/optax/orbax/chex fail a 3-step smoke run, the wheels in .whl/ (this
# checkout's versions, pure Python, installed without their dependencies: those are on the machine)
# are installed and the smoke run is tried again. .whl/ is git-ignored: the device tool's `run`
# must name it in `carry`. Made with, from the repository root here:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8 \
#     chex==0.1.92 treescope==0.1.10
# It stops at once if JAX there does not see a GPU (a CPU run would spend the session on nothing);
# ALLOW_CPU=1 CONFIG=a-tiny-config.yaml runs it here on the CPU, to test the script.
set -uo pipefail
MIN=${1:-3.5}; WORKERS=${2:-14}; BUDGET=${3:-560}; CONFIG=${CONFIG:-experiments/configs/toy_gpu.yaml}
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
START=$(date +%s); left() { echo $(( BUDGET - ($(date +%s) - START) )); }
export CONFIG PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_MININTERVAL=20 XLA_PYTHON_CLIENT_PREALLOCATE=false
LOG=$OUT/log.txt
exec > >(tee -a "$LOG") 2>&1
nvidia-smi -L
versions() { python3 -c "import sys, jax, flax, optax, orbax.checkpoint as o, chex; print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, 'chex', chex.__version__, jax.devices())"; }
smoke() {
  python3 - <<'PY'
import yaml
import os; raw = yaml.safe_load(open(os.environ["CONFIG"]))
raw["train"].update(total_steps=3, warmup_steps=1)
yaml.safe_dump(raw, open("/tmp/smoke.yaml", "w"))
PY
  rm -rf /tmp/smoke && python3 experiments/train_toy.py --config /tmp/smoke.yaml --workdir /tmp/smoke --export /tmp/smoke/w.safetensors --workers 2
}
versions
[[ ${ALLOW_CPU:-0} == 1 ]] || python3 -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" || { echo "JAX sees no GPU here: stopping"; exit 1; }
if ! smoke; then
  echo "== smoke run failed with the machine's packages; installing the carried wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD; versions; smoke || { echo "smoke run failed again"; exit 1; }
  [[ ${ALLOW_CPU:-0} == 1 ]] || python3 -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" || { echo "JAX sees no GPU here: stopping"; exit 1; }
fi
echo "== [$(left) s left] training"
RUN=/tmp/gpu_run
python3 experiments/train_toy_timed.py --config "$CONFIG" --minutes "$MIN" --workers "$WORKERS" \
  --workdir $RUN --export "$OUT/ema.safetensors"
tar -C $RUN -cf "$OUT/run.tar" --exclude=checkpoints --exclude="*.safetensors" .
echo "== [$(left) s left] eval, default guidance"
(( $(left) > 30 )) && timeout $(left) python3 experiments/eval_toy_model.py --num 200 --batch 200 --weights "$OUT/ema.safetensors" --json "$OUT/eval_200captions.json"
echo "== [$(left) s left] bench_gpu"
(( $(left) > 60 )) && timeout $(( $(left) - 45 )) python3 benchmarks/bench_gpu.py --batches 2 8 --steps 1 --plain-steps 1 --repeats 3 --json "$OUT/bench_gpu.json"
echo "== [$(left) s left] eval, guidance 2"
(( $(left) > 30 )) && timeout $(left) python3 experiments/eval_toy_model.py --num 200 --batch 200 --guidance 2 --weights "$OUT/ema.safetensors" --json "$OUT/eval_200captions_g2.json"
echo "== done, $(left) s left"
exec >&- 2>&-; wait  # let tee finish writing the log
