"""Classifier-free guidance: the formula against an exact oracle, and the number of backbone calls."""

import jax
from sampler_helpers import draw
import jax.numpy as jnp
import numpy as np
import pytest

from syncos_jax import schedules as S
from syncos_jax.backbones.gaussian import GaussianVideoPrior
from syncos_jax.guidance import calls_per_chunk, guided


class CountingDenoiser:
    """Records the batch size of every backbone call."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, t, cond):
        self.batches.append(x.shape[0])
        return x * 2.0 + cond[:, None, None, None, None]


def test_scale_one_makes_a_single_call_per_chunk():
    d = CountingDenoiser()
    x = jnp.ones((5, 3, 2, 2, 1))
    out = guided(d, x, jnp.zeros(5), jnp.arange(5.0), None, 1.0)
    assert d.batches == [5]
    np.testing.assert_allclose(out, d(x, None, jnp.arange(5.0)))
    assert calls_per_chunk(1) == 1 and calls_per_chunk(1.0) == 1 and calls_per_chunk(6.0) == 2


def test_guided_is_one_batched_call_and_the_cfg_formula():
    d = CountingDenoiser()
    x = jax.random.normal(jax.random.key(0), (4, 3, 2, 2, 1))
    cond, uncond = jnp.arange(4.0), jnp.full((4,), -1.0)
    out = guided(d, x, jnp.zeros(4), cond, uncond, 6.0)
    assert d.batches == [8]
    out_u, out_c = 2 * x + uncond[:, None, None, None, None], 2 * x + cond[:, None, None, None, None]
    np.testing.assert_allclose(out, out_u + 6.0 * (out_c - out_u), rtol=1e-6)


def test_guided_under_jit_with_traced_scale():
    d = CountingDenoiser()
    x = jnp.ones((2, 3, 1, 1, 1))
    f = jax.jit(lambda g: guided(d, x, jnp.zeros(2), jnp.ones(2), jnp.zeros(2), g))
    np.testing.assert_allclose(f(3.0), 2 * x + 3.0)


@pytest.mark.parametrize("gamma", [0.0, 2.5, 7.0])
def test_cfg_of_the_exact_gaussian_is_the_exact_posterior_of_the_extrapolated_mean(gamma):
    """CFG is affine in the prior mean: it equals the exact denoiser of mean m_u + γ(m_c − m_u)."""
    schedule = S.cogvideox_2b(10)
    means = jax.random.normal(jax.random.key(1), (2, 2, 2, 1))
    uncond_mean = 0.3 * jnp.ones((2, 2, 1))
    prior = GaussianVideoPrior(means, schedule, uncond_mean=uncond_mean)
    x = jax.random.normal(jax.random.key(2), (2, 4, 2, 2, 1))
    t = jnp.array([979, 339])
    out = guided(prior, x, t, jnp.array([0, 1]), jnp.full((2,), prior.null_id), gamma)
    extrapolated = GaussianVideoPrior(uncond_mean + gamma * (means - uncond_mean), schedule)
    np.testing.assert_allclose(out, extrapolated(x, t, jnp.array([0, 1])), rtol=1e-4, atol=1e-5)


def test_structure_mismatch():
    with pytest.raises(ValueError, match="same structure"):
        guided(CountingDenoiser(), jnp.ones((1, 1, 1, 1, 1)), jnp.zeros(1), {"a": jnp.ones(1)}, jnp.ones(1), 2.0)


def test_dynamic_cfg_matches_the_cogvideox_pipeline_formula_and_drives_the_sampler():
    import math

    from syncos_jax.chunking import ChunkLayout
    from syncos_jax.guidance import dynamic_cfg_scales, step_guidance
    from syncos_jax.samplers import syncos
    from syncos_jax.schedules import cogvideox_2b

    sched = cogvideox_2b(50)
    scales = dynamic_cfg_scales(6.0, sched.timesteps)
    assert len(scales) == 50 and all(1.0 <= g <= 7.0 for g in scales)
    for t, g in zip(np.asarray(sched.timesteps), scales):  # the pipeline's own expression, with t.item()
        assert g == 1 + 6.0 * ((1 - math.cos(math.pi * ((50 - int(t)) / 50) ** 5.0)) / 2)
    assert float(step_guidance(scales, 7)) == np.float32(scales[7]) and step_guidance(3.0, 7) == 3.0
    # a per-step tuple equal to a constant gives the constant-guidance sampler
    from sampler_helpers import gaussian

    s4 = cogvideox_2b(4)
    prior, cond = gaussian(s4, prediction_type="v_prediction")
    lay = ChunkLayout(12, 8, 4)
    a = draw(syncos.build, prior, s4, lay, cond, key=jax.random.key(0), iters=2, guidance_scale=3.0)
    b = draw(syncos.build, prior, s4, lay, cond, key=jax.random.key(0), iters=2, guidance_scale=(3.0,) * 4)
    np.testing.assert_allclose(np.asarray(a.latents), np.asarray(b.latents), atol=1e-5)
    assert int(a.nfe) == int(b.nfe)
    c = draw(syncos.build, prior, s4, lay, cond, key=jax.random.key(0), iters=2, guidance_scale=(3.0, 1.5, 3.0, 3.0))
    assert not np.allclose(np.asarray(a.latents), np.asarray(c.latents), atol=1e-4)
