"""The Denoiser protocol: split form, the NnxDenoiser adapter, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from syncos_jax.backbones.protocol import Denoiser, DenoiserDef, NnxDenoiser, split_denoiser


class TinyDenoiser(nnx.Module):
    """A random linear-in-x toy network: out = x·w + b(t) + c."""

    def __init__(self, channels, *, rngs):
        self.proj = nnx.Linear(channels, channels, rngs=rngs)
        self.time = nnx.Linear(1, channels, rngs=rngs)

    def __call__(self, x, t, cond):
        t = jnp.broadcast_to(t.reshape(t.shape + (1,) * (2 - t.ndim)), x.shape[:2]).astype(jnp.float32)
        return self.proj(x) + self.time(t[..., None] / 1000.0)[:, :, None, None, :] + cond[:, None, None, None, None]


def _adapter(per_frame=False, frames=None):
    return NnxDenoiser(
        TinyDenoiser(3, rngs=nnx.Rngs(0)), prediction_type="epsilon", frames_per_chunk=frames, per_frame_timesteps=per_frame
    )


def test_split_form_is_hashable_and_jit_compiles_once():
    den = _adapter()
    assert isinstance(den, Denoiser)
    defn, params = split_denoiser(den)
    assert hash(defn) == hash(split_denoiser(_adapter())[0])
    traces = []

    @jax.jit
    def run(params, x, t, c):
        traces.append(1)
        return defn.apply(params, x, t, c)

    x = jax.random.normal(jax.random.key(0), (2, 4, 2, 2, 3))
    for _ in range(3):
        out = run(params, x, jnp.array([10, 20]), jnp.ones(2))
    assert len(traces) == 1
    np.testing.assert_allclose(out, den(x, jnp.array([10, 20]), jnp.ones(2)), rtol=1e-6, atol=1e-6)
    assert split_denoiser((defn, params)) == (defn, params)


def test_per_frame_timesteps_rejected_when_unsupported():
    x = jnp.zeros((2, 4, 1, 1, 3))
    with pytest.raises(ValueError, match="does not accept per-frame timesteps"):
        _adapter()(x, jnp.zeros((2, 4)), jnp.ones(2))
    out = _adapter(per_frame=True)(x, jnp.zeros((2, 4)), jnp.ones(2))
    assert out.shape == x.shape


def test_input_checks():
    den = _adapter(frames=4)
    with pytest.raises(ValueError, match="chunks of 4 frames, got x with f=5"):
        den(jnp.zeros((1, 5, 1, 1, 3)), jnp.zeros(1), jnp.ones(1))
    with pytest.raises(ValueError, match=r"x must be \[B, f, H, W, C\]"):
        den(jnp.zeros((4, 1, 1, 3)), jnp.zeros(1), jnp.ones(1))
    with pytest.raises(ValueError, match=r"t must be \[B=1\]"):
        den(jnp.zeros((1, 4, 1, 1, 3)), jnp.zeros(3), jnp.ones(1))
    with pytest.raises(ValueError, match="prediction_type='noise'"):
        DenoiserDef(prediction_type="noise", fn=lambda *a: None)
    with pytest.raises(ValueError, match="exactly one of fn"):
        DenoiserDef(prediction_type="epsilon")
    with pytest.raises(TypeError, match="expected a Denoiser"):
        split_denoiser(object())


def test_function_denoiser():
    defn = DenoiserDef(prediction_type="sample", fn=lambda p, x, t, c: p * x)
    x = jnp.ones((1, 2, 1, 1, 1))
    np.testing.assert_allclose(defn.apply(3.0, x, jnp.zeros(1), None), 3.0 * x)
