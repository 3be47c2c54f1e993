"""Samplers with one interface: ``build(denoiser_def, schedule, layout, cond, **options) -> Sampler``.

A :class:`~syncos_jax.samplers.base.Sampler` is a NamedTuple of pure functions bound to their
context, ``init(key, …) -> State`` and ``step(state, params) -> (State, Info)``, plus
``num_steps`` and ``expected_nfe``; the caller owns the loop::

    sampler = syncos.build(defn, schedule, layout, cond, iters=20, frame_shape=(H, W, C))
    state = sampler.init(key)
    for _ in range(sampler.num_steps):
        state, info = sampler.step(state, params)

or runs it in one compiled loop: ``sample(sampler, params, key)`` (batched over keys and over
conditioning, with progress and finite checks), or ``run(sampler, state, params, stop=k)`` to
stop and resume. ``SAMPLERS`` maps the command-line names to the builders.
"""

from syncos_jax.samplers import csd_only, ddim, fifo, freenoise, gen_l_video, syncos
from syncos_jax.samplers.base import SampleResult, Sampler, make_predict, run, sample

SAMPLERS = {
    "syncos": syncos.build,
    "gen-l-video": gen_l_video.build,
    "csd-only": csd_only.build,
    "ddim": ddim.build,
    "fifo": fifo.build,
    "freenoise": freenoise.build,
}

# name -> the settings its builder validates (what a scenario's ``sampler:`` block may set)
SETTINGS = {name: module.SETTINGS for name, module in (("syncos", syncos), ("gen-l-video", gen_l_video), ("csd-only", csd_only),
                                                      ("ddim", ddim), ("fifo", fifo), ("freenoise", freenoise))}

__all__ = ["SAMPLERS", "SETTINGS", "SampleResult", "Sampler", "csd_only", "ddim", "fifo", "freenoise", "gen_l_video", "make_predict",
           "run", "sample", "syncos"]
