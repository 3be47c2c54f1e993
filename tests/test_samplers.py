"""Sampler invariants (ALGORITHM.md §4), determinism, stage-2 behaviour, NFE, errors, compile-once."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_helpers import gaussian, small_schedule, tiny_net, draw

from syncos_jax import schedules as S
from syncos_jax.backbones.protocol import DenoiserDef
from syncos_jax.chunking import ChunkLayout, fuse, take
from syncos_jax.samplers import SAMPLERS, csd_only, ddim, fifo, freenoise, gen_l_video, run, sample, syncos
from syncos_jax.prompts import Conditioning

FS = (2, 2, 1)


def test_one_chunk_and_no_stage2_syncos_equals_gen_l_video_equals_ddim():
    sch = small_schedule(8)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(6, 6, 2)  # one chunk covers the video
    key = jax.random.key(3)
    a = draw(syncos.build, prior, sch, layout, cond, key=key, t_min=1000).latents
    b = draw(gen_l_video.build, prior, sch, layout, cond, key=key).latents
    c = draw(ddim.build, prior, sch, ChunkLayout(6, 3, 1), cond, key=key).latents
    assert np.array_equal(a, b) and np.array_equal(b, c)


@pytest.mark.parametrize("make", ["gaussian", "tiny"])
def test_t_min_at_least_T_is_gen_l_video_bit_for_bit(make):
    sch = small_schedule(8)
    if make == "gaussian":
        den, cond = gaussian(sch)
        layout = ChunkLayout(12, 4, 2)
    else:
        den, cond = tiny_net(frames=4)
        layout = ChunkLayout(10, 4, 3)
    key = jax.random.key(5)
    g = draw(gen_l_video.build, den, sch, layout, cond, key=key, frame_shape=(2, 2, 2) if make == "tiny" else None)
    for t_min in (1000, 5000):
        s = draw(syncos.build, den, sch, layout, cond, key=key, t_min=t_min, frame_shape=(2, 2, 2) if make == "tiny" else None)
        assert np.array_equal(s.latents, g.latents)
        assert int(s.nfe) == int(g.nfe)
    # A gate that is never open at run time (t_min between the largest grid time and T) agrees to rounding.
    s = draw(syncos.build, den, sch, layout, cond, key=key, t_min=999.5, frame_shape=(2, 2, 2) if make == "tiny" else None)
    np.testing.assert_allclose(s.latents, g.latents, atol=1e-5)


def test_fused_x0_then_global_step_equals_fused_chunk_steps():
    sch = small_schedule(8)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(14, 4, 3)
    x_t = jax.random.normal(jax.random.key(0), (14,) + FS)
    for k in (0, 3, 6):
        t = jnp.full((layout.num_chunks,), sch.timesteps[k])
        chunks = take(layout, x_t)
        ids = jnp.asarray(np.arange(layout.num_chunks) % 2)
        x0c, epsc = sch.to_x0_eps(prior(chunks, t, ids), chunks, t)
        per_chunk = S.ddim_step(x0c, epsc, sch.alphas[k + 1], sch.sigmas[k + 1])
        X0 = fuse(layout, x0c)
        glob = S.ddim_step(X0, (x_t - sch.alphas[k] * X0) / sch.sigmas[k], sch.alphas[k + 1], sch.sigmas[k + 1])
        np.testing.assert_allclose(fuse(layout, per_chunk), glob, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # 25 s of eager execution; keeps the default run under 15 min
def test_same_key_same_video_and_jit_agrees_with_no_jit():
    sch = small_schedule(4)
    den, cond = tiny_net(frames=4)
    layout = ChunkLayout(8, 4, 2)
    opts = dict(iters=2, t_min=None, frame_shape=(2, 2, 2))
    a = draw(syncos.build, den, sch, layout, cond, key=jax.random.key(1), **opts).latents
    b = draw(syncos.build, den, sch, layout, cond, key=jax.random.key(1), **opts).latents
    c = draw(syncos.build, den, sch, layout, cond, key=jax.random.key(2), **opts).latents
    assert np.array_equal(a, b) and not np.allclose(a, c)
    with jax.disable_jit():
        d = draw(syncos.build, den, sch, layout, cond, key=jax.random.key(1), **opts).latents
    np.testing.assert_allclose(a, d, rtol=1e-4, atol=1e-4)


def test_batch_of_seeds_is_vmapped_and_matches_single_runs():
    sch = small_schedule(4)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(8, 4, 2)
    keys = jax.random.split(jax.random.key(0), 3)
    batch = draw(syncos.build, prior, sch, layout, cond, key=keys, iters=2, diagnostics=("x0",))
    assert batch.latents.shape == (3, 8) + FS and batch.diagnostics["x0"].shape == (3, 4, 8) + FS
    for i in range(3):
        one = draw(syncos.build, prior, sch, layout, cond, key=keys[i], iters=2)
        np.testing.assert_allclose(batch.latents[i], one.latents, rtol=1e-4, atol=1e-4)
        assert int(batch.nfe[i]) == int(one.nfe)


def test_stage2_is_observable_and_gated_by_t_min():
    """Stage 2 changes the fused x̂_0 exactly on the steps with t > t_min, with nonzero gradients there.

    (With the exact Gaussian backbone the refinement does *not* pull distant chunks of different
    prompts together: each residual only points to its own prompt's mean, the kernel-smoothed
    update is shared by all chunks of a minibatch and the repulsion separates them — see the
    closing note of the sampler issue. This test pins what stage 2 observably does.)
    """
    sch = S.stable_diffusion(10)
    prior, cond = gaussian(sch, spread=3.0)
    layout = ChunkLayout(24, 4, 2)
    x_T = jax.random.normal(jax.random.key(7), (24,) + FS)
    opts = dict(initial_noise=x_T, guidance_scale=1.0)
    g = draw(gen_l_video.build, prior, sch, layout, cond, key=jax.random.key(1), diagnostics=("x0",), **opts)
    s = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(1), t_min=700, lr=0.1, iters=6,
                      diagnostics=("x0", "grad_norm", "stage2_ran"), **opts)
    ran = np.asarray(s.diagnostics["stage2_ran"])
    np.testing.assert_array_equal(ran, np.asarray(sch.timesteps) > 700)
    norms = np.asarray(s.diagnostics["grad_norm"])
    assert np.all(norms[ran] > 0) and np.all(norms[~ran] == 0)
    # Step 0 sees the same stage-1 input in both samplers: the difference is stage 2 alone.
    assert float(jnp.abs(s.diagnostics["x0"][0] - g.diagnostics["x0"][0]).max()) > 0.05


def test_fixed_baseline_noise_is_one_array_per_step_and_reused_in_stage3():
    sch = small_schedule(6)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(10, 4, 2)
    E = jax.random.normal(jax.random.key(9), (6, 10) + FS)
    x_T = jax.random.normal(jax.random.key(8), (10,) + FS)
    diag = ("x0", "base_noise", "stage2_ran")
    r = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), t_min=500, iters=3,
                      initial_noise=x_T, base_noise=E, diagnostics=diag)
    ran = np.asarray(r.diagnostics["stage2_ran"])
    assert ran.any() and not ran.all()
    np.testing.assert_array_equal(r.diagnostics["base_noise"], E)  # exactly the arrays given, one per step
    # Stage 3 re-uses the step's noise: replay step 0's stage 3 from the diagnostics.
    x1_expected = sch.alphas[1] * r.diagnostics["x0"][0] + sch.sigmas[1] * E[0]
    sampler = syncos.build(prior, sch, layout, cond, t_min=500, iters=3, base_noise=E)
    st, _ = run(sampler, sampler.init(jax.random.key(0), initial_noise=x_T), prior.split()[1], stop=1)
    np.testing.assert_allclose(st.x, x1_expected, rtol=1e-6, atol=1e-6)
    # Drawn noise: a different array at each step.
    r = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), t_min=None, iters=2, diagnostics=("base_noise",))
    bn = np.asarray(r.diagnostics["base_noise"])
    assert not np.allclose(bn[0], bn[1]) and abs(bn.std() - 1.0) < 0.1


def test_without_fixed_noise_stage3_uses_the_implied_eps():
    sch = small_schedule(6)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(10, 4, 2)
    x_T = jax.random.normal(jax.random.key(8), (10,) + FS)
    sampler = syncos.build(prior, sch, layout, cond, t_min=None, iters=3, fixed_baseline_noise=False)
    st1, d = run(sampler, sampler.init(jax.random.key(0), initial_noise=x_T), prior.split()[1], stop=1, diagnostics=("x0",))
    X0 = d["x0"][0]
    expected = sch.alphas[1] * X0 + sch.sigmas[1] * (x_T - sch.alphas[0] * X0) / sch.sigmas[0]
    np.testing.assert_allclose(st1.x, expected, rtol=1e-5, atol=1e-5)


def test_grounded_and_ungrounded_stage2_timesteps():
    sch = small_schedule(6)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(10, 4, 2)
    r = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), t_min=None, iters=8, diagnostics=("stage2_t",))
    np.testing.assert_array_equal(r.diagnostics["stage2_t"], np.repeat(np.asarray(sch.timesteps, np.float32)[:, None], 8, 1))
    r = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), t_min=None, iters=8, grounded_timestep=False,
                      t_range=(100, 300), diagnostics=("stage2_t",))
    ts = np.asarray(r.diagnostics["stage2_t"])
    assert ts.min() >= 100 and ts.max() <= 300 and len(np.unique(ts)) > 10
    assert np.all(ts == np.round(ts))  # VP: integer training times


@pytest.mark.parametrize("gs", [1.0, 6.0])
def test_nfe_closed_forms(gs):
    sch = small_schedule(8)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(14, 4, 2)
    key = jax.random.key(0)
    N, c, iters = layout.num_chunks, (1 if gs == 1.0 else 2), 3
    runs = int(np.sum(np.asarray(sch.timesteps) > 800))
    r = draw(syncos.build, prior, sch, layout, cond, key=key, iters=iters, guidance_scale=gs, diagnostics=("nfe",))
    expected = 8 * N * c + runs * iters * min(N, 4) * c
    assert int(r.nfe) == expected == syncos.build(prior, sch, layout, cond, iters=iters, guidance_scale=gs).expected_nfe
    assert int(np.asarray(r.diagnostics["nfe"]).sum()) == expected
    assert int(draw(gen_l_video.build, prior, sch, layout, cond, key=key, guidance_scale=gs).nfe) == 8 * N * c
    assert int(draw(csd_only.build, prior, sch, layout, cond, key=key, iters=iters, guidance_scale=gs).nfe) == 8 * iters * min(N, 4) * c
    assert int(draw(ddim.build, prior, sch, layout, cond, key=key, guidance_scale=gs).nfe) == 8 * c
    assert int(draw(freenoise.build, prior, sch, layout, cond, key=key, guidance_scale=gs).nfe) == 8 * c
    f, n = 4, 2
    S_levels = n * f
    windows = 2 * n  # lookahead
    r = draw(fifo.build, prior, sch, layout, cond, key=key, num_partitions=n, guidance_scale=gs)
    assert int(r.nfe) == c * (8 + (14 + S_levels - f) * windows) == fifo.build(prior, sch, layout, cond, num_partitions=n,
                                                                                guidance_scale=gs).expected_nfe


def test_registry_has_every_sampler_with_one_signature():
    sch = small_schedule(4)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(8, 4, 2)
    for name, build in SAMPLERS.items():
        sampler = build(prior, sch, layout, cond)
        r = sample(sampler, prior.split()[1], jax.random.key(0))
        assert r.latents.shape == (8,) + FS, name
        assert int(r.nfe) == sampler.expected_nfe, name
        assert np.all(np.isfinite(r.latents)), name


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_compiles_once_across_keys_params_and_prompts(name):
    """Every sampler traces its backbone in its first run only: new keys, new weights and new
    prompt embeddings (same shapes) reuse the executable — params and conditioning are jit arguments."""
    sch = small_schedule(4)
    traces = []

    def fn(params, x, t, cond):
        traces.append(x.shape)
        return params * x + 0.01 * cond.mean()

    defn = DenoiserDef(prediction_type="v_prediction", per_frame_timesteps=True, fn=fn)
    layout = ChunkLayout(8, 4, 2)
    options = dict(iters=2, t_min=None) if name in ("syncos", "csd-only") else {}
    options.update(num_partitions=1) if name == "fifo" else None
    for seed in range(3):
        cond = Conditioning(prompts=jnp.full((1, 3), 0.1 * seed), uncond=jnp.zeros((1, 3)))
        sampler = SAMPLERS[name](defn, sch, layout, cond, frame_shape=FS, **options)
        r = sample(sampler, jnp.float32(0.1 * (seed + 1)), jax.random.key(seed))
        assert np.all(np.isfinite(r.latents))
        if seed == 0:
            n = len(traces)
    assert n > 0
    assert len(traces) == n, f"{name} traced its backbone again: {traces[n:]}"


def test_progress_callback_is_driven_from_the_compiled_loop():
    sch = small_schedule(5)
    prior, cond = gaussian(sch)
    seen = []
    draw(syncos.build, prior, sch, ChunkLayout(8, 4, 2), cond, key=jax.random.key(0), iters=2, progress=seen.append)
    jax.effects_barrier()
    assert sorted(seen) == [1, 2, 3, 4, 5]  # once per step (the callback is unordered: progress_hook)


def test_check_finite_names_the_step_and_stage():
    sch = small_schedule(6)
    bad_t = int(sch.timesteps[2])

    def fn(params, x, t, cond):
        return jnp.where(t[:, None, None, None, None] == bad_t, jnp.nan, 0.1 * x)

    den = (DenoiserDef(prediction_type="v_prediction", fn=fn), ())
    cond = Conditioning(prompts=jnp.zeros((1,)), uncond=jnp.zeros((1,)))
    layout = ChunkLayout(8, 4, 2)
    with pytest.raises(FloatingPointError, match=rf"step 2 \(grid time t={bad_t}\) in stage 1"):
        draw(syncos.build, den, sch, layout, cond, key=jax.random.key(0), check_finite=True, t_min=None, iters=2, frame_shape=FS)
    # Stage 2 only: NaN at a time stage 1 never sees.
    def fn2(params, x, t, cond):
        return jnp.where(t[:, None, None, None, None] == 555, jnp.nan, 0.1 * x)

    den2 = (DenoiserDef(prediction_type="v_prediction", fn=fn2), ())
    with pytest.raises(FloatingPointError, match=r"step 0 .* in stage 2"):
        draw(syncos.build, den2, sch, layout, cond, key=jax.random.key(0), check_finite=True, t_min=None, iters=2,
                      grounded_timestep=False, t_range=(555, 555), frame_shape=FS)
    # Without the guard, no error (the NaN just propagates).
    r = draw(syncos.build, den, sch, layout, cond, key=jax.random.key(0), t_min=None, iters=2, frame_shape=FS)
    assert not np.all(np.isfinite(r.latents))


def test_option_errors():
    sch = small_schedule(4)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(8, 4, 2)
    with pytest.raises(TypeError, match="itres=3: not a setting of syncos"):
        draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), itres=3)
    with pytest.raises(ValueError, match="batch_chunks=9"):
        draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), batch_chunks=9)
    with pytest.raises(ValueError, match="stages="):
        draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), stages=(3, 1))
    with pytest.raises(ValueError, match="initial_noise has shape"):
        draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), initial_noise=jnp.zeros((7,) + FS))
    with pytest.raises(ValueError, match="base_noise has shape"):
        draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(0), base_noise=jnp.zeros((3, 8) + FS))
    den, tcond = tiny_net(frames=4)
    with pytest.raises(ValueError, match="ddim needs a backbone that sees the whole video"):
        draw(ddim.build, den, sch, layout, tcond, key=jax.random.key(0), frame_shape=(2, 2, 2))
    with pytest.raises(ValueError, match="needs Conditioning.uncond"):
        draw(syncos.build, prior, sch, layout, Conditioning(prompts=jnp.arange(2)), key=jax.random.key(0))


def test_freenoise_rescheduling():
    x = jnp.arange(23.0)[:, None]
    W, Sd = 6, 4
    y = np.asarray(freenoise.reschedule_noise(jax.random.key(0), x, W, Sd))[:, 0]
    np.testing.assert_array_equal(y[:W], np.arange(W))
    for k in range(W, 23, Sd):
        block = y[k : min(k + Sd, 23)]
        src = y[k - W : k - W + Sd]
        if k + Sd <= 23:
            assert sorted(block) == sorted(src)  # a shuffled copy
        else:
            assert set(block) <= set(src) and len(block) == 23 - k  # short last block: no crash
    with pytest.raises(ValueError, match="stride=7"):
        freenoise.reschedule_noise(jax.random.key(0), x, 6, 7)


def test_every_sampler_takes_a_batch_of_keys():
    sch = small_schedule(4)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(8, 4, 2)
    keys = jax.random.split(jax.random.key(0), 2)
    for name, build in SAMPLERS.items():
        r = draw(build, prior, sch, layout, cond, key=keys)
        assert r.latents.shape == (2, 8) + FS, name
        single = draw(build, prior, sch, layout, cond, key=keys[1]).latents
        np.testing.assert_allclose(r.latents[1], single, rtol=1e-4, atol=1e-4, err_msg=name)


# -- extensions beyond the paper (the mechanism study's options) ------------------------------------


def test_sgd_stage2_is_plain_gradient_descent_on_the_sds_gradient():
    """One chunk, B = 1, one iteration: SGD gives Y = X̂_0 − lr·σ_t²·(ε̂(z) − E), with ε̂ from the exact prior."""
    sch = small_schedule(8)
    prior, cond = gaussian(sch, num_prompts=1)
    layout = ChunkLayout(4, 4, 1)
    res = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(2), guidance_scale=1.0, t_min=None, iters=1,
                        lr=0.3, optimizer="sgd", diagnostics=("x0", "x0_fused", "base_noise"))
    d = {k: np.asarray(v, np.float64) for k, v in res.diagnostics.items()}
    for k in (1, 4):  # step 0 is t = 999 (α = 0, so ε̂ = x_t = E and the gradient vanishes)
        t = jnp.full((1,), sch.timesteps[k])
        a, s = float(sch.alphas[k]), float(sch.sigmas[k])
        z = jnp.asarray(a * d["x0_fused"][k] + s * d["base_noise"][k], jnp.float32)[None]
        _, eps_hat = sch.to_x0_eps(prior(z, t, jnp.zeros((1,), jnp.int32)), z, t)
        expected = d["x0_fused"][k] - 0.3 * s**2 * (np.asarray(eps_hat[0], np.float64) - d["base_noise"][k])
        np.testing.assert_allclose(d["x0"][k], expected, rtol=1e-5, atol=1e-5)
        assert np.abs(d["x0"][k] - d["x0_fused"][k]).max() > 1e-3  # the step did move Y
    # AdamW's first step is ±lr·(1 − ε) per element whatever the gradient's scale.
    adam = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(2), guidance_scale=1.0, t_min=None, iters=1,
                         lr=0.3, diagnostics=("x0", "x0_fused"))
    move = np.abs(np.asarray(adam.diagnostics["x0"][1]) - np.asarray(adam.diagnostics["x0_fused"][1]))
    np.testing.assert_allclose(move[move > 1e-3], 0.3, rtol=1e-3)


def test_lr_zero_is_renoising_alone():
    """With lr = 0 stage 2 updates nothing: x̂_0 after stage 2 equals the fused x̂_0, and stage 3 re-noises it with E."""
    sch = small_schedule(8)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(12, 4, 2)
    for opt in ("adamw", "sgd"):
        r = draw(syncos.build, prior, sch, layout, cond, key=jax.random.key(4), iters=1, lr=0.0, optimizer=opt,
                          diagnostics=("x0", "x0_fused", "base_noise", "stage2_ran"))
        np.testing.assert_array_equal(r.diagnostics["x0"], r.diagnostics["x0_fused"])
        assert np.asarray(r.diagnostics["stage2_ran"]).any()


def test_no_repulsion_and_clean_kernel_change_stage2_only():
    sch = small_schedule(8)
    prior, cond = gaussian(sch, spread=3.0)
    layout = ChunkLayout(16, 4, 2)
    key = jax.random.key(6)
    base = draw(syncos.build, prior, sch, layout, cond, key=key, lr=0.1, iters=4, diagnostics=("x0", "x0_fused", "stage2_ran"))
    ran = np.asarray(base.diagnostics["stage2_ran"])
    for opts in (dict(repulsion=False), dict(kernel_on="clean"), dict(kernel_on="clean", kernel_gamma=0.05)):
        v = draw(syncos.build, prior, sch, layout, cond, key=key, lr=0.1, iters=4, diagnostics=("x0", "x0_fused"), **opts)
        # Step 0 has the same stage-1 input; only the refinement differs.
        np.testing.assert_array_equal(v.diagnostics["x0_fused"][0], base.diagnostics["x0_fused"][0])
        assert np.abs(np.asarray(v.diagnostics["x0"][0]) - np.asarray(base.diagnostics["x0"][0])).max() > 1e-4, opts
    assert ran[0]


def test_eta_above_t_min_applies_only_above_t_min():
    sch = S.stable_diffusion(10)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(12, 4, 2)
    key = jax.random.key(8)
    glv = draw(gen_l_video.build, prior, sch, layout, cond, key=key).latents
    glv_eta1 = draw(gen_l_video.build, prior, sch, layout, cond, key=key, eta=1.0).latents
    never = draw(gen_l_video.build, prior, sch, layout, cond, key=key, t_min=1000, eta_above_t_min=1.0).latents
    always = draw(gen_l_video.build, prior, sch, layout, cond, key=key, t_min=-1, eta_above_t_min=1.0).latents
    some = draw(gen_l_video.build, prior, sch, layout, cond, key=key, t_min=500, eta_above_t_min=1.0).latents
    np.testing.assert_allclose(never, glv, atol=1e-5)
    np.testing.assert_allclose(always, glv_eta1, atol=1e-5)
    assert np.abs(some - glv).max() > 1e-2 and np.abs(some - glv_eta1).max() > 1e-2


def test_extension_option_errors():
    sch = small_schedule(4)
    prior, cond = gaussian(sch)
    layout = ChunkLayout(8, 4, 2)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="kernel_on='dirty'"):
        draw(syncos.build, prior, sch, layout, cond, key=key, kernel_on="dirty")
    with pytest.raises(ValueError, match="optimizer='adam'"):
        draw(syncos.build, prior, sch, layout, cond, key=key, optimizer="adam")
    with pytest.raises(ValueError, match="eta_above_t_min=1.0: needs a t_min"):
        draw(syncos.build, prior, sch, layout, cond, key=key, t_min=None, eta_above_t_min=1.0)


@pytest.mark.parametrize("name", ["syncos", "fifo"])
def test_sample_batches_over_conditioning_with_events_of_any_length(name):
    """``sample(..., cond=)`` draws one video per conditioning: each equals its own single run, also
    with events of uneven length (the builder sees one video's conditioning, never the batch)."""
    sch = small_schedule(4)
    prior, _ = gaussian(sch, num_prompts=3)
    defn, params = prior.split()
    layout = ChunkLayout(12, 4, 2)
    opts = dict(iters=2, t_min=None) if name == "syncos" else dict(num_partitions=1)
    ids = jnp.array([[0, 1], [2, 0], [1, 1]])
    null = jnp.full((3, 1), prior.null_id)
    one = lambda b: Conditioning(prompts=ids[b], uncond=null[b], frames=(4, 8))  # noqa: E731
    sampler = SAMPLERS[name](defn, sch, layout, one(0), frame_shape=FS, **opts)
    keys = jax.random.split(jax.random.key(0), 3)
    batch = sample(sampler, params, keys, cond=Conditioning(prompts=ids, uncond=null, frames=(4, 8)))
    for b in range(3):
        single = sample(SAMPLERS[name](defn, sch, layout, one(b), frame_shape=FS, **opts), params, keys[b])
        np.testing.assert_allclose(batch.latents[b], single.latents, rtol=1e-5, atol=1e-5, err_msg=f"video {b}")
    with pytest.raises(ValueError, match="leading axis batch=3"):
        sample(sampler, params, keys, cond=Conditioning(prompts=ids[:2], uncond=null[:2], frames=(4, 8)))


def _primitives(jaxpr) -> list:
    """Every primitive name in ``jaxpr``, nested jaxprs (loops, branches, jit calls) included."""
    out = []
    for eqn in jaxpr.eqns:
        out.append(eqn.primitive.name)
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out += _primitives(inner)
    return out


def test_a_batch_of_videos_keeps_stage2_a_branch():
    """All videos of a batch are at the same step, so the compiled loop vmaps the step with the
    counter unbatched: stage 2's ``lax.cond`` on ``t > t_min`` stays a branch. (With a batched
    counter vmap turns it into a select that runs stage 2 at every step, 3.4× slower on the toy
    model; the output is the same up to float rounding.)"""
    from syncos_jax.backbones.protocol import split_denoiser
    from syncos_jax.samplers.base import _compiled_run

    sch = small_schedule(4)
    prior, cond = gaussian(sch)
    sampler = syncos.build(prior, sch, ChunkLayout(8, 4, 2), cond, t_min=500, iters=2)
    params = split_denoiser(prior)[1]

    def conds(key):
        state = jax.vmap(sampler.init)(key) if key.ndim else sampler.init(key)
        trace = functools.partial(_compiled_run, spec=sampler.spec, num_steps=4, batched=key.ndim == 1,
                                  cond_batched=False, record=(), progress=None)
        return _primitives(jax.make_jaxpr(trace)(sampler.context, params, state, jnp.int32(4)).jaxpr).count("cond")

    single = conds(jax.random.key(0))
    assert single >= 1
    assert conds(jax.random.split(jax.random.key(0), 3)) == single
