"""Schedules against diffusers (float32, offline, built from configs) and the conversion algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from syncos_jax import schedules as S

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

# The released CogVideoX-2B scheduler config (scheduler/scheduler_config.json of THUDM/CogVideoX-2b).
COGVIDEOX_2B_CONFIG = {
    "_class_name": "CogVideoXDDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 3.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}
# Stable Diffusion 1.x / ModelScope T2V scheduler config.
SD_DDIM_CONFIG = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}
FLOW_CONFIG = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}

REL_TOL = 1e-6


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def _model_output(sample, k):
    # A deterministic, nonlinear stand-in for a network, the same function on both sides.
    rng = np.random.default_rng(1000 + k)
    return (0.7 * np.tanh(sample) + 0.3 * rng.standard_normal(sample.shape)).astype(np.float32)


CASES = [
    ("DDIMScheduler", SD_DDIM_CONFIG, lambda n: S.stable_diffusion(n)),
    ("CogVideoXDDIMScheduler", COGVIDEOX_2B_CONFIG, lambda n: S.cogvideox_2b(n)),
    ("FlowMatchEulerDiscreteScheduler", FLOW_CONFIG, lambda n: S.flow_matching(n, shift=3.0)),
]


def _reference(cls_name, config, steps):
    cls = getattr(diffusers, cls_name)
    sched = cls.from_config(config)
    sched.set_timesteps(steps)
    return sched


def _our_step(schedule, k, out, x):
    a_t, s_t = schedule.alphas[k], schedule.sigmas[k]
    x0, eps = S.to_x0_eps(jnp.asarray(out), jnp.asarray(x), a_t, s_t, schedule.prediction_type)
    return S.ddim_step(x0, eps, schedule.alphas[k + 1], schedule.sigmas[k + 1])


@pytest.mark.parametrize("cls_name,config,ours", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("steps", [50, 25])
def test_timesteps_bit_for_bit(cls_name, config, ours, steps):
    ref = _reference(cls_name, config, steps)
    sched = ours(steps)
    ref_t = ref.timesteps.numpy()
    our_t = np.asarray(sched.timesteps)
    assert our_t.shape == ref_t.shape
    assert np.array_equal(our_t.astype(ref_t.dtype), ref_t), (our_t[:5], ref_t[:5])
    if cls_name.startswith("FlowMatch"):
        assert np.array_equal(np.asarray(sched.sigmas), ref.sigmas.numpy())


@pytest.mark.parametrize("cls_name,config,ours", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_alphas_cumprod(cls_name, config, ours):
    ref = _reference(cls_name, config, 50).alphas_cumprod.numpy().astype(np.float32)
    our = np.asarray(ours(50).alphas_cumprod)
    nz = ref > 0
    assert np.array_equal(our[~nz], ref[~nz])  # the zero-terminal-SNR end is exactly 0
    np.testing.assert_array_less(np.abs(our[nz] / ref[nz] - 1.0), REL_TOL)


def test_ddpm_betas_linear_and_final_alpha():
    ref = diffusers.DDIMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, set_alpha_to_one=True)
    ref.set_timesteps(10)
    ours = S.ddpm(10, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, set_alpha_to_one=True)
    np.testing.assert_array_less(np.abs(np.asarray(ours.alphas_cumprod) / ref.alphas_cumprod.numpy() - 1), REL_TOL)
    assert float(ours.alphas[-1]) == 1.0 and float(ours.sigmas[-1]) == 0.0
    sd = S.stable_diffusion(10)
    assert float(sd.alphas[-1]) == pytest.approx(float(np.sqrt(sd.alphas_cumprod[0])), rel=1e-7)


@pytest.mark.parametrize("cls_name,config,ours", CASES, ids=[c[0] for c in CASES])
def test_fifty_consecutive_steps(cls_name, config, ours):
    """Drive diffusers' step() for 50 steps; at every step ours must give the same output."""
    ref = _reference(cls_name, config, 50)
    sched = ours(50)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    x_ours = jnp.asarray(x)
    for k, t in enumerate(ref.timesteps):
        out = _model_output(x, k)
        x_next = ref.step(torch.from_numpy(out), t, torch.from_numpy(x)).prev_sample.numpy()
        # Same inputs: each step agrees.
        assert _rel_err(_our_step(sched, k, out, x), x_next) <= REL_TOL, k
        # Our own trajectory stays on diffusers' trajectory.
        x_ours = _our_step(sched, k, _model_output(np.asarray(x_ours), k), x_ours)
        assert _rel_err(x_ours, x_next) <= 10 * REL_TOL, k
        x = x_next


