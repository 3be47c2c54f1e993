"""API guards: ids range-checked where concrete, the backbone's prediction type against the
schedule, and exact zero distances between identical particles (so the kernel's fallback fires)."""

import jax
from sampler_helpers import draw
import jax.numpy as jnp
import numpy as np
import pytest

from syncos_jax import schedules
from syncos_jax.backbones import GaussianVideoPrior
from syncos_jax.chunking import ChunkLayout
from syncos_jax.csd import csd_gradient, pairwise_sq_dists, rbf_kernel
from syncos_jax.prompts import Conditioning
from syncos_jax.samplers import fifo, gen_l_video, syncos


@pytest.mark.parametrize("B", [3, 4, 5])
def test_identical_particles_have_zero_distance_and_the_flat_kernel(B):
    rng = np.random.default_rng(B)
    one = rng.standard_normal((1, 8, 6, 6, 4)).astype(np.float32)
    z = jnp.asarray(np.repeat(one, B, axis=0))
    g = jnp.asarray(rng.standard_normal(z.shape).astype(np.float32))
    d2 = pairwise_sq_dists(z)
    assert np.all(np.asarray(d2) == 0.0)  # exactly: the Gram form left 1-2 ulp here
    kern = rbf_kernel(z)
    assert float(kern.gamma) == 0.0 and np.all(np.asarray(kern.matrix) == 1.0)  # the spec's fallback (γ = 0, K = 1)
    # closed form with K = 1, γ = 0: every particle gets w/B · Σ_j g_j (no repulsion)
    expected = 0.7 * np.asarray(g, np.float64).mean(axis=0)
    G = np.asarray(csd_gradient(z, g, 0.7))
    np.testing.assert_allclose(G, np.broadcast_to(expected, G.shape), rtol=1e-5, atol=1e-6)


def test_identical_pairs_among_distinct_particles_are_zero_and_the_rest_keep_the_gram_values():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 300)).astype(np.float32)
    z[4] = z[1]  # two identical among distinct ones
    d2 = np.asarray(pairwise_sq_dists(jnp.asarray(z)))
    assert np.all(np.diag(d2) == 0) and d2[1, 4] == 0.0 and d2[4, 1] == 0.0
    ref = ((z[:, None].astype(np.float64) - z[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(d2, ref, rtol=1e-5)
    # distinct pairs are the Gram form's values, bit for bit (earlier results reproduce exactly).
    # Both sides compiled: eager op-by-op evaluation may round the sum differently (XLA fuses the
    # compiled form; since jax 0.10 the two differ by an ulp here).

    @jax.jit
    def gram_form(zf):
        sq = jnp.sum(zf * zf, -1)
        return jnp.maximum(sq[:, None] + sq[None] - 2.0 * jnp.matmul(zf, zf.T, precision="highest"), 0.0)

    gram = np.asarray(gram_form(jnp.asarray(z)))
    distinct = ~np.eye(6, dtype=bool)
    distinct[1, 4] = distinct[4, 1] = False
    assert np.array_equal(d2[distinct], gram[distinct])


def _prior(schedule, P=3):
    return GaussianVideoPrior(jax.random.normal(jax.random.key(0), (P, 4, 4, 2)), schedule)


@pytest.mark.parametrize("bad", [7, -1, 3])
def test_prompt_ids_out_of_range_are_an_error_not_a_clamp(bad):
    sch = schedules.cogvideox_2b(4)
    prior = _prior(sch)  # P = 3 prompts: ids 0..2, and 3 is the null prompt (valid only in uncond)
    layout = ChunkLayout(8, 4, 2)
    ok = Conditioning(prompts=jnp.array([0, 2]), uncond=jnp.array([prior.null_id]))
    draw(gen_l_video.build, prior, sch, layout, ok, key=jax.random.key(0))  # fine
    cond = Conditioning(prompts=jnp.array([0, bad]), uncond=jnp.array([prior.null_id]))
    if bad == 3:  # the null prompt's id is in range for the table: allowed as a prompt too
        draw(gen_l_video.build, prior, sch, layout, cond, key=jax.random.key(0))
        return
    with pytest.raises(ValueError, match=rf"cond.prompts holds prompt ids {bad}, outside \[0, 3\]"):
        draw(gen_l_video.build, prior, sch, layout, cond, key=jax.random.key(0))
    with pytest.raises(ValueError, match=rf"cond holds prompt ids {bad}, outside \[0, 3\]"):
        prior(jnp.zeros((1, 4, 4, 4, 2)), jnp.array([500]), jnp.array([bad]))
    with pytest.raises(ValueError, match="cond.uncond holds prompt ids"):
        draw(gen_l_video.build, prior, sch, layout, ok._replace(uncond=jnp.array([bad])), key=jax.random.key(0))


def test_token_ids_outside_the_vocabulary_are_an_error(tiny_weights):
    from syncos_jax.backbones import toy

    bb = toy.load_default(tiny_weights)
    sch = bb.schedule(2)
    layout = ChunkLayout(8, 8, 8)
    tokens = bb.encode(["a small red circle moves left on snow", ""])
    cond = Conditioning(prompts=jnp.asarray(tokens[:1]), uncond=jnp.asarray(tokens[1:]))
    V = bb.model.cfg.vocab_size
    bad = cond._replace(prompts=cond.prompts.at[0, 3].set(V))
    with pytest.raises(ValueError, match=rf"cond.prompts holds token ids {V}, outside \[0, {V - 1}\]"):
        draw(syncos.build, bb.denoiser, sch, layout, bad, key=jax.random.key(0), iters=1)
    with pytest.raises(ValueError, match=r"cond.uncond must hold integer token ids, got dtype float32"):
        draw(syncos.build, bb.denoiser, sch, layout, cond._replace(uncond=jnp.zeros((1, 16))), key=jax.random.key(0), iters=1)
    with pytest.raises(ValueError, match=r"tokens holds token ids -1"):
        bb.model(jnp.zeros((1, 8, 32, 32, 3)), jnp.array([10]), jnp.full((1, 16), -1, jnp.int32))


def test_a_backbone_under_a_schedule_of_another_prediction_type_is_refused(tiny_weights):
    from syncos_jax.backbones import toy

    bb = toy.load_default(tiny_weights)  # a v-prediction model
    tokens = jnp.asarray(bb.encode(["a small red circle moves left on snow", ""]))
    cond = Conditioning(prompts=tokens[:1], uncond=tokens[1:])
    layout = ChunkLayout(8, 8, 8)
    message = r"the backbone predicts 'v_prediction' but the schedule is a 'flow' schedule of 'flow' outputs"
    with pytest.raises(ValueError, match=message):
        draw(syncos.build, bb.denoiser, schedules.flow_matching(8), layout, cond, key=jax.random.key(0))
    with pytest.raises(ValueError, match=message):
        draw(fifo.build, bb.denoiser, schedules.flow_matching(8), layout, cond, key=jax.random.key(0), num_partitions=1)
    with pytest.raises(ValueError, match="the backbone predicts 'epsilon' but the schedule is a 'vp' schedule of 'v_prediction'"):
        draw(gen_l_video.build, _prior(schedules.stable_diffusion(4)), schedules.cogvideox_2b(4), ChunkLayout(8, 4, 2),
                           Conditioning(prompts=jnp.array([0]), uncond=jnp.array([3])), key=jax.random.key(0))
