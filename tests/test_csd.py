"""The CSD (Stein variational) gradient: SDS limit, repulsion = autodiff, degenerate cases, SVGD convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from syncos_jax.csd import csd_gradient, median_gamma, pairwise_sq_dists, rbf_kernel


def test_single_particle_is_exactly_sds():
    z = jax.random.normal(jax.random.key(0), (1, 3, 4, 4, 2))
    g = jax.random.normal(jax.random.key(1), z.shape)
    for w in (1.0, 0.37, jnp.float32(0.81)):
        G = csd_gradient(z, g, w)
        assert np.array_equal(np.asarray(G), np.asarray(w * g))
    assert np.array_equal(np.asarray(jax.jit(csd_gradient)(z, g, 0.37)), np.asarray(0.37 * g))


def test_sq_dists_match_direct_differences():
    z = jax.random.normal(jax.random.key(2), (5, 7, 3))
    flat = np.asarray(z, np.float64).reshape(5, -1)
    direct = ((flat[:, None] - flat[None]) ** 2).sum(-1)
    np.testing.assert_allclose(pairwise_sq_dists(z), direct, rtol=1e-5, atol=1e-5)
    assert np.all(np.diag(np.asarray(pairwise_sq_dists(z))) == 0)


@pytest.mark.parametrize("B", [3, 4, 5, 8])
def test_median_heuristic_is_the_lower_median(B):
    z = jax.random.normal(jax.random.key(B), (B, 6))
    d2 = np.asarray(pairwise_sq_dists(z), np.float64)
    vals = np.sort(d2.ravel())
    lower_median = vals[(vals.size - 1) // 2]  # torch.median: the smaller middle value
    if lower_median == 0:  # B = 3: 9 entries, 3 zeros, median is an off-diagonal entry anyway
        off = np.sort(d2[~np.eye(B, dtype=bool)])
        lower_median = off[(off.size - 1) // 2]
    h2 = lower_median / (2 * np.log(B + 1))
    np.testing.assert_allclose(rbf_kernel(z).gamma, 1 / (2 * h2), rtol=1e-5)
    np.testing.assert_allclose(rbf_kernel(z).matrix, np.exp(-d2 / (2 * h2)), rtol=1e-5, atol=1e-6)


def test_degenerate_bandwidths_never_nan():
    # B = 2: half the entries are the zero diagonal -> off-diagonal median.
    z = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(median_gamma(pairwise_sq_dists(z)), np.log(3) / 25.0, rtol=1e-6)
    # Identical particles: gamma = 0, K = 1, the gradient is the mean residual.
    z = jnp.ones((4, 5))
    g = jax.random.normal(jax.random.key(3), (4, 5))
    k = rbf_kernel(z)
    assert float(k.gamma) == 0.0 and np.all(np.asarray(k.matrix) == 1.0)
    G = csd_gradient(z, g, 2.0)
    assert np.all(np.isfinite(G))
    np.testing.assert_allclose(G, np.broadcast_to(2.0 * np.asarray(g).mean(0), (4, 5)), rtol=1e-6)
    # Partly identical: the median is 0 but the off-diagonal median is not.
    z = jnp.array([[0.0], [0.0], [0.0], [1.0]])
    assert np.isfinite(float(median_gamma(pairwise_sq_dists(z))))


def test_repulsion_equals_autodiff_of_kernel_sum():
    B = 6
    z = jax.random.normal(jax.random.key(4), (B, 3, 2))
    gamma = rbf_kernel(z).gamma
    # With zero residuals only the repulsion term remains: (2γ/B) Σ_j K_ij (z_j − z_i).
    repulsion = csd_gradient(z, jnp.zeros_like(z), 1.0, gamma=gamma)

    def kernel_sum(zz):
        flat = zz.reshape(B, -1)
        d2 = jnp.sum((flat[:, None] - flat[None]) ** 2, -1)
        return 0.5 * jnp.sum(jnp.exp(-gamma * d2))

    # ∇_{z_i} ½ Σ_{a,b} k(z_a, z_b) = Σ_j ∇_{z_i} k(z_i, z_j) = 2γ Σ_j K_ij (z_j − z_i).
    expected = jax.grad(kernel_sum)(z) / B
    np.testing.assert_allclose(repulsion, expected, rtol=1e-5, atol=1e-6)


def test_smoothed_score_term():
    B = 4
    z = jax.random.normal(jax.random.key(5), (B, 8))
    g = jax.random.normal(jax.random.key(6), (B, 8))
    k = rbf_kernel(z)
    full = csd_gradient(z, g, 0.5, gamma=k.gamma)
    rep = csd_gradient(z, jnp.zeros_like(g), 0.5, gamma=k.gamma)
    np.testing.assert_allclose(full - rep, 0.5 / B * np.asarray(k.matrix) @ np.asarray(g), rtol=1e-5, atol=1e-6)


def test_fixed_gamma():
    z = jax.random.normal(jax.random.key(7), (4, 3))
    k = rbf_kernel(z, gamma=0.25)
    np.testing.assert_allclose(k.matrix, np.exp(-0.25 * np.asarray(pairwise_sq_dists(z))), rtol=1e-6)


def test_shape_mismatch_error():
    with pytest.raises(ValueError, match="same shape"):
        csd_gradient(jnp.zeros((4, 3)), jnp.zeros((4, 2)))


def test_svgd_recovers_a_correlated_gaussian():
    """SVGD with the true score moves 64 particles from a wrong start to the target's moments."""
    mu = jnp.array([1.0, -2.0])
    cov = jnp.array([[1.0, 0.8], [0.8, 1.5]])
    prec = jnp.linalg.inv(cov)
    z0 = jnp.array([-4.0, 3.0]) + 0.3 * jax.random.normal(jax.random.key(8), (64, 2))

    def step(z, _):
        g = (z - mu) @ prec  # −∇ log p: a descent direction, as a score residual is
        return z - 0.2 * csd_gradient(z, g), None

    z, _ = jax.jit(lambda z: jax.lax.scan(step, z, None, length=3000))(z0)
    z = np.asarray(z, np.float64)
    np.testing.assert_allclose(z.mean(0), mu, atol=0.1)
    emp = np.cov(z.T, bias=True)
    assert np.max(np.abs(emp - np.asarray(cov))) <= 0.2 * float(jnp.max(cov)), emp