def test_ddim_eta_matches_diffusers_with_given_noise():
    ref = _reference("DDIMScheduler", SD_DDIM_CONFIG, 20)
    sched = S.stable_diffusion(20)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    for k, t in enumerate(ref.timesteps):
        out = _model_output(x, k)
        z = rng.standard_normal(x.shape).astype(np.float32)
        x_next = ref.step(torch.from_numpy(out), t, torch.from_numpy(x), eta=0.7, variance_noise=torch.from_numpy(z))
        x_next = x_next.prev_sample.numpy()
        x0, eps = S.to_x0_eps(jnp.asarray(out), jnp.asarray(x), sched.alphas[k], sched.sigmas[k], "epsilon")
        ours = S.ddim_step(
            x0, eps, sched.alphas[k + 1], sched.sigmas[k + 1], eta=0.7,
            alpha_t=sched.alphas[k], sigma_t=sched.sigmas[k], noise=jnp.asarray(z),
        )
        assert _rel_err(ours, x_next) <= 10 * REL_TOL, k
        x = x_next


def test_eta_step_needs_a_key():
    with pytest.raises(ValueError, match="PRNG key"):
        S.ddim_step(jnp.zeros(3), jnp.zeros(3), 0.5, 0.5, eta=1.0)


@pytest.mark.parametrize("prediction_type", S.PREDICTION_TYPES)
def test_conversions_round_trip_and_identity(prediction_type):
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k0, (3, 4, 2, 2, 1))
    eps = jax.random.normal(k1, x0.shape)
    if prediction_type == "flow":
        alpha = jnp.array([0.9, 0.5, 0.2])
        sigma = 1.0 - alpha
    else:
        alpha = jnp.sqrt(jnp.array([0.9, 0.5, 0.2]))
        sigma = jnp.sqrt(1.0 - alpha**2)
    x_t = S.append_dims(alpha, 5) * x0 + S.append_dims(sigma, 5) * eps
    out = S.from_x0_eps(x0, eps, alpha, sigma, prediction_type)
    x0_hat, eps_hat = S.to_x0_eps(out, x_t, alpha, sigma, prediction_type)
    np.testing.assert_allclose(x0_hat, x0, atol=2e-5)
    np.testing.assert_allclose(eps_hat, eps, atol=2e-5)


def test_per_frame_coefficients_broadcast():
    x = jnp.ones((2, 3, 1, 1, 1))
    alpha = jnp.array([[1.0, 0.5, 0.25], [0.1, 0.2, 0.3]])
    x0, eps = S.to_x0_eps(jnp.zeros_like(x), x, alpha, jnp.ones_like(alpha), "epsilon")
    np.testing.assert_allclose(x0[..., 0, 0, 0], 1.0 / alpha)


def test_alpha_sigma_lookup():
    s = S.cogvideox_2b(50)
    a, sg = s.alpha_sigma(s.timesteps)
    np.testing.assert_array_equal(a, s.alphas[:-1])
    np.testing.assert_array_equal(sg, s.sigmas[:-1])
    f = S.flow_matching(10)
    a, sg = f.alpha_sigma(f.timesteps)
    np.testing.assert_allclose(sg, f.sigmas[:-1], rtol=1e-6)
    np.testing.assert_allclose(a + sg, 1.0, rtol=1e-6)


def test_schedule_is_a_pytree_that_jits():
    s = S.cogvideox_2b(10)
    leaves = jax.tree_util.tree_leaves(s)
    assert len(leaves) == 6
    f = jax.jit(lambda sch, t: sch.alpha_sigma(t)[0])
    assert f(s, 999) == s.alphas[0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(prediction_type="velocity"), "prediction_type='velocity'"),
        (dict(beta_schedule="cosine"), "beta_schedule='cosine'"),
        (dict(timestep_spacing="uniform"), "timestep_spacing='uniform'"),
        (dict(num_inference_steps=1001), "num_inference_steps=1001"),
        (dict(num_inference_steps=0), "num_inference_steps=0"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.ddpm(**kwargs)


def test_flow_errors_and_unknown_prediction():
    with pytest.raises(ValueError, match="num_inference_steps=2000"):
        S.flow(2000)
    with pytest.raises(ValueError, match="prediction_type='x0'"):
        S.to_x0_eps(jnp.zeros(2), jnp.zeros(2), 1.0, 0.0, "x0")
