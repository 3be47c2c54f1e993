"""Small shared set-ups for the sampler tests: the Gaussian backbone and a tiny random nnx denoiser."""

import jax
import jax.numpy as jnp
from flax import nnx

from syncos_jax import schedules as S
from syncos_jax.backbones.gaussian import GaussianVideoPrior
from syncos_jax.backbones.protocol import NnxDenoiser
from syncos_jax.prompts import Conditioning


def gaussian(schedule, frame_shape=(2, 2, 1), num_prompts=2, seed=0, spread=2.0, **kwargs):
    means = spread * jax.random.normal(jax.random.key(seed), (num_prompts,) + tuple(frame_shape))
    prior = GaussianVideoPrior(means, schedule, **kwargs)
    cond = Conditioning(prompts=jnp.arange(num_prompts), uncond=jnp.array([prior.null_id]))
    return prior, cond


class TinyVideoNet(nnx.Module):
    """A tiny random video denoiser: per-frame time embedding, temporal mixing, channel MLP."""

    def __init__(self, channels=2, frames=4, hidden=8, num_prompts=3, *, rngs):
        self.inp = nnx.Linear(channels, hidden, rngs=rngs)
        self.time = nnx.Linear(1, hidden, rngs=rngs)
        self.text = nnx.Embed(num_prompts + 1, hidden, rngs=rngs)
        self.mix = nnx.Linear(frames, frames, rngs=rngs)
        self.out = nnx.Linear(hidden, channels, rngs=rngs)

    def __call__(self, x, t, cond):
        B, f = x.shape[:2]
        t = jnp.broadcast_to(t.reshape(t.shape + (1,) * (2 - t.ndim)), (B, f)).astype(jnp.float32) / 1000.0
        h = self.inp(x) + self.time(t[..., None])[:, :, None, None] + self.text(cond)[:, None, None, None]
        h = jnp.tanh(h)
        h = jnp.moveaxis(self.mix(jnp.moveaxis(h, 1, -1)), -1, 1)
        return 0.5 * self.out(h)


def tiny_net(frames=4, channels=2, num_prompts=2, seed=0, per_frame=True):
    net = TinyVideoNet(channels, frames, num_prompts=num_prompts, rngs=nnx.Rngs(seed))
    den = NnxDenoiser(net, prediction_type="v_prediction", frames_per_chunk=frames, per_frame_timesteps=per_frame)
    cond = Conditioning(prompts=jnp.arange(num_prompts), uncond=jnp.array([num_prompts]))
    return den, cond


def small_schedule(steps=8):
    return S.cogvideox_2b(steps)


INIT_NOISE = ("initial_noise", "base_video_noise", "queue_noise")


def draw(builder, denoiser, schedule, layout, cond, *, key, progress=None, diagnostics=(), **options):
    """``sample(builder(denoiser, schedule, layout, cond, **options), params, key)``: the old
    per-module ``sample(denoiser, …, key=…, **options)`` call, through today's interface
    (start-noise options go to ``init``)."""
    from syncos_jax.backbones.protocol import split_denoiser
    from syncos_jax.samplers import sample

    init = {k: options.pop(k) for k in INIT_NOISE if k in options}
    sampler = builder(denoiser, schedule, layout, cond, **options)
    return sample(sampler, split_denoiser(denoiser)[1], key, progress=progress, diagnostics=diagnostics, **init)
