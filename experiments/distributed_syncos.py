"""SynCoS across processes: one video, its chunk axis sharded over the devices of every process.

Every process (one per host) runs this same script; process 0 writes the video::

    # two CPU processes of 4 devices each on one machine (what tests/test_multiprocess.py runs):
    python experiments/distributed_syncos.py --num-processes 2 --process-id 0 --coordinator localhost:12355 \\
        --local-devices 4 --out /tmp/video.npz &
    python experiments/distributed_syncos.py --num-processes 2 --process-id 1 --coordinator localhost:12355 \\
        --local-devices 4 --out /tmp/video.npz

    # one process per host on a GPU cluster (rank from your launcher; each process owns all its GPUs):
    python experiments/distributed_syncos.py --num-processes 4 --process-id $RANK --coordinator node0:12355
    # TPU pod slices, SLURM, Open MPI: ``--auto``, jax.distributed.initialize() detects everything (under
    # SLURM one process per GPU by default; one per host with --ntasks-per-node=1 --local-device-ids 0,...,7):
    srun --ntasks-per-node=8 --gpus-per-node=8 python experiments/distributed_syncos.py --auto

What it does: :func:`syncos_jax.parallel.initialize_distributed`, a global 1-D mesh over all
``jax.devices()`` (:func:`~syncos_jax.parallel.make_mesh`), SynCoS with ``mesh=`` (every batch of
chunks, and the ``2N`` CFG pair, is split over the mesh's ``data`` axis; fusing the chunks is a
cross-device sum), then :func:`~syncos_jax.parallel.to_host` gathers the video on every process.
Every process builds the same backbone, conditioning and key, so they all enter the compiled
program as the same replicated values; nothing is sent by hand.

The backbone is the analytic :class:`~syncos_jax.backbones.gaussian.GaussianVideoPrior` (exact,
no weights, fast to compile), so the script is a check of the distribution machinery, not of a
model: :func:`sample_video` with ``mesh=None`` on one device is the oracle the multi-process
video must equal up to float rounding. The default layout has ``F = 18`` frames in chunks of
``f = 4`` at stride 2: ``N = 8`` chunks, a CFG batch of 16 and stage-2 minibatches of ``B = 8``,
all divisible by 8 devices. Other ``N`` work too (XLA pads uneven shards; the devices beyond the
batch idle), see ``tests/test_parallel.py`` (``N = 9`` on 8 devices).

Writes ``--out`` (``.npz``: ``video [F, H, W, C]`` float32, ``num_devices``, ``num_processes``,
``program_devices``: how many devices the sampling program ran on) from process 0 only; every
process prints one line ``DONE <path> <max |x|> process i/n devices l/d program on k``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The small problem every process (and the single-process oracle) builds. See the module docstring.
DEFAULTS = dict(frames=18, chunk_frames=4, stride=2, steps=6, iters=3, frame_shape=(4, 4, 2), seed=0)


def build_problem(*, frames: int, chunk_frames: int, stride: int, steps: int, iters: int, frame_shape, mesh=None):
    """Returns ``(sampler, params)``: SynCoS (stage 2 at every step, ``B = N``, CFG γ = 6) on a
    two-prompt Gaussian prior, bound to ``mesh`` (``None``: one device)."""
    from syncos_jax import schedules as S
    from syncos_jax.backbones.gaussian import GaussianVideoPrior
    from syncos_jax.backbones.protocol import split_denoiser
    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.prompts import Conditioning
    from syncos_jax.samplers import syncos

    schedule = S.cogvideox_2b(steps)
    # Fixed numbers, not a draw: the prior is data here, and an eager draw costs a compile per process.
    means = 0.5 * np.cos(np.arange(2 * int(np.prod(frame_shape)), dtype=np.float32)).reshape((2,) + tuple(frame_shape))
    prior = GaussianVideoPrior(means, schedule)
    cond = Conditioning(prompts=np.arange(2, dtype=np.int32), uncond=np.array([prior.null_id], np.int32))
    layout = ChunkLayout(frames, chunk_frames, stride)
    sampler = syncos.build(prior, schedule, layout, cond, mesh=mesh, iters=iters, t_min=None,
                           batch_chunks=layout.num_chunks, check_finite=True)
    return sampler, split_denoiser(prior)[1]


def sample_latents(mesh=None, *, seed: int = DEFAULTS["seed"], **settings):
    """Returns the final latents ``[F, H, W, C]`` (a ``jax.Array``; over ``mesh``'s devices when
    given) of the problem :func:`build_problem` builds from ``DEFAULTS`` updated by ``settings``,
    sampled with key ``seed`` and start noise ``X_T`` drawn by numpy from ``seed``."""
    import jax

    from syncos_jax.samplers import sample

    settings = {**{k: v for k, v in DEFAULTS.items() if k != "seed"}, **settings}
    sampler, params = build_problem(**settings, mesh=mesh)
    # X_T explicit (numpy, the same in every process): drawing it from the key is an eager op outside
    # the sharded program that costs every process a ~2 s compile. The key still drives everything
    # inside it (stage-2 baseline noise and minibatches), drawn under the mesh's sharding.
    shape = (settings["frames"],) + tuple(settings["frame_shape"])
    x_T = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return sample(sampler, params, jax.random.key(seed), initial_noise=x_T).latents


def sample_video(mesh=None, *, seed: int = DEFAULTS["seed"], **settings) -> np.ndarray:
    """Returns :func:`sample_latents` as numpy ``[F, H, W, C]`` float32, on every process (a collective
    when the latents span several processes: every process must call it)."""
    from syncos_jax.parallel import to_host

    return to_host(sample_latents(mesh, seed=seed, **settings))


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Returns the command line's arguments (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coordinator", help="HOST:PORT of process 0, reachable from every process")
    p.add_argument("--num-processes", type=int, default=1, help="processes in the job, one per host (default 1)")
    p.add_argument("--process-id", type=int, default=0, help="this process's rank in [0, num-processes)")
    p.add_argument("--auto", action="store_true",
                   help="let jax.distributed.initialize() detect coordinator, count and rank (TPU pods, SLURM, Open MPI)")
    p.add_argument("--local-device-ids", type=lambda v: [int(i) for i in v.split(",")],
                   help="comma-separated accelerators this process owns, e.g. 0,1,2,3 (default: all it sees; "
                        "under SLURM auto-detection JAX's default is one GPU per process, SLURM_LOCALID)")
    p.add_argument("--local-devices", type=int,
                   help="run on the CPU with this many devices in this process (testing without accelerators)")
    p.add_argument("--frames", type=int, default=DEFAULTS["frames"], help="video frames F (default %(default)s: N = 8 chunks)")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="grid steps (default %(default)s)")
    p.add_argument("--iters", type=int, default=DEFAULTS["iters"], help="stage-2 iterations per step (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="sampling key (default %(default)s)")
    p.add_argument("--out", default="distributed_syncos.npz", help="the .npz process 0 writes")
    args = p.parse_args(argv)
    if args.num_processes < 1:
        p.error(f"--num-processes={args.num_processes} must be at least 1")
    if not 0 <= args.process_id < args.num_processes:
        p.error(f"--process-id={args.process_id} must be between 0 and --num-processes - 1 = {args.num_processes - 1}")
    if args.num_processes > 1 and args.coordinator is None and not args.auto:
        p.error(f"--num-processes={args.num_processes} needs --coordinator HOST:PORT (or --auto)")
    return args


def main(argv: Optional[list] = None) -> str:
    """Runs one process of the job; returns the path written (by process 0; the others return it too)."""
    args = parse_args(argv)
    from syncos_jax import parallel

    if args.local_devices is not None:  # before anything initialises the backends
        parallel.set_cpu_devices(args.local_devices)
    if args.auto:
        parallel.initialize_distributed(local_device_ids=args.local_device_ids)
    elif args.num_processes > 1:
        parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                                        local_device_ids=args.local_device_ids)

    import jax

    mesh = parallel.make_mesh()
    latents = sample_latents(mesh, seed=args.seed, frames=args.frames, steps=args.steps, iters=args.iters)
    program_devices = len(latents.sharding.device_set)  # the devices the compiled program ran on
    video = parallel.to_host(latents)
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        np.savez(args.out, video=video, num_devices=jax.device_count(), num_processes=jax.process_count(),
                 program_devices=program_devices)
    print(f"DONE {args.out} {float(np.abs(video).max()):.6g} process {jax.process_index()}/{jax.process_count()} "
          f"devices {jax.local_device_count()}/{jax.device_count()} program on {program_devices}", flush=True)
    return args.out


if __name__ == "__main__":
    main()
