"""Peak memory of the streaming CogVideoX VAE decoder: 13 vs 52 latent frames (issue 16: within 1.3x).

    python benchmarks/bench_vae_memory.py [--frames 13 52 --latent 16 --keep]

A tiny VAE with the CogVideoX structure (4 blocks: 8x spatial, 4x temporal; channels 16-64,
random weights) decodes ``[F, 16, 16, 16]`` latents into ``[F', 128, 128, 3]`` frames with
:func:`syncos_jax.backbones.cogvideox_vae.iter_decode`; the frames of each batch are consumed (a
checksum) and dropped, as a video writer would. Each case runs in a fresh subprocess:

1. import, build the model, make the latents, and warm up: decode 5 latent frames, which compiles
   both step programs (the first batch of 3 frames and the batches of 2) and runs each once;
2. ``malloc_trim``, then the **baseline** = current RSS (``VmRSS``), and the high-water mark is
   reset (``/proc/self/clear_refs`` ← 5);
3. the decode of ``F`` latent frames; **peak** = ``VmHWM`` afterwards.

``peak − baseline`` is the memory the decode of the whole video needs beyond a process that has
done everything else (compiled, decoded one batch of each shape); it is what would grow with the
video's length if anything were held across batches. Also printed: the process's absolute peak
(``ru_maxrss``, compile included) and, on a GPU, the device's ``peak_bytes_in_use``. ``--keep``
measures :func:`decode` instead (all frames kept in one array: that part grows with the video, by
design).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time

CONFIG = dict(block_out_channels=[16, 32, 32, 64], latent_channels=16, layers_per_block=1, norm_num_groups=8,
              temporal_compression_ratio=4, down_block_types=["CogVideoXDownBlock3D"] * 4,
              up_block_types=["CogVideoXUpBlock3D"] * 4)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_case(frames: int, latent: int, keep: bool) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from syncos_jax.backbones import cogvideox_vae as V

    cfg = V.CogVideoXVAEConfig.from_hf_dict(CONFIG)
    vae = V.CogVideoXVAE(cfg, rngs=nnx.Rngs(0))
    z = np.random.default_rng(0).standard_normal((frames, latent, latent, cfg.latent_channels), np.float32)
    for _ in V.iter_decode(vae, z[:5]):  # compiles and runs the 3-frame and the 2-frame steps
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    baseline = _status_kib("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    if keep:
        out = V.decode(vae, z)
        n_out, checksum, kept = out.shape[0], float(out.sum()), out.nbytes
    else:
        n_out, checksum, kept = 0, 0.0, 0
        for part in V.iter_decode(vae, z):
            n_out += part.shape[0]
            checksum += float(part.sum())
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)() or {}
    return {"frames": frames, "frames_out": n_out, "frame_shape": [latent * cfg.spatial_scale] * 2, "seconds": seconds,
            "baseline_mib": baseline / 1024, "peak_mib": peak / 1024, "decode_mib": (peak - baseline) / 1024,
            "peak_reset": reset, "process_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "kept_mib": kept / 2**20, "device_peak_mib": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
            "checksum": checksum, "device": str(jax.devices()[0])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[13, 52], help="latent frame counts, one subprocess each")
    p.add_argument("--latent", type=int, default=16, help="latent height = width (frames are 8x that)")
    p.add_argument("--keep", action="store_true", help="measure decode() (all frames kept) instead of iter_decode()")
    p.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)  # internal: run one case here
    args = p.parse_args(argv)
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.latent, args.keep)))
        return 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = []
    for f in args.frames:
        cmd = [sys.executable, os.path.abspath(__file__), "--case", str(f), "--latent", str(args.latent)]
        cmd += ["--keep"] if args.keep else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root,
                              env={**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")})
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        dev = f", device peak {r['device_peak_mib']:.1f} MiB" if r["device_peak_mib"] else ""
        print(f"{r['frames']:3d} latent frames -> {r['frames_out']:3d} frames of {r['frame_shape'][0]}x{r['frame_shape'][1]} "
              f"({'decode, frames kept' if args.keep else 'iter_decode, frames streamed'}) in {r['seconds']:.1f} s: "
              f"decode peak {r['decode_mib']:.1f} MiB above a baseline of {r['baseline_mib']:.0f} MiB "
              f"(process peak {r['process_peak_mib']:.0f} MiB{dev}){'' if r['peak_reset'] else ' [peak not reset]'}")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        ratio = b["decode_mib"] / max(a["decode_mib"], 1e-9)
        print(f"ratio {b['frames']} vs {a['frames']} latent frames: decode peak {ratio:.2f}x, "
              f"process peak {b['process_peak_mib'] / a['process_peak_mib']:.2f}x"
              + (f", device peak {b['device_peak_mib'] / a['device_peak_mib']:.2f}x" if a["device_peak_mib"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
