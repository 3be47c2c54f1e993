"""Chunk-axis sharding on a mesh of 8 simulated CPU devices equals the single-device run."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import jax, jax.numpy as jnp, numpy as np
    from sampler_helpers import draw, gaussian, tiny_net
    from syncos_jax import schedules as S
    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.parallel import make_mesh
    from syncos_jax.samplers import syncos, gen_l_video, fifo

    assert jax.device_count() == 8, jax.devices()
    mesh = make_mesh()
    sch = S.cogvideox_2b(6)
    worst = 0.0
    # Gaussian backbone, N = 9 chunks (not a multiple of 8), CFG pair of 18; latents of order 1.
    prior, cond = gaussian(sch, spread=0.5)
    layout = ChunkLayout(20, 4, 2)
    for build, opts in [(syncos.build, dict(iters=3, t_min=None)), (gen_l_video.build, {{}})]:
        a = draw(build, prior, sch, layout, cond, key=jax.random.key(0), **opts).latents
        b = draw(build, prior, sch, layout, cond, key=jax.random.key(0), mesh=mesh, **opts).latents
        worst = max(worst, float(jnp.abs(a - b).max()))
    # A tiny random nnx denoiser.
    den, tcond = tiny_net(frames=4)
    layout = ChunkLayout(18, 4, 2)
    a = draw(syncos.build, den, sch, layout, tcond, key=jax.random.key(1), iters=3, frame_shape=(2, 2, 2)).latents
    b = draw(syncos.build, den, sch, layout, tcond, key=jax.random.key(1), iters=3, frame_shape=(2, 2, 2), mesh=mesh).latents
    worst = max(worst, float(jnp.abs(a - b).max()))
    # FIFO: windows on the mesh.
    a = draw(fifo.build, prior, sch, ChunkLayout(8, 4, 1), cond, key=jax.random.key(2), num_partitions=2).latents
    b = draw(fifo.build, prior, sch, ChunkLayout(8, 4, 1), cond, key=jax.random.key(2), num_partitions=2, mesh=mesh).latents
    worst = max(worst, float(jnp.abs(a - b).max()))
    # progress on a sharded program (an unordered callback; ordered effects need one device): every step once
    seen = []
    draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), iters=2, mesh=mesh, progress=seen.append)
    jax.effects_barrier()
    print("PROGRESS", sorted(seen) == list(range(1, sch.num_steps + 1)), seen)
    print("MAXDIFF", worst)
    print("SCALE", float(jnp.abs(a).max()))
    """
)


def test_eight_device_mesh_equals_single_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=tests)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MAXDIFF")][-1]
    assert float(line.split()[1]) <= 1e-5, line
    assert [ln for ln in proc.stdout.splitlines() if ln.startswith("PROGRESS")][-1].split()[1] == "True", proc.stdout[-500:]


def test_make_mesh_errors():
    from syncos_jax.parallel import make_mesh

    with pytest.raises(ValueError, match="num_devices=0"):
        make_mesh(0)
