"""Resumable sampling: stop after step k in one process, resume in another, bit-identical latents;
a save killed half-way leaves the previous checkpoint usable."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_helpers import gaussian, tiny_net, draw

from syncos_jax import checkpoint
from syncos_jax import schedules as S
from syncos_jax.chunking import ChunkLayout
from syncos_jax.samplers import run, syncos
from syncos_jax.samplers.fifo import FIFOState
from syncos_jax.samplers.syncos import SynCoSState

TESTS = os.path.dirname(os.path.abspath(__file__))

SETUP = """
import sys
sys.path.insert(0, {tests!r})
import jax, jax.numpy as jnp, numpy as np
from sampler_helpers import tiny_net
from syncos_jax import checkpoint, schedules as S
from syncos_jax.chunking import ChunkLayout
from syncos_jax.samplers import run, syncos
den, cond = tiny_net(frames=4)
params = den.split()[1]
sch = S.cogvideox_2b(8)
sampler = syncos.build(den, sch, ChunkLayout(10, 4, 2), cond, iters=3, t_min=700, frame_shape=(2, 2, 2))
key = jax.random.key(11)
"""

STOP = SETUP + """
state, _ = run(sampler, sampler.init(key), params, stop={k})
checkpoint.save_state({ckpt!r}, state)
"""

RESUME = SETUP + """
state = checkpoint.restore_state({ckpt!r}, like=jax.eval_shape(sampler.init, key))
assert int(state.step) == {k}, state.step
state, _ = run(sampler, state, params)
np.save({out!r}, np.asarray(state.x))
print("NFE", int(state.nfe))
"""


def _python(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow  # 22 s; the CLI's SIGKILL and Ctrl-C resume tests (test_cli_safety.py) cover cross-process resume by default
@pytest.mark.parametrize("k", [3])
def test_resume_in_another_process_is_bit_identical(tmp_path, k):
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "latents.npy")
    _python(textwrap.dedent(STOP.format(tests=TESTS, k=k, ckpt=ckpt)))
    stdout = _python(textwrap.dedent(RESUME.format(tests=TESTS, k=k, ckpt=ckpt, out=out)))
    den, cond = tiny_net(frames=4)
    sch = S.cogvideox_2b(8)
    full = draw(syncos.build, den, sch, ChunkLayout(10, 4, 2), cond, key=jax.random.key(11), iters=3, t_min=700, frame_shape=(2, 2, 2))
    resumed = np.load(out)
    assert np.array_equal(resumed, np.asarray(full.latents))
    assert f"NFE {int(full.nfe)}" in stdout


def test_save_restore_round_trip_in_process(tmp_path):
    sch = S.cogvideox_2b(6)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(8, 4, 2)
    sampler = syncos.build(prior, sch, layout, cond, iters=2)
    params = prior.split()[1]
    keys = jax.random.split(jax.random.key(0), 2)
    state = jax.vmap(sampler.init)(keys)  # a batch of runs
    state, _ = run(sampler, state, params, stop=2)
    checkpoint.save_state(str(tmp_path), state)
    back = checkpoint.restore_state(str(tmp_path), like=state)
    assert type(back) is type(state)
    for a, b in zip(state, back):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert np.array_equal(np.asarray(a), np.asarray(b))
    end_a, _ = run(sampler, state, params)
    end_b, _ = run(sampler, back, params)
    assert np.array_equal(np.asarray(end_a.x), np.asarray(end_b.x))
    # any NamedTuple state, no table of types; restoring into another sampler's state is refused
    other = FIFOState(*(jnp.full((3,), float(i)) for i in range(4)), jnp.arange(2), jnp.full((2,), -1))
    with pytest.raises(ValueError, match="holds a SynCoSState .* not a FIFOState"):
        checkpoint.restore_state(str(tmp_path), like=other)
    wrong = state._replace(x=jnp.zeros(state.x.shape[:1] + (9,) + state.x.shape[2:]))  # another video length
    with pytest.raises(ValueError, match=r"field 'x' is float32\[2, 8, 2, 2, 1\], but the state restored into has float32\[2, 9"):
        checkpoint.restore_state(str(tmp_path), like=wrong)
    other = other._replace(step=jnp.asarray(5), key=jax.random.key(3))
    checkpoint.save_state(str(tmp_path / "fifo"), other)
    back = checkpoint.restore_state(str(tmp_path / "fifo"), like=other)
    assert type(back) is FIFOState and np.array_equal(back.queue, other.queue) and int(back.step) == 5
    assert np.array_equal(jax.random.key_data(back.key), jax.random.key_data(other.key))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        checkpoint.restore_state(str(tmp_path / "missing"), like=None)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.restore_state(str(tmp_path / "empty"), like=None)
    with pytest.raises(TypeError, match="cannot checkpoint"):
        checkpoint.save_state(str(tmp_path / "x"), (1, 2))


KILLED = """
import sys
sys.path.insert(0, {tests!r})
import jax, jax.numpy as jnp
from syncos_jax import checkpoint
from syncos_jax.samplers.syncos import SynCoSState
big = jnp.ones((64, 256, 256, 4), jnp.float32)  # 64 MiB: saves take a while
step = 0
while True:
    step += 1
    st = SynCoSState(big * step, jnp.asarray(step, jnp.int32), jax.random.key(step), jnp.asarray(step, jnp.int32), jnp.full((2,), -1, jnp.int32))
    checkpoint.save_state({ckpt!r}, st, max_to_keep=2)
    print("saved", step, flush=True)
"""


def test_a_killed_save_leaves_the_previous_checkpoint_usable(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED.format(tests=TESTS, ckpt=ckpt))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # wait for two complete saves, then kill during the third
            if line.startswith("saved 2"):
                break
        time.sleep(0.15)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    like = jax.eval_shape(lambda: SynCoSState(jnp.ones((64, 256, 256, 4)), jnp.int32(0), jax.random.key(0), jnp.int32(0),
                                              jnp.full((2,), -1, jnp.int32)))
    state = checkpoint.restore_state(ckpt, like=like)
    step = int(state.step)
    assert step >= 2
    assert np.all(np.asarray(state.x) == step) and int(state.nfe) == step
