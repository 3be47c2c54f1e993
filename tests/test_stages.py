"""SynCoS's stages and the backbone at the edge, each tested alone against a closed form (Gaussian prior)."""

import jax
import jax.numpy as jnp
import numpy as np
from sampler_helpers import gaussian, small_schedule

from syncos_jax import schedules as S
from syncos_jax.chunking import ChunkLayout, assign_prompts
from syncos_jax.samplers import make_predict, syncos

FS = (2, 2, 1)


def _setup(guidance=1.0):
    sch = small_schedule(6)
    prior, cond = gaussian(sch, frame_shape=FS, num_prompts=2)
    defn, params = prior.split()
    return sch, prior, cond, make_predict(defn, params, sch, cond, guidance)


def test_predict_is_the_exact_posterior_and_guidance_is_the_cfg_combination():
    sch, prior, cond, predict = _setup()
    x = jax.random.normal(jax.random.key(0), (3, 4) + FS)
    t = jnp.full((3,), sch.timesteps[1])
    ids = jnp.array([0, 1, 1])
    x0, eps = predict(x, t, ids)
    ref_x0, ref_eps = prior.posterior(x, t, ids)
    np.testing.assert_allclose(x0, ref_x0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eps, ref_eps, rtol=1e-5, atol=1e-5)
    _, _, _, guided = _setup(guidance=3.0)
    g0, _ = guided(x, t, ids)
    u0, _ = prior.posterior(x, t, jnp.full((3,), prior.null_id))
    np.testing.assert_allclose(g0, u0 + 3.0 * (ref_x0 - u0), rtol=1e-4, atol=1e-4)  # x̂_0 is linear in the output


def test_codenoise_fuses_the_per_chunk_posterior_means():
    sch, prior, cond, predict = _setup()
    layout = ChunkLayout(10, 4, 2)
    x_t = jax.random.normal(jax.random.key(1), (10,) + FS)
    t = sch.timesteps[2]
    ids = assign_prompts(layout, cond.segments(10))
    X0 = syncos.codenoise(predict, layout, ids, x_t, t, 2)
    total, count = np.zeros((10,) + FS), np.zeros(10)
    for i, start in enumerate(layout.starts):  # a plain loop over chunks, float64
        m, _ = prior.posterior(x_t[None, start:start + 4], jnp.full((1,), t), jnp.array([ids[i]]))
        total[start:start + 4] += np.asarray(m[0], np.float64)
        count[start:start + 4] += 1
    np.testing.assert_allclose(X0, total / count[:, None, None, None], rtol=1e-5, atol=1e-5)


def test_renoise_is_the_ddim_step_and_the_last_step_returns_x0():
    sch, *_ = _setup()
    cfg = syncos.make_config()
    X0, E = jax.random.normal(jax.random.key(2), (2, 6) + FS)
    for k in range(sch.num_steps - 1):
        np.testing.assert_allclose(syncos.renoise(sch, cfg, X0, E, k, jax.random.key(0)),
                                   sch.alphas[k + 1] * X0 + sch.sigmas[k + 1] * E, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(syncos.renoise(sch, cfg, X0, E, sch.num_steps - 1, jax.random.key(0)), X0)
    # eta_above_t_min: DDIM's η only where t > t_min (a stochastic step there, the plain one below)
    cfg = syncos.make_config(t_min=500, eta_above_t_min=1.0)
    high = [k for k in range(sch.num_steps - 1) if sch.timesteps[k] > 500]
    low = [k for k in range(sch.num_steps - 1) if sch.timesteps[k] <= 500]
    assert high and low
    plain = lambda k: sch.alphas[k + 1] * X0 + sch.sigmas[k + 1] * E  # noqa: E731
    assert not np.allclose(syncos.renoise(sch, cfg, X0, E, high[0], jax.random.key(0)), plain(high[0]))
    np.testing.assert_allclose(syncos.renoise(sch, cfg, X0, E, low[0], jax.random.key(0)), plain(low[0]), rtol=1e-6, atol=1e-6)


def test_refine_with_a_zero_learning_rate_keeps_x0_and_runs_at_the_grounded_time():
    sch, prior, cond, predict = _setup()
    layout = ChunkLayout(10, 4, 2)
    ids = assign_prompts(layout, cond.segments(10))
    X0, E = jax.random.normal(jax.random.key(3), (2, 10) + FS)
    t = sch.timesteps[0]
    Y, norms, times = syncos.refine(predict, sch, layout, syncos.make_config(lr=0.0, iters=3), ids, t, X0, E,
                                    jax.random.key(4), 0)
    np.testing.assert_array_equal(Y, X0)
    assert np.all(np.asarray(norms) > 0)
    np.testing.assert_array_equal(times, np.full(3, float(t), np.float32))
    # one SGD iteration over every chunk moves Y by exactly −lr·(fused CSD gradient)
    cfg = syncos.make_config(lr=0.1, iters=1, optimizer="sgd", batch_chunks=layout.num_chunks)
    Y1, norm1, _ = syncos.refine(predict, sch, layout, cfg, ids, t, X0, E, jax.random.key(4), 0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(Y1 - X0)), 0.1 * float(norm1[0]), rtol=1e-5)


def test_eps_from_x0_inverts_the_forward_process():
    x0, eps = jax.random.normal(jax.random.key(5), (2, 3, 4) + FS)
    a, s = jnp.array([0.3, 0.6, 0.9]), jnp.array([0.95, 0.8, 0.43])
    x_t = S.append_dims(a, x0.ndim) * x0 + S.append_dims(s, x0.ndim) * eps
    np.testing.assert_allclose(S.eps_from_x0(x_t, x0, a, s), eps, rtol=1e-5, atol=1e-5)