def test_without_repulsion_only_the_smoothed_score_remains():
    z = jax.random.normal(jax.random.key(11), (4, 3, 2))
    g = jax.random.normal(jax.random.key(12), (4, 3, 2))
    K = np.asarray(rbf_kernel(z).matrix, np.float64)
    expected = 0.7 / 4 * (K @ np.asarray(g, np.float64).reshape(4, -1))
    got = csd_gradient(z, g, weight=0.7, repulsion=False)
    np.testing.assert_allclose(np.asarray(got).reshape(4, -1), expected, rtol=1e-5, atol=1e-6)


def test_kernel_on_other_points_uses_their_kernel_and_their_repulsion():
    z = jax.random.normal(jax.random.key(13), (5, 6))
    g = jax.random.normal(jax.random.key(14), (5, 6))
    p = 0.3 * jax.random.normal(jax.random.key(15), (5, 6))
    pn, gn = np.asarray(p, np.float64), np.asarray(g, np.float64)
    d2 = ((pn[:, None] - pn[None]) ** 2).sum(-1)
    srt = np.sort(d2.ravel())
    gamma = np.log(6) / srt[(srt.size - 1) // 2]
    K = np.exp(-gamma * d2)
    expected = (K @ gn + 2 * gamma * (K @ pn - K.sum(1, keepdims=True) * pn)) / 5
    np.testing.assert_allclose(np.asarray(csd_gradient(z, g, kernel_points=p)), expected, rtol=1e-4, atol=1e-6)
    # The particles themselves no longer enter: moving z leaves G unchanged.
    np.testing.assert_array_equal(np.asarray(csd_gradient(z + 1.0, g, kernel_points=p)), np.asarray(csd_gradient(z, g, kernel_points=p)))
    with pytest.raises(ValueError, match="kernel_points must have the shape"):
        csd_gradient(z, g, kernel_points=p[:3])
