"""Samplers against closed forms: deterministic samplers are affine in their noise (mean f(0), cov J·Jᵀ),
and FIFO's marginals against the Gaussian prior. These pin the key handling and the noise plumbing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_helpers import gaussian, draw

from syncos_jax import schedules as S
from syncos_jax.backbones.protocol import DenoiserDef
from syncos_jax.chunking import ChunkLayout
from syncos_jax.prompts import Conditioning
from syncos_jax.samplers import ddim, fifo, gen_l_video

FS = (1, 1, 1)
NSAMPLES = 512


def _assert_law(samples, mean, cov):
    """Every mean and covariance entry within 3 standard errors (Gaussian sampling theory)."""
    n = samples.shape[0]
    d = np.diag(cov)
    assert np.all(np.abs(samples.mean(0) - mean) <= 3 * np.sqrt(d / n) + 1e-6), (samples.mean(0), mean)
    resid = samples - mean
    emp = resid.T @ resid / n
    se = np.sqrt((np.outer(d, d) + cov**2) / n)
    assert np.all(np.abs(emp - cov) <= 3 * se + 1e-6), np.max(np.abs(emp - cov) / (se + 1e-12))


def _closed_form(run, dim):
    zero = jnp.zeros((dim,))
    mean = np.asarray(run(zero), np.float64)
    J = np.asarray(jax.jacfwd(run)(zero), np.float64)
    return mean, J @ J.T


@pytest.mark.parametrize("name", ["ddim", "gen_l_video"])
def test_deterministic_samplers_match_their_affine_law(name):
    sch = S.cogvideox_2b(10)
    prior, cond = gaussian(sch, frame_shape=FS, num_prompts=2, spread=1.0, rho=0.8)
    F = 10
    layout = ChunkLayout(F, 4, 2)
    sampler = {"ddim": ddim, "gen_l_video": gen_l_video}[name]
    opts = dict(guidance_scale=1.0)

    def run(noise):
        x_T = noise.reshape((F,) + FS)
        return draw(sampler.build, prior, sch, layout, cond, key=jax.random.key(0), initial_noise=x_T, **opts).latents.reshape(-1)

    mean, cov = _closed_form(run, F)
    keys = jax.random.split(jax.random.key(42), NSAMPLES)
    samples = np.asarray(draw(sampler.build, prior, sch, layout, cond, key=keys, **opts).latents, np.float64).reshape(NSAMPLES, -1)
    _assert_law(samples, mean, cov)


def test_fifo_eta0_matches_its_affine_law():
    sch = S.stable_diffusion(10)
    prior, cond = gaussian(sch, frame_shape=FS, num_prompts=1, spread=1.0, rho=0.8)
    F, f, n = 6, 4, 2
    layout = ChunkLayout(F, f, 1)
    opts = dict(num_partitions=n, eta=0.0, guidance_scale=1.0)
    Q, iters = n * f + f // 2, F + n * f - f
    dims = (f, Q, iters)

    def run(noise):
        base, queue, push = jnp.split(noise, np.cumsum(dims)[:-1])
        return draw(fifo.build, prior, sch, layout, cond, key=jax.random.key(0), base_video_noise=base.reshape((f,) + FS),
                    queue_noise=queue.reshape((Q,) + FS), push_noise=push.reshape((iters,) + FS), **opts).latents.reshape(-1)

    mean, cov = _closed_form(run, sum(dims))
    keys = jax.random.split(jax.random.key(7), NSAMPLES)
    samples = np.asarray(draw(fifo.build, prior, sch, layout, cond, key=keys, **opts).latents, np.float64).reshape(NSAMPLES, -1)
    _assert_law(samples, mean, cov)


def _fifo_marginals(num_partitions):
    # FIFO steps each frame through S = n·f levels with the posterior *mean* (η = 1 drops Var(x0|x_t)),
    # so it under-disperses on coarse queues (≈ 25 % with S = 16 even for independent frames); with
    # f = 8 and n ≥ 16 the levels are fine enough for the 15 % bound.
    sch = S.stable_diffusion(25)
    prior, cond = gaussian(sch, frame_shape=(2, 2, 1), num_prompts=1, spread=1.0, rho=0.5)
    F = 8
    keys = jax.random.split(jax.random.key(3), NSAMPLES)
    out = draw(fifo.build, prior, sch, ChunkLayout(F, 8, 1), cond, key=keys, num_partitions=num_partitions, guidance_scale=1.0)
    x = np.asarray(out.latents, np.float64)  # [n, F, H, W, C]
    prior_mean = np.asarray(prior.prior_mean(jnp.zeros(F, jnp.int32)), np.float64)
    return x, prior_mean, float(prior.temporal_covariance(F)[0, 0])


@pytest.mark.slow  # ~40 s on 2 cores; the default run's budget is 15 min
def test_fifo_marginals_match_the_prior_and_more_partitions_do_not_hurt():
    errs = []
    for n in (16, 32):
        x, m, v = _fifo_marginals(n)
        resid = x - m[None]
        var = resid.var(0)  # per frame and pixel
        se = np.sqrt(var / x.shape[0])
        assert np.all(np.abs(resid.mean(0)) <= 3 * se), np.max(np.abs(resid.mean(0)) / se)
        frame_var = var.reshape(var.shape[0], -1).mean(-1)  # pool the independent pixels
        assert np.all(np.abs(frame_var / v - 1) <= 0.15), (n, frame_var)
        errs.append(np.abs(frame_var / v - 1).mean())
    # Doubling the partitions does not move the marginals further from the prior (beyond sampling noise).
    slack = 2 * np.sqrt(2.0 / (NSAMPLES * 4))
    assert errs[1] <= errs[0] + slack, errs


def test_lookahead_writes_only_the_last_half_of_each_window():
    sch = S.stable_diffusion(10)
    f, n = 4, 2
    calls = []

    def poison(first_half):
        def fn(params, x, t, cond):
            calls.append((tuple(x.shape), np.asarray(t)))
            pos = jnp.arange(x.shape[1])[None, :, None, None, None]
            bad = pos < f // 2 if first_half else pos >= f // 2
            return jnp.where(bad, jnp.nan, 0.0 * x)  # "sample" prediction: x̂_0 = out

        return (DenoiserDef(prediction_type="epsilon", per_frame_timesteps=True, fn=fn), ())

    layout = ChunkLayout(6, f, 1)
    cond = Conditioning(prompts=jnp.zeros((1,)), uncond=None)
    opts = dict(num_partitions=n, eta=0.0, guidance_scale=1.0, frame_shape=FS)
    queue = jax.random.normal(jax.random.key(0), (n * f + f // 2,) + FS)
    state = fifo.FIFOState(queue, jnp.zeros((6,) + FS), jnp.asarray(0), jax.random.key(1), jnp.asarray(0), jnp.full((2,), -1))
    with jax.disable_jit():
        defn, params = poison(first_half=True)
        new, _ = fifo.build(defn, sch, layout, cond, **opts).step(state, params)
    # NaN in the first halves never reaches the queue: those positions are not written back.
    assert np.all(np.isfinite(new.queue))
    shape, t = calls[-1]
    assert shape == (2 * n, f) + FS  # 2n windows with lookahead, one batched call
    assert t.shape == (2 * n, f)  # per-frame timesteps
    tau = np.round(np.linspace(0, 999, n * f))
    np.testing.assert_array_equal(t[0], [tau[0], tau[0], tau[0], tau[1]])  # context slots sit at τ_0
    with jax.disable_jit():
        defn, params = poison(first_half=False)
        new, _ = fifo.build(defn, sch, layout, cond, **opts).step(state, params)
    # NaN in the last halves reaches every non-context slot (each is written by exactly one window);
    # after the shift by one, the context slots 0..f/2-2 keep their old finite values.
    q = np.asarray(new.queue)[:, 0, 0, 0]
    assert np.all(np.isfinite(q[: f // 2 - 1])) and np.all(np.isnan(q[f // 2 - 1 : -1])) and np.isfinite(q[-1])


def test_fifo_needs_per_frame_timesteps_and_even_chunks_for_lookahead():
    sch = S.stable_diffusion(10)
    den = (DenoiserDef(prediction_type="epsilon", per_frame_timesteps=False, fn=lambda p, x, t, c: x), ())
    cond = Conditioning(prompts=jnp.zeros((1,)))
    with pytest.raises(ValueError, match="needs a backbone that accepts per-frame timesteps"):
        draw(fifo.build, den, sch, ChunkLayout(8, 4, 1), cond, key=jax.random.key(0), frame_shape=FS, guidance_scale=1.0)
    den = (DenoiserDef(prediction_type="epsilon", per_frame_timesteps=True, fn=lambda p, x, t, c: 0 * x), ())
    with pytest.raises(ValueError, match="lookahead needs an even chunk length"):
        draw(fifo.build, den, sch, ChunkLayout(8, 3, 1), cond, key=jax.random.key(0), frame_shape=FS, guidance_scale=1.0)
    r = draw(fifo.build, den, sch, ChunkLayout(8, 3, 1), cond, key=jax.random.key(0), frame_shape=FS, guidance_scale=1.0,
                    lookahead=False, num_partitions=2)
    assert r.latents.shape == (8,) + FS


def test_fifo_switches_prompt_at_segment_boundaries():
    sch = S.stable_diffusion(10)
    prior, cond = gaussian(sch, frame_shape=FS, num_prompts=3)
    F, f, n = 12, 4, 2
    r = draw(fifo.build, prior, sch, ChunkLayout(F, f, 1), cond, key=jax.random.key(0), num_partitions=n, diagnostics=("prompt",))
    prompts = np.asarray(r.diagnostics["prompt"])
    warm = n * f - f
    np.testing.assert_array_equal(prompts[:warm], 0)
    np.testing.assert_array_equal(prompts[warm:], np.arange(F) * 3 // F)
