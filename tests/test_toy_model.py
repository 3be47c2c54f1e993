"""The toy video DiT: forward shapes, per-frame times, weights files, the training step, resumption."""

import dataclasses
import json
import multiprocessing
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from syncos_jax.backbones import toy
from syncos_jax.backbones.toy import world
from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT, toy_denoiser
from syncos_jax.backbones.toy.tokenizer import Tokenizer
from syncos_jax.backbones.toy.train import TrainConfig, init_train_state, make_batch, sample_times, train_step
from syncos_jax.backbones.toy.weights import DEFAULT_WEIGHTS, load_toy_model, read_toy_config, save_toy_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ToyConfig(dim=32, depth=1, heads=2, text_depth=1)


def _perturbed(state, seed):
    """``state`` plus ``0.05·N(0, 1)`` noise, drawn with numpy (``jax.random`` leaf by leaf would
    compile one program per leaf shape: tens of seconds on 2 cores)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a) + 0.05 * rng.standard_normal(a.shape).astype(a.dtype)), state)


def _randomised(cfg=TINY, seed=0):
    """A tiny model whose zero-initialised layers are given random values (so outputs are non-trivial)."""
    model = ToyVideoDiT(cfg, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, _perturbed(state, seed + 1))


@nnx.jit
def _apply(model, x, t, tokens):
    """``model(x, t, tokens)`` compiled as one program (eagerly, each of the forward's few hundred
    ops compiles on its own: about a minute on 2 cores for the first call of a shape)."""
    return model(x, t, tokens)


def _inputs(B=2, f=8, seed=0):
    x = jax.random.normal(jax.random.key(seed), (B, f, 32, 32, 3))
    tok = Tokenizer(16)(["a small red circle moves left on snow", ""][:B] + ["a large blue square stays still on grass"] * (B - 2))
    return x, tok


def test_forward_shapes_scalar_and_per_frame_times():
    model = _randomised()
    x, tok = _inputs()
    out = _apply(model, x, jnp.array([10, 900]), tok)
    assert out.shape == x.shape and out.dtype == jnp.float32
    per_frame = _apply(model, x, jnp.tile(jnp.arange(8)[None] * 100, (2, 1)), tok)
    assert per_frame.shape == x.shape
    assert np.isfinite(np.asarray(per_frame)).all()
    # per-frame times all equal give the scalar-time output
    same = _apply(model, x, jnp.array([[10] * 8, [900] * 8]), tok)
    np.testing.assert_allclose(np.asarray(same), np.asarray(out), rtol=0, atol=1e-6)
    # fewer frames than the chunk length work; the frame embedding is sliced
    assert _apply(model, x[:, :5], jnp.array([3, 4]), tok).shape == (2, 5, 32, 32, 3)


def test_per_frame_time_changes_only_through_adaln():
    model = _randomised()
    x, tok = _inputs()
    t = jnp.array([[500] * 8, [500] * 8])
    a = _apply(model, x, t, tok)
    b = _apply(model, x, t.at[0, 3].set(10), tok)
    assert not np.allclose(np.asarray(a[0]), np.asarray(b[0]))
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))  # the other clip is untouched


def test_text_padding_and_prompt_matter():
    model = _randomised()
    x, _ = _inputs()
    tok = Tokenizer(16)
    a = _apply(model, x, jnp.array([500, 500]), tok(["a small red circle moves left on snow"] * 2))
    b = _apply(model, x, jnp.array([500, 500]), tok(["a small blue circle moves left on snow"] * 2))
    assert float(jnp.abs(a - b).max()) > 1e-4
    # a longer padding does not change the output (padding is masked)
    long = Tokenizer(20)
    cfg20 = dataclasses.replace(TINY, text_length=20)
    m20 = _randomised(cfg20)
    m16 = nnx.merge(nnx.graphdef(_randomised(TINY)), nnx.state(m20))  # same weights, pos table differs in length only
    del m16
    c = _apply(m20, x, jnp.array([500, 500]), long(["a small red circle moves left on snow"] * 2))
    d = _apply(m20, x, jnp.array([500, 500]), long(["a small red circle moves left on snow"] * 2)[:, :16])
    np.testing.assert_allclose(np.asarray(c), np.asarray(d), atol=1e-5)


def test_bad_inputs_raise():
    model = _randomised()
    x, tok = _inputs()
    with pytest.raises(ValueError, match=r"frames of shape \(16, 16, 3\)"):
        model(x[:, :, :16, :16], jnp.array([1, 2]), tok)
    with pytest.raises(ValueError, match="9 frames"):
        model(jnp.concatenate([x, x[:, :1]], 1), jnp.array([1, 2]), tok)
    with pytest.raises(ValueError, match="multiple of patch"):
        ToyConfig(image_size=30)


def test_denoiser_adapter_declares_what_samplers_need():
    d = toy_denoiser(_randomised())
    assert d.prediction_type == "v_prediction" and d.frames_per_chunk == 8 and d.per_frame_timesteps
    assert d.frame_shape == (32, 32, 3)
    defn, params = d.split()
    x, tok = _inputs()
    apply = jax.jit(defn.apply)  # the split form under jit, as the samplers call it
    np.testing.assert_array_equal(np.asarray(apply(params, x, jnp.array([1, 2]), tok)), np.asarray(_apply(d.module, x, jnp.array([1, 2]), tok)))
    one = toy_denoiser(d.module, frames=1)  # single-frame chunks (eval_toy_images.py): the same network
    assert one.frames_per_chunk == 1 and one.frame_shape == d.frame_shape
    np.testing.assert_array_equal(np.asarray(jax.jit(one.split()[0].apply)(one.split()[1], x[:, :1], jnp.array([1, 2]), tok)),
                                  np.asarray(_apply(d.module, x[:, :1], jnp.array([1, 2]), tok)))
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match=r"frames must be an integer in \[1, 8\]"):
            toy_denoiser(d.module, frames=bad)


def test_weights_round_trip_and_strict_loading(tmp_path):
    model = _randomised()
    path = str(tmp_path / "w.safetensors")
    save_toy_weights(path, TINY, nnx.state(model, nnx.Param), {"step": 7})
    cfg, info = read_toy_config(path)
    assert cfg == TINY and info == {"step": 7}
    loaded = load_toy_model(path)
    x, tok = _inputs()
    np.testing.assert_array_equal(np.asarray(_apply(loaded, x, jnp.array([3, 700]), tok)), np.asarray(_apply(model, x, jnp.array([3, 700]), tok)))
    # a file whose tensors do not match its config is rejected with the offenders listed
    from safetensors.numpy import load_file, save_file

    tensors = load_file(path)
    tensors.pop("patch_out.kernel")
    tensors["extra.kernel"] = np.zeros(3, np.float32)
    tensors["patch_in.bias"] = np.zeros(5, np.float32)
    bad = str(tmp_path / "bad.safetensors")
    save_file(tensors, bad, metadata={"config": json.dumps(TINY.to_dict())})
    with pytest.raises(ValueError, match=r"missing \['patch_out.kernel'\] \(1\), unexpected \['extra.kernel'\] \(1\), mis-shaped \['patch_in.bias: file \(5,\), model \(32,\)'\] \(1\)"):
        load_toy_model(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_toy_model(str(tmp_path / "nope.safetensors"))


def test_shipped_weights_load_without_network():
    assert os.path.exists(DEFAULT_WEIGHTS), "the trained toy weights must be committed"
    assert os.path.getsize(DEFAULT_WEIGHTS) <= 20 * 2**20
    backbone = toy.load_default()
    assert backbone.info.get("step", 0) > 0
    x, _ = _inputs()
    tok = backbone.encode(["a large red circle moves right on grass", ""])
    out = _apply(backbone.model, x, jnp.array([500, 500]), tok)
    assert out.shape == x.shape and np.isfinite(np.asarray(out)).all()
    assert float(jnp.abs(out).mean()) > 0.1  # trained, not the zero-initialised output layer


def test_shipped_weights_match_the_committed_training_config():
    """The shipped file is what ``python experiments/train_toy.py --config experiments/configs/toy.yaml``
    exports at its last step: its model, training settings, seed and step are that config's, and
    the config file it records (a repository path) says the same as the committed one. Changing
    ``toy.yaml`` without retraining and shipping the new weights fails here."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy

    seed, model_cfg, train_cfg, _ = train_toy.load_config(train_toy.DEFAULT_CONFIG)
    shipped_cfg, extra = read_toy_config(DEFAULT_WEIGHTS)
    assert shipped_cfg == model_cfg
    assert extra["seed"] == seed and extra["step"] == train_cfg.total_steps
    # fields added to TrainConfig after the run take the value that means what the run did
    # (a new field must be added to train_toy.LEGACY_FIELDS, or this fails)
    assert train_toy.with_legacy_fields("train", extra["train"]) == train_cfg.to_dict()
    assert "init" not in extra  # from scratch, not a fine-tune of another file
    recorded = extra["config"]
    assert not os.path.isabs(recorded) and os.path.exists(os.path.join(ROOT, recorded)), recorded
    # the run section (checkpointing, time limit) does not change the weights, so it may differ
    assert train_toy.load_config(os.path.join(ROOT, recorded))[:3] == (seed, model_cfg, train_cfg)
    # the backbone is built from the same file: its model has the config's shapes
    backbone = toy.load_default()
    assert backbone.model.cfg == model_cfg and backbone.info["step"] == train_cfg.total_steps


def test_training_times_mix_scalar_and_ramps():
    t = np.asarray(sample_times(jax.random.key(0), 400, 8, 1000, 0.5))
    assert t.min() >= 0 and t.max() <= 999 and t.dtype == np.int32
    const = (t == t[:, :1]).all(1)
    assert 0.3 < const.mean() < 0.7
    assert (np.diff(t[~const], axis=1) >= 0).all()


def test_training_times_high_noise_fraction():
    T = 1000
    t = np.asarray(sample_times(jax.random.key(1), 4000, 8, T, 0.0, high_noise_fraction=1.0, high_noise_min=500))
    assert t.min() >= 500 and t.max() <= 999 and (t == t[:, :1]).all()
    t = np.asarray(sample_times(jax.random.key(2), 4000, 8, T, 0.0, high_noise_fraction=0.5, high_noise_min=500))[:, 0]
    # half of the clips uniform on [0, T), half on [500, T): P(t >= 500) = 0.75
    assert abs((t >= 500).mean() - 0.75) < 0.03 and t.min() < 100
    default = np.asarray(sample_times(jax.random.key(2), 4000, 8, T, 0.0))[:, 0]
    assert abs((default >= 500).mean() - 0.5) < 0.03
    with pytest.raises(ValueError, match=r"high_noise_min must be in \[0, 1000\), got 1000"):
        sample_times(jax.random.key(0), 4, 8, T, 0.0, high_noise_fraction=0.5, high_noise_min=1000)


def test_training_times_mid_noise_band():
    T = 1000
    t = np.asarray(sample_times(jax.random.key(3), 4000, 8, T, 0.0, mid_noise_fraction=1.0, mid_noise_range=(50, 450)))
    assert t.min() >= 50 and t.max() <= 450 and (t == t[:, :1]).all()
    assert t.min() < 60 and t.max() > 440  # both ends of the band are drawn
    # 15 % on [500, T), 40 % on [50, 450], 45 % uniform on [0, T):
    # P(t >= 500) = 0.15 + 0.45 · 0.5, P(50 <= t <= 450) = 0.40 + 0.45 · 0.401
    t = np.asarray(sample_times(jax.random.key(4), 20000, 8, T, 0.0, 0.15, 500, 0.4, (50, 450)))[:, 0]
    assert abs((t >= 500).mean() - 0.375) < 0.012
    assert abs(((t >= 50) & (t <= 450)).mean() - (0.40 + 0.45 * 0.401)) < 0.012
    # without a mid band the draws are those of a run recorded before the band existed
    np.testing.assert_array_equal(sample_times(jax.random.key(5), 64, 8, T, 0.2, 0.3, 500),
                                  sample_times(jax.random.key(5), 64, 8, T, 0.2, 0.3, 500, 0.0, (50, 450)))
    with pytest.raises(ValueError, match=r"mid_noise_range must satisfy 0 <= lo <= hi < 1000, got \(50, 1000\)"):
        sample_times(jax.random.key(0), 4, 8, T, 0.0, mid_noise_fraction=0.5, mid_noise_range=(50, 1000))
    with pytest.raises(ValueError, match=r"high_noise_fraction \+ mid_noise_fraction \+ low_noise_fraction must be <= 1, "
                                         r"got 0.7 \+ 0.5 \+ 0.0"):
        sample_times(jax.random.key(0), 4, 8, T, 0.0, 0.7, 500, 0.5, (50, 450))
    with pytest.raises(ValueError, match=r"TrainConfig.high_noise_fraction \+ mid_noise_fraction \+ low_noise_fraction must be <= 1"):
        TrainConfig(high_noise_fraction=0.7, mid_noise_fraction=0.5)
    with pytest.raises(ValueError, match=r"got 0.5 \+ 0.4 \+ 0.2"):
        TrainConfig(high_noise_fraction=0.5, mid_noise_fraction=0.4, low_noise_fraction=0.2)
    with pytest.raises(ValueError, match=r"TrainConfig.mid_noise_min must be <= mid_noise_max, got 300 > 200"):
        TrainConfig(mid_noise_min=300, mid_noise_max=200)
    with pytest.raises(ValueError, match=r"TrainConfig.mid_noise_max must be an integer >= 0, got '2.5'"):
        TrainConfig(mid_noise_max=2.5)


def test_training_times_low_noise_band():
    """The low band draws uniformly on {0, …, low_noise_max}; mixed with the other bands it adds its
    share to the lowest times; without it the draws are those of runs recorded before it existed."""
    T = 1000
    t = np.asarray(sample_times(jax.random.key(3), 30500, 8, T, 0.0, low_noise_fraction=1.0, low_noise_max=60))
    assert t.min() == 0 and t.max() == 60 and (t == t[:, :1]).all()
    counts = np.bincount(t[:, 0], minlength=61)  # uniform: 500 per value, binomial s.d. 22
    assert counts.size == 61 and np.abs(counts - 500).max() < 100 and abs(t.mean() - 30) < 0.3
    # 15 % on [500, T), 40 % on [50, 450], 20 % on [0, 60], 25 % uniform: P(t <= 60) = 0.20 + 0.25 · 0.061 + 0.40 · 11 / 401
    t = np.asarray(sample_times(jax.random.key(4), 20000, 8, T, 0.0, 0.15, 500, 0.4, (50, 450), 0.2, 60))[:, 0]
    assert abs((t <= 60).mean() - (0.20 + 0.25 * 0.061 + 0.40 * 11 / 401)) < 0.012
    assert abs((t >= 500).mean() - (0.15 + 0.25 * 0.5)) < 0.012
    np.testing.assert_array_equal(sample_times(jax.random.key(5), 64, 8, T, 0.2, 0.3, 500, 0.4, (50, 450)),
                                  sample_times(jax.random.key(5), 64, 8, T, 0.2, 0.3, 500, 0.4, (50, 450), 0.0, 60))
    with pytest.raises(ValueError, match=r"low_noise_max must be in \[0, 1000\), got 1000"):
        sample_times(jax.random.key(0), 4, 8, T, 0.0, low_noise_fraction=0.5, low_noise_max=1000)
    with pytest.raises(ValueError, match=r"TrainConfig.low_noise_max must be an integer >= 0, got '-1'"):
        TrainConfig(low_noise_max=-1)
    TrainConfig(high_noise_fraction=0.34, mid_noise_fraction=0.56, low_noise_fraction=0.1)  # sums to 1 (1.0000000000000002)


def test_frame_conditioning_starts_as_noop_and_breaks_time_reversal(tmp_path):
    """The frame-by-text adaLN term is zero at initialisation (the model computes what it would
    without it), and once trained it tells frames apart even with one time for the clip and no
    other frame-order signal (no frame embedding, no rotary embedding)."""
    x, tok = _inputs()
    t = jnp.array([500, 500])
    plain_cfg = dataclasses.replace(TINY, frame_conditioning=False, temporal_rope=False, word_frame_conditioning=False)
    plain = _randomised(plain_cfg)
    fresh = ToyVideoDiT(dataclasses.replace(plain_cfg, frame_conditioning=True), rngs=nnx.Rngs(3))
    assert float(jnp.abs(fresh.frame_out.kernel[...]).max()) == 0.0
    graphdef, state = nnx.split(fresh)
    plain_state = dict(nnx.to_flat_state(nnx.state(plain)))
    merged = nnx.merge(graphdef, nnx.from_flat_state([(p, plain_state.get(p, v)) for p, v in nnx.to_flat_state(state)]))
    np.testing.assert_array_equal(np.asarray(_apply(merged, x, t, tok)), np.asarray(_apply(plain, x, t, tok)))
    for frame_conditioning, asymmetric in ((False, False), (True, True)):
        model = _randomised(dataclasses.replace(plain_cfg, frame_conditioning=frame_conditioning))
        model.pos_time[...] = jnp.zeros_like(model.pos_time[...])
        v = _apply(model, x, t, tok)
        v_rev = _apply(model, x[:, ::-1], t, tok)[:, ::-1]
        assert (float(jnp.abs(v - v_rev).max()) > 1e-3) == asymmetric
    # weights files written before the option existed load without it
    path_cfg = {k: v for k, v in plain_cfg.to_dict().items() if k not in ("frame_conditioning", "word_frame_conditioning")}
    assert ToyConfig(**path_cfg).frame_conditioning and ToyConfig(**path_cfg).word_frame_conditioning  # new defaults
    from safetensors.numpy import save_file

    legacy = str(tmp_path / "legacy.safetensors")
    save_file({"x": np.zeros(1, np.float32)}, legacy, metadata={"config": json.dumps(path_cfg)})
    assert read_toy_config(legacy)[0] == plain_cfg


def test_word_tables_start_as_noop_ignore_padding_and_tell_frames_apart():
    """The per-word, per-frame tables (adaLN ``word_frame`` and input ``word_layout``) are zero at
    initialisation (the model computes what it would without them); padding rows and the rows of
    words not in the caption never contribute; once trained, each on its own gives a caption a
    different effect in each frame, so with no other frame-order signal (no frame embedding, no
    rotary embedding, no frame-by-text term) the model tells the frames apart."""
    from syncos_jax.backbones.toy.tokenizer import PAD

    x, tok = _inputs()
    t = jnp.array([500, 500])
    plain_cfg = dataclasses.replace(TINY, frame_conditioning=False, temporal_rope=False, word_frame_conditioning=False)
    plain = _randomised(plain_cfg)
    table_cfg = dataclasses.replace(plain_cfg, word_frame_conditioning=True)
    fresh = ToyVideoDiT(table_cfg, rngs=nnx.Rngs(3))
    for table in (fresh.word_frame, fresh.word_layout):
        assert table[...].shape == (table_cfg.vocab_size, table_cfg.frames, table_cfg.dim)
        assert float(jnp.abs(table[...]).max()) == 0.0
    graphdef, state = nnx.split(fresh)
    plain_state = dict(nnx.to_flat_state(nnx.state(plain)))
    merged = nnx.merge(graphdef, nnx.from_flat_state([(p, plain_state.get(p, v)) for p, v in nnx.to_flat_state(state)]))
    np.testing.assert_array_equal(np.asarray(_apply(merged, x, t, tok)), np.asarray(_apply(plain, x, t, tok)))

    up = Tokenizer(16).vocabulary.index("up")  # in neither caption
    for name in ("word_frame", "word_layout"):
        model = _randomised(table_cfg)
        model.pos_time[...] = jnp.zeros_like(model.pos_time[...])
        other = "word_layout" if name == "word_frame" else "word_frame"
        getattr(model, other)[...] = jnp.zeros_like(getattr(model, other)[...])
        v = _apply(model, x, t, tok)
        v_rev = _apply(model, x[:, ::-1], t, tok)[:, ::-1]
        assert float(jnp.abs(v - v_rev).max()) > 1e-3, name
        table = getattr(model, name)
        table[...] = table[...].at[PAD].set(100.0).at[up].add(5.0)
        np.testing.assert_array_equal(np.asarray(_apply(model, x, t, tok)), np.asarray(v))
        table[...] = jnp.zeros_like(table[...])  # without it, the model is symmetric in time again
        v = _apply(model, x, t, tok)
        np.testing.assert_allclose(np.asarray(_apply(model, x[:, ::-1], t, tok)[:, ::-1]), np.asarray(v), atol=1e-5)


def test_train_step_reduces_the_loss_on_a_fixed_batch():
    tc = TrainConfig(batch_size=4, learning_rate=3e-3, warmup_steps=1, total_steps=30)
    graphdef, state = init_train_state(TINY, tc, seed=0)
    batch = make_batch(0, tc, TINY, Tokenizer(16))
    key = jax.random.key(0)
    losses = []
    for _ in range(30):
        state, loss = train_step(graphdef, tc, state, batch.clips, batch.tokens, key)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
    assert int(state.step) == 30
    # the EMA lags the params
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.params, state.ema)
    assert max(jax.tree.leaves(diff)) > 0


def test_weighted_mean_and_object_loss_weights():
    """``weighted_mean`` against numpy; ``make_batch``'s weights are 1 + object_weight exactly on the
    objects' pixels of its clips and images, and absent at object_weight 0 (the plain mean)."""
    from syncos_jax.backbones.toy import world
    from syncos_jax.backbones.toy.train import object_loss_weights, v_loss, weighted_mean
    from syncos_jax.schedules import cogvideox_2b

    rng = np.random.default_rng(0)
    values, w = rng.uniform(size=(2, 3, 4, 4, 3)), rng.uniform(size=(2, 3, 4, 4, 1))
    expected = (values * w).sum() / (np.broadcast_to(w, values.shape).sum())
    np.testing.assert_allclose(float(weighted_mean(jnp.asarray(values), jnp.asarray(w))), expected, rtol=1e-6)
    np.testing.assert_allclose(float(weighted_mean(jnp.asarray(values), None)), values.mean(), rtol=1e-6)

    tc = TrainConfig(batch_size=3, image_batch_size=2, long_fraction=0.5, object_weight=4.0)
    batch = make_batch(11, tc, TINY, Tokenizer(16))
    assert batch.clip_weights.shape == (3, 8, 32, 32, 1) and batch.image_weights.shape == (2, 1, 32, 32, 1)
    _, _, tracks = world.sample_batch(11, 3, 8, tc.event_probability, tc.long_fraction)
    _, _, img_tracks = world.sample_batch(11 * 7919 + 13, 2, 1, 0.0, 0.0)
    np.testing.assert_array_equal(batch.clip_weights[..., 0], np.where(np.stack([world.object_masks(t) for t in tracks]), 5.0, 1.0))
    np.testing.assert_array_equal(batch.image_weights[..., 0], np.where(np.stack([world.object_masks(t) for t in img_tracks]), 5.0, 1.0))
    plain = make_batch(11, dataclasses.replace(tc, object_weight=0.0), TINY, Tokenizer(16))
    assert plain.clip_weights is None and plain.image_weights is None
    np.testing.assert_array_equal(plain.clips, batch.clips)  # the data do not depend on the weights
    np.testing.assert_array_equal(object_loss_weights(tracks, 0.0, 32), np.ones((3, 8, 32, 32, 1), np.float32))

    # v_loss: weights of ones are the plain mean; weights 1 + k·m split into the two means by linearity
    model = lambda x, t, tokens: 0.5 * x  # noqa: E731 (any function of x_t will do)
    args = (model, cogvideox_2b(), jnp.asarray(batch.clips), jnp.asarray(batch.tokens), jax.random.key(3), 0.2)
    m = jnp.asarray(batch.clip_weights > 1.0, jnp.float32)
    plain_loss = float(v_loss(*args))
    np.testing.assert_allclose(float(v_loss(*args, weights=jnp.ones_like(m))), plain_loss, rtol=1e-6)
    n_all, n_obj = m.size, float(m.sum())
    obj_loss = float(v_loss(*args, weights=m))
    np.testing.assert_allclose(float(v_loss(*args, weights=jnp.asarray(batch.clip_weights))),
                               (plain_loss * n_all + 4.0 * obj_loss * n_obj) / (n_all + 4.0 * n_obj), rtol=1e-5)
    assert abs(obj_loss - plain_loss) > 1e-3  # the object's pixels are not the average pixel
    with pytest.raises(ValueError, match="object_weight must be a number >= 0, got '-1.0'"):
        TrainConfig(object_weight=-1.0)


def _write_config(path, **run):
    import yaml

    cfg = {"seed": 3, "model": {"dim": 32, "depth": 1, "heads": 2},
           "train": {"batch_size": 2, "total_steps": 4, "warmup_steps": 1, "learning_rate": 1e-3, "long_fraction": 0.5,
                     "image_batch_size": 2},
           "run": {"checkpoint_every": 2, **run}}
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.slow  # compiles several training steps; ~1 min of the 15-min budget on 2 cores
def test_joint_image_batches_are_single_frames_of_fresh_clips_and_train():
    tc = TrainConfig(batch_size=2, image_batch_size=3, learning_rate=3e-3, warmup_steps=1, total_steps=30)
    batch = make_batch(5, tc, TINY, Tokenizer(16))
    assert batch.clips.shape == (2, 8, 32, 32, 3) and batch.images.shape == (3, 1, 32, 32, 3)
    assert batch.image_tokens.shape == (3, 16) and batch.image_tokens.dtype == batch.tokens.dtype
    again = make_batch(5, tc, TINY, Tokenizer(16))
    np.testing.assert_array_equal(again.images, batch.images)  # deterministic in the seed
    from syncos_jax import metrics

    readings = metrics.probe_frames(batch.images[:, 0])
    assert readings.found.all()
    none = make_batch(5, dataclasses.replace(tc, image_batch_size=0), TINY, Tokenizer(16))
    assert none.images.shape == (0, 1, 32, 32, 3) and none.image_tokens.shape == (0, 16)
    np.testing.assert_array_equal(none.clips, batch.clips)  # the clips do not depend on the images
    graphdef, state = init_train_state(TINY, tc, seed=0)
    key = jax.random.key(0)
    _, with_images = train_step(graphdef, tc, state, batch.clips, batch.tokens, key, batch.images, batch.image_tokens)
    graphdef, state = init_train_state(TINY, tc, seed=0)
    _, clips_only = train_step(graphdef, tc, state, batch.clips, batch.tokens, key)
    assert np.isfinite(float(with_images)) and float(with_images) != float(clips_only)
    with pytest.raises(ValueError, match="image_batch_size must be an integer >= 0, got '-1'"):
        TrainConfig(image_batch_size=-1)


@pytest.mark.slow  # compiles several training steps; ~1 min of the 15-min budget on 2 cores
def test_training_script_resumes_bit_for_bit(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy

    full = _write_config(tmp_path / "full.yaml")
    a, b = tmp_path / "a", tmp_path / "b"
    assert train_toy.main(["--config", full, "--workdir", str(a), "--export", str(a / "w.safetensors")]) == 0
    # b: stop after the first step (a "kill" at a time limit), then rerun without the limit: it resumes
    stop = _write_config(tmp_path / "stop.yaml", max_minutes=0)
    assert train_toy.main(["--config", stop, "--workdir", str(b), "--export", str(b / "w.safetensors")]) == 0
    assert read_toy_config(str(b / "w.safetensors"))[1]["step"] == 1
    assert json.loads((b / "run.json").read_text())["finished"] is False
    # --export-only writes the newest checkpoint's EMA (the weights the stopped run exported) and trains nothing
    assert train_toy.main(["--config", full, "--workdir", str(b), "--export", str(b / "e.safetensors"), "--export-only"]) == 0
    from safetensors.numpy import load_file

    stopped, exported = load_file(str(b / "w.safetensors")), load_file(str(b / "e.safetensors"))
    assert stopped.keys() == exported.keys() and read_toy_config(str(b / "e.safetensors"))[1]["step"] == 1
    for k in stopped:
        np.testing.assert_array_equal(stopped[k], exported[k], err_msg=k)
    assert (b / "loss.csv").read_text().count("\n") == 2
    assert train_toy.main(["--config", full, "--workdir", str(b), "--export", str(b / "w.safetensors")]) == 0
    wa, wb = load_file(str(a / "w.safetensors")), load_file(str(b / "w.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    assert (a / "loss.png").exists() and (b / "loss.csv").read_text().count("\n") == 5
    run = json.loads((b / "run.json").read_text())
    assert run["finished"] and run["sessions"] == 2 and run["steps_done"] == 4 and run["cpu_count"] >= 1
    seconds = [float(line.split(",")[2]) for line in (b / "loss.csv").read_text().splitlines()[1:]]
    assert seconds == sorted(seconds) and seconds[-1] > 0  # cumulative over both sessions
    assert "/" not in json.dumps(run) and str(tmp_path) not in (b / "settings.json").read_text()
    # the weights' metadata and the settings record the config that made them
    cfg, extra = read_toy_config(str(a / "w.safetensors"))
    assert cfg == ToyConfig(dim=32, depth=1, heads=2) and extra["seed"] == 3 and extra["train"]["long_fraction"] == 0.5
    # a settings.json written before pixel_head and unet existed is the same run (resumes); one without
    # image_batch_size meant 0 images, not this config's 2: another run (refused)
    saved = json.loads((b / "settings.json").read_text())
    del saved["model"]["pixel_head"], saved["model"]["unet"]
    (b / "settings.json").write_text(json.dumps(saved))
    assert train_toy.main(["--config", full, "--workdir", str(b), "--export", str(b / "w.safetensors")]) == 0
    del saved["train"]["image_batch_size"]
    (b / "settings.json").write_text(json.dumps(saved))
    assert train_toy.main(["--config", full, "--workdir", str(b), "--export", str(b / "w.safetensors")]) == 2
    saved["train"]["image_batch_size"] = 2
    (b / "settings.json").write_text(json.dumps(saved))
    # a workdir holding another config is refused
    other = tmp_path / "other.yaml"
    other.write_text((tmp_path / "full.yaml").read_text().replace("learning_rate: 0.001", "learning_rate: 0.5"))
    assert train_toy.main(["--config", str(other), "--workdir", str(b), "--export", str(b / "w.safetensors")]) == 2


def test_init_from_weights_sets_params_and_ema_and_refuses_another_model(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy
    from safetensors.numpy import load_file

    model_cfg = ToyConfig(dim=32, depth=1, heads=2)
    path = tmp_path / "w.safetensors"
    save_toy_weights(str(path), model_cfg, nnx.split(_randomised(model_cfg, seed=4))[1])
    state, record = train_toy.init_from_weights(str(path), model_cfg, TrainConfig())
    assert int(state.step) == 0 and record["weights"] == "w.safetensors" and len(record["sha256_16"]) == 16
    tensors = load_file(str(path))
    for tree in (state.params, state.ema):
        flat = {".".join(str(p) for p in k): np.asarray(v) for k, v in nnx.to_flat_state(tree)}
        assert flat.keys() == tensors.keys()
        for k in tensors:
            np.testing.assert_array_equal(flat[k], tensors[k], err_msg=k)
    with pytest.raises(ValueError, match="differs from the config's 'model' in dim \\(file 32, config 48\\)"):
        train_toy.init_from_weights(str(path), dataclasses.replace(model_cfg, dim=48), TrainConfig())
    assert train_toy.repo_relative(os.path.join(ROOT, "experiments", "x.yaml")) == os.path.join("experiments", "x.yaml")


def test_batch_stream_with_workers_gives_the_batches_of_the_run_in_order():
    """Batches rendered in spawned workers are those rendered in the process, step by step, in
    order (the run does not depend on --workers), and closing the stream early stops the pool."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy

    model_cfg = ToyConfig(dim=32, depth=1, heads=2)
    train_cfg = TrainConfig(batch_size=2, image_batch_size=2, long_fraction=0.5, object_weight=1.0)
    tok = Tokenizer(model_cfg.text_length)
    here = list(train_toy.batch_stream(range(3, 8), 5, train_cfg, model_cfg, tok, workers=0))
    stream = train_toy.batch_stream(range(3, 8), 5, train_cfg, model_cfg, tok, workers=2)
    there = [next(stream) for _ in range(4)]
    stream.close()  # one step left unconsumed, as when a run stops out of time
    assert not multiprocessing.active_children()  # the pool stopped with the stream
    assert len(here) == 5
    direct = make_batch(5 * 1_000_003 + 3, train_cfg, model_cfg, tok)  # the run's seed rule, step 3 first
    np.testing.assert_array_equal(here[0].clips, direct.clips)
    assert not np.array_equal(here[0].clips, here[1].clips)  # the steps differ, so the order is tested
    for a, b in zip(here, there):
        for name, x, y in zip(a._fields, a, b):
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert [b.clips.shape for b in here] == [(2, model_cfg.frames, 32, 32, 3)] * 5
    # a worker's error reaches the training loop (here: captions longer than the tokenizer takes)
    with pytest.raises(ValueError, match="at most 2 fit"):
        next(train_toy.batch_stream(range(2), 5, train_cfg, model_cfg, Tokenizer(3), workers=1))
    assert not multiprocessing.active_children()


@pytest.mark.slow  # compiles training steps; ~1 min on 2 cores
def test_training_script_fine_tunes_from_init_with_object_weights(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy
    import yaml

    config = _write_config(tmp_path / "c.yaml")
    raw = yaml.safe_load(open(config))
    raw["train"]["object_weight"] = 3.0
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    model_cfg = ToyConfig(dim=32, depth=1, heads=2)
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    save_toy_weights(str(first), model_cfg, nnx.split(_randomised(model_cfg, seed=4))[1])
    save_toy_weights(str(second), model_cfg, nnx.split(_randomised(model_cfg, seed=5))[1])
    run, out = tmp_path / "run", tmp_path / "run" / "w.safetensors"
    assert train_toy.main(["--config", config, "--workdir", str(run), "--export", str(out), "--init", str(first)]) == 0
    settings = json.loads((run / "settings.json").read_text())
    assert settings["init"]["weights"] == "first.safetensors" and settings["train"]["object_weight"] == 3.0
    assert read_toy_config(str(out))[1]["init"] == settings["init"]
    losses = [float(line.split(",")[1]) for line in (run / "loss.csv").read_text().splitlines()[1:]]
    assert len(losses) == 4 and np.isfinite(losses).all()
    # the same run from the random network, and a rerun from other weights, are other runs: refused;
    # the same weights under another name are the same run (it resumes, at its end: nothing to do)
    assert train_toy.main(["--config", config, "--workdir", str(run), "--export", str(out)]) == 2
    assert train_toy.main(["--config", config, "--workdir", str(run), "--export", str(out), "--init", str(second)]) == 2
    assert "holds a run of different settings" in capsys.readouterr().err
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(first.read_bytes())
    assert train_toy.main(["--config", config, "--workdir", str(run), "--export", str(out), "--init", str(renamed)]) == 0
    assert "resumed from step 4" in capsys.readouterr().out
    # training starts at the init: stopped after its first step (lr 0 at step 0 of the warm-up), the
    # exported EMA is the init's weights, not a random network's
    from safetensors.numpy import load_file

    stop = tmp_path / "stop.yaml"
    stop.write_text(yaml.safe_dump({**raw, "run": {"checkpoint_every": 2, "max_minutes": 0}}))
    one = tmp_path / "one"
    assert train_toy.main(["--config", str(stop), "--workdir", str(one), "--export", str(one / "w.safetensors"),
                           "--init", str(first)]) == 0
    assert read_toy_config(str(one / "w.safetensors"))[1]["step"] == 1
    start, exported = load_file(str(first)), load_file(str(one / "w.safetensors"))
    for k in start:
        np.testing.assert_allclose(exported[k], start[k], rtol=1e-6, atol=1e-7, err_msg=k)
    # train_step uses the weights: all-ones weights are the plain loss, object weights another
    tc = TrainConfig(batch_size=2, object_weight=3.0)
    batch = make_batch(0, tc, model_cfg, Tokenizer(model_cfg.text_length))
    key = jax.random.key(0)
    losses = {}
    for name, cw in (("plain", None), ("ones", np.ones_like(batch.clip_weights)), ("object", batch.clip_weights)):
        graphdef, state = init_train_state(model_cfg, tc, seed=0)
        losses[name] = float(train_step(graphdef, tc, state, batch.clips, batch.tokens, key, clip_weights=cw)[1])
    np.testing.assert_allclose(losses["ones"], losses["plain"], rtol=1e-5)
    assert abs(losses["object"] - losses["plain"]) > 1e-3 * losses["plain"]
    # --export-only needs no --init (the run's record says where it started) and keeps it in the metadata
    assert train_toy.main(["--config", config, "--workdir", str(run), "--export", str(tmp_path / "e.safetensors"),
                           "--export-only"]) == 0
    assert read_toy_config(str(tmp_path / "e.safetensors"))[1]["init"] == settings["init"]


def test_training_config_errors_name_the_key(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy

    for text, match in [("model: {dimm: 3}", "unknown keys in 'model': \\['dimm'\\]"),
                        ("train: {long_fraction: 2}", "long_fraction must be a number in \\[0, 1\\], got '2'"),
                        ("optimiser: {}", "unknown top-level keys \\['optimiser'\\]"),
                        ("run: {checkpoint_every: 0}", "checkpoint_every must be a positive integer"),
                        ("seed: -1", "'seed' must be an integer >= 0")]:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            train_toy.load_config(str(path))
        assert train_toy.main(["--config", str(path), "--workdir", str(tmp_path / "w")]) == 2
        assert "error:" in capsys.readouterr().err


def test_export_only_needs_a_run(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy

    config = _write_config(tmp_path / "c.yaml")
    out = tmp_path / "w.safetensors"
    assert train_toy.main(["--config", config, "--workdir", str(tmp_path / "none"), "--export", str(out), "--export-only"]) == 2
    assert "settings.json does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() and not out.exists()  # nothing written
    # a run whose settings exist but which has not reached its first checkpoint
    seed, model_cfg, train_cfg, run = train_toy.load_config(config)
    (tmp_path / "young").mkdir()
    (tmp_path / "young" / "settings.json").write_text(json.dumps(
        {"seed": seed, "model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "run": run, "config": "c.yaml"}))
    assert train_toy.main(["--config", config, "--workdir", str(tmp_path / "young"), "--export", str(out), "--export-only"]) == 2
    assert "no checkpoint under" in capsys.readouterr().err and not out.exists()


def test_the_committed_training_config_loads_and_trains():
    """``experiments/configs/toy.yaml`` loads, and one training step runs with its training settings
    (on a tiny model: the real one's step is a benchmark, not a test)."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy

    seed, model_cfg, train_cfg, run = train_toy.load_config(train_toy.DEFAULT_CONFIG)
    assert model_cfg.dim > TINY.dim and train_cfg.long_fraction > 0 and run["checkpoint_every"] >= 1
    tc = dataclasses.replace(train_cfg, batch_size=2)
    graphdef, state = init_train_state(TINY, tc, seed)
    batch = make_batch(0, tc, TINY, Tokenizer(TINY.text_length))
    state, loss = train_step(graphdef, tc, state, batch.clips, batch.tokens, jax.random.key(0))
    assert np.isfinite(float(loss)) and int(state.step) == 1


def test_eval_ddim_batch_is_the_ddim_sampler_batched_over_captions():
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from eval_toy_model import ddim_batch

    from syncos_jax.chunking import ChunkLayout
    from sampler_helpers import draw

    from syncos_jax.prompts import Conditioning
    from syncos_jax.samplers import ddim
    from syncos_jax.schedules import cogvideox_2b

    model = _randomised()
    den = toy_denoiser(model)
    defn, params = den.split()
    sched = cogvideox_2b(4)
    tok = Tokenizer(16)
    cond = Conditioning(tok(["a small red circle moves left on snow"]), tok([""]))
    x_T = jax.random.normal(jax.random.key(3), (8, 32, 32, 3))
    ref = draw(ddim.build, den, sched, ChunkLayout(8, 8, 4), cond, key=jax.random.key(0), initial_noise=x_T, guidance_scale=3.0)
    # a batch of two clips with two captions: each clip is its own single-caption DDIM run
    tokens = np.concatenate([cond.prompts, tok(["a large blue square moves up on grass"])])
    x_T2 = jnp.stack([x_T, -x_T])
    ours = ddim_batch(defn, params, sched, x_T2, tokens, np.concatenate([cond.uncond, cond.uncond]), 3.0)
    np.testing.assert_allclose(np.asarray(ours[0]), np.asarray(ref.latents), rtol=0, atol=1e-5)
    other = draw(ddim.build, den, sched, ChunkLayout(8, 8, 4), Conditioning(tokens[1:], cond.uncond), key=jax.random.key(0),
                 initial_noise=-x_T, guidance_scale=3.0)
    np.testing.assert_allclose(np.asarray(ours[1]), np.asarray(other.latents), rtol=0, atol=1e-5)

    # stochastic DDIM: clip b is the sampler's eta = 1 run under split(key, B)[b]; eta = 0 ignores the key
    assert np.array_equal(np.asarray(ddim_batch(defn, params, sched, x_T2, tokens, np.concatenate([cond.uncond, cond.uncond]), 3.0,
                                                eta=0.0, key=jax.random.key(9))), np.asarray(ours))
    k = jax.random.key(5)
    noisy = ddim_batch(defn, params, sched, x_T2, tokens, np.concatenate([cond.uncond, cond.uncond]), 3.0, eta=1.0, key=k)
    ref1 = draw(ddim.build, den, sched, ChunkLayout(8, 8, 4), cond, key=jax.random.split(k, 2)[0], initial_noise=x_T,
                guidance_scale=3.0, eta=1.0)
    np.testing.assert_allclose(np.asarray(noisy[0]), np.asarray(ref1.latents), rtol=0, atol=1e-5)
    assert float(jnp.max(jnp.abs(noisy[0] - ours[0]))) > 1e-2  # the fresh noise is used


def test_eval_judge_and_confusion_on_renders_and_on_a_swapped_clip():
    """On real renders every clip is judged right and the confusion matrices are diagonal; a clip
    of another shape and direction lands in the off-diagonal cell it should."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from eval_toy_model import accuracies, confusion, format_confusion, identity_histogram, judge, spread

    from syncos_jax.backbones.toy import world

    rng = np.random.default_rng(0)
    texts = ["a large red circle moves left on snow", "a small blue square moves up on grass",
             "a large cyan triangle stays still on night"]
    judged = [judge(t, world.render(world.track_from_caption(t, 8, rng))) for t in texts]
    assert all(j[k] for j in judged for k in ("colour", "shape", "size", "background", "motion"))
    shape = np.array(confusion(judged, "shape"))
    assert shape.shape == (3, 4) and np.array_equal(shape[:, :3], np.eye(3, dtype=int)) and shape[:, 3].sum() == 0
    # a square moving right, judged against a caption asking for a circle moving left
    clip = world.render(world.track_from_caption("a large red square moves right on snow", 8, rng))
    j = judge("a large red circle moves left on snow", clip)
    assert not j["shape"] and not j["motion"] and j["colour"]
    motion = np.array(confusion([j], "motion"))
    left, right = world.MOTION_NAMES.index("left"), world.MOTION_NAMES.index("right")
    assert motion[left, right] == 1 and motion.sum() == 1
    assert np.array(confusion([j], "shape"))[world.SHAPES.index("circle"), world.SHAPES.index("square")] == 1
    table = format_confusion(confusion(judged, "size"), world.SIZE_NAMES)
    assert table.splitlines()[0].split() == ["small", "large", "none"]
    # the unprompted identity: constant on renders; a pattern switched after 3 of 8 frames scores 5/8
    assert all(j["unprompted"] == 1.0 and j["unprompted_clip"] for j in judged)
    text = "a large red square stays still on snow"
    tr = world.track_from_caption(text, 8, rng, shade="mid", pattern="plain")
    tr = tr._replace(pattern=np.array([3, 3, 3, 0, 0, 0, 0, 0]))
    j = judge(text, world.render(tr))
    assert j["unprompted"] == 5 / 8 and not j["unprompted_clip"]
    assert j["unprompted_pattern"] == 5 / 8 and j["unprompted_shade"] == 1.0 and j["still"] and not judged[0]["still"]
    acc = accuracies(judged + [j])  # the still clips: judged[2] (kept) and j; the moving: judged[0], judged[1]
    assert acc["unprompted_still"] == (1 + 5 / 8) / 2 and acc["unprompted_moving"] == 1.0
    assert acc["unprompted_pattern"] == (3 + 5 / 8) / 4 and acc["unprompted_shade"] == 1.0
    assert acc["unprompted_pattern_still"] == (1 + 5 / 8) / 2 and acc["unprompted_shade_moving"] == 1.0
    assert j["identity"] == {"shade": world.SHADE_NAMES.index("mid"), "pattern": world.PATTERNS.index("plain"),
                             "light": int(tr.light[0])}
    assert j["unprompted_light"] == 1.0 and acc["unprompted_light"] == 1.0  # the light is the scene's: kept
    hist = identity_histogram(judged + [j])
    assert hist["pattern"]["plain"] == 1 + sum(jj["identity"]["pattern"] == 0 for jj in judged)
    assert sum(hist["shade"].values()) == 4 and hist["shade"]["none"] == 0
    assert hist["light"][world.LIGHT_NAMES[tr.light[0]]] == 1 + sum(jj["identity"]["light"] == tr.light[0] for jj in judged)
    assert sum(hist["light"].values()) == 4 and hist["light"]["none"] == 0
    from eval_toy_model import SHADE_SCALE_BINS, shade_scale_summary

    summary = shade_scale_summary(judged)  # renders: one spike per shade drawn, no spread within a clip
    assert sum(summary["counts"]) == 24 and summary["within_clip_std"] == pytest.approx(0.0, abs=1e-9)
    for jj in judged:
        shade = world.SHADES[world.SHADE_NAMES[jj["identity"]["shade"]]]
        assert summary["counts"][int(np.searchsorted(SHADE_SCALE_BINS, shade, side="right")) - 1] >= 8
    made = shade_scale_summary([{"shade_scale": [0.7, 0.9, np.nan]}, {"shade_scale": [2.0]}])  # NaN: no object
    assert made["counts"][int(np.searchsorted(SHADE_SCALE_BINS, 0.7, side="right")) - 1] == 1
    assert made["counts"][-1] == 1 and sum(made["counts"]) == 3 and made["within_clip_std"] == pytest.approx(0.1)
    even = {"shade": {"dark": 2, "mid": 2, "bright": 2, "none": 0}, "pattern": {"plain": 2, "capped": 1, "halved": 2, "spotted": 1, "none": 0}}
    assert spread(even) and not spread({**even, "shade": {"dark": 5, "mid": 0, "bright": 1, "none": 0}})


def test_paired_differences_are_clip_by_clip_means_with_their_standard_error():
    """paired_differences against hand-computed means and standard errors (ddof 1)."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from eval_toy_model import PAIRED, paired_differences

    def clip(right: bool, kept: float) -> dict:
        return {**{k: right for k in PAIRED}, "unprompted": kept, "unprompted_shade": kept, "unprompted_pattern": 1.0}

    a = [clip(True, 1.0), clip(True, 0.5), clip(False, 0.75)]
    b = [clip(False, 0.5), clip(True, 0.5), clip(False, 1.0)]
    got = paired_differences(a, b)
    assert got["shape"]["mean"] == pytest.approx(1 / 3) and got["shape"]["n"] == 3
    assert got["shape"]["se"] == pytest.approx(np.std([1, 0, 0], ddof=1) / np.sqrt(3))
    assert got["unprompted"]["mean"] == pytest.approx((0.5 + 0.0 - 0.25) / 3)
    assert got["unprompted_pattern"]["mean"] == 0.0 and got["unprompted_pattern"]["se"] == 0.0
    assert all(v["mean"] == 0.0 for v in paired_differences(a, a).values())
    with pytest.raises(ValueError, match="3 judged against 2"):
        paired_differences(a, b[:2])


def test_agreement_baselines_count_frame_pairs_within_and_across_clips():
    """``agreement_baselines`` against a brute-force count over every ordered pair of frames (pairs
    with a frame without an object, ``-1``, left out)."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from eval_toy_model import agreement_baselines

    rng = np.random.default_rng(3)
    clips = [rng.integers(-1, 4, size=8) for _ in range(5)]
    within = [(a == b) for v in clips for i, a in enumerate(v) for j, b in enumerate(v) if i != j and a >= 0 and b >= 0]
    across = [(a == b) for ci, v in enumerate(clips) for cj, w in enumerate(clips) if ci != cj
              for a in v for b in w if a >= 0 and b >= 0]
    got = agreement_baselines([{"frame_identity": v.tolist()} for v in clips])
    assert got["within_clip"] == pytest.approx(np.mean(within), abs=1e-12)
    assert got["across_clips"] == pytest.approx(np.mean(across), abs=1e-12)
    assert agreement_baselines([{"frame_identity": [2, 2]}, {"frame_identity": [2, -1]}]) == {"within_clip": 1.0, "across_clips": 1.0}
    assert agreement_baselines([{"frame_identity": [-1, -1]}]) == {"within_clip": None, "across_clips": None}
    lights = [{"frame_light": v.tolist()} for v in clips]  # the same count under another key (the scene's light)
    assert agreement_baselines(lights, "frame_light") == got


def test_light_strength_summary_is_the_median_clip_amplitude_and_wobble():
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from eval_toy_model import light_strength_summary

    a = np.array([[0.03, 0.0], [0.01, 0.0]])  # mean (0.02, 0): amplitude 0.02, each frame 0.01 away
    b = np.array([[0.0, -0.08], [0.0, -0.08], [0.0, -0.08]])  # a steady full-strength ramp
    c = np.array([[0.05, 0.0], [-0.05, 0.0]])  # a ramp that turns: mean 0, frames 0.05 away
    got = light_strength_summary([{"light_vector": v} for v in (a, b, c)])
    assert got["amplitude"] == pytest.approx(0.02, abs=1e-12) and got["wobble"] == pytest.approx(0.01, abs=1e-12)
    assert got["world_amplitude"] == world.LIGHT_AMPLITUDE
    assert light_strength_summary([]) == {"amplitude": None, "wobble": None, "world_amplitude": world.LIGHT_AMPLITUDE}


def test_depthwise_conv_matches_lax_grouped_convolution():
    from syncos_jax.backbones.toy.model import DepthwiseConv3x3

    conv = DepthwiseConv3x3(5, rngs=nnx.Rngs(0))
    conv.bias[...] = jax.random.normal(jax.random.key(2), (5,))
    x = jax.random.normal(jax.random.key(1), (2, 3, 6, 7, 5))  # [B, f, rows, cols, D]
    ref = jax.lax.conv_general_dilated(
        x.reshape(6, 6, 7, 5), conv.kernel[...][:, :, None, :], (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=5,
    ).reshape(x.shape) + conv.bias[...]
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(ref), atol=1e-5, rtol=1e-5)


def test_local_mixing_starts_as_identity_and_older_files_load_without_it(tmp_path):
    """The local mixing layer's output projection is zero at initialisation: a fresh model with it
    computes exactly what the same weights compute without it."""
    x, tok = _inputs()
    t = jnp.array([[10, 100, 200, 300, 400, 500, 600, 700], [999] * 8])
    plain_cfg = dataclasses.replace(TINY, local_mixing=False)
    plain = _randomised(plain_cfg)
    fresh = ToyVideoDiT(TINY, rngs=nnx.Rngs(3))
    assert float(jnp.abs(fresh.blocks[0].local_out.kernel[...]).max()) == 0.0
    graphdef, state = nnx.split(fresh)
    plain_state = dict(nnx.to_flat_state(nnx.state(plain)))
    merged = nnx.merge(graphdef, nnx.from_flat_state([(p, plain_state.get(p, v)) for p, v in nnx.to_flat_state(state)]))
    assert merged.blocks[0].local is not None and plain.blocks[0].local is None
    np.testing.assert_allclose(np.asarray(_apply(merged, x, t, tok)), np.asarray(_apply(plain, x, t, tok)), atol=1e-6)
    # a file written before the field existed has no 'local_mixing' in its config: it loads as False
    from safetensors.numpy import load_file, save_file

    path = str(tmp_path / "old.safetensors")
    save_toy_weights(path, plain_cfg, nnx.state(plain, nnx.Param), {"step": 3})
    legacy = {k: v for k, v in plain_cfg.to_dict().items() if k != "local_mixing"}
    save_file(load_file(path), str(tmp_path / "legacy.safetensors"), metadata={"config": json.dumps(legacy)})
    assert read_toy_config(str(tmp_path / "legacy.safetensors"))[0] == plain_cfg


def test_temporal_rope_is_relative_and_breaks_time_reversal():
    from syncos_jax.backbones.toy.model import rope_angles, rotate

    q = jax.random.normal(jax.random.key(0), (1, 8, 2, 6))
    k = jax.random.normal(jax.random.key(1), (1, 8, 2, 6))
    ang = rope_angles(8, 6)
    rq, rk = rotate(q, ang), rotate(k, ang)
    np.testing.assert_allclose(np.linalg.norm(rq, axis=-1), np.linalg.norm(q, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rk, axis=-1), np.linalg.norm(k, axis=-1), rtol=1e-5)
    # the same query and key vectors placed at positions (i, j) score as at (i + 3, j + 3)
    same_q = jnp.broadcast_to(q[:, :1], q.shape)
    same_k = jnp.broadcast_to(k[:, :1], k.shape)
    s = jnp.einsum("bnhd,bmhd->bhnm", rotate(same_q, ang), rotate(same_k, ang))
    np.testing.assert_allclose(np.asarray(s[..., 1, 4]), np.asarray(s[..., 4, 7]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(s[..., 1, 4]), np.asarray(s[..., 4, 1]), atol=1e-3)
    # without frame order a model cannot tell "moves left" from "moves right" played backwards
    x, tok = _inputs()
    t = jnp.array([500, 500])
    for rope, asymmetric in ((False, False), (True, True)):
        cfg = dataclasses.replace(TINY, temporal_rope=rope, frame_conditioning=False, word_frame_conditioning=False)
        model = _randomised(cfg)
        model.pos_time[...] = jnp.zeros_like(model.pos_time[...])
        v = _apply(model, x, t, tok)
        v_rev = _apply(model, x[:, ::-1], t, tok)[:, ::-1]
        assert (float(jnp.abs(v - v_rev).max()) > 1e-3) == asymmetric


def test_caption_effect_against_an_oracle_model():
    """experiments/caption_sensitivity.py: a model that returns the conditional means exactly has
    correlation 1 and the oracle's rms; one that ignores the word has rms 0."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from caption_sensitivity import caption_effect, conditional_mean

    a = conditional_mean("a small red circle moves left on snow", 20, 0)
    b = conditional_mean("a small red circle moves right on snow", 20, 1)
    assert a.shape == (8, 32, 32, 3) and np.abs(a - b).max() > 0.5
    eps = np.random.default_rng(0).normal(size=a.shape)
    exact = caption_effect(lambda x: np.stack([a, b]), a, b, 0.0, 1.0, eps)
    assert exact["corr"] == pytest.approx(1.0, abs=1e-9)
    assert exact["model_rms"] == pytest.approx(exact["oracle_rms"]) and exact["oracle_rms"] > 0.05
    blind = caption_effect(lambda x: x * 0.3, a, b, 0.5, 0.8, eps)  # same input for both: no difference
    assert blind["model_rms"] == 0.0 and blind["corr"] == 0.0
    reversed_ = caption_effect(lambda x: np.stack([b, a]), a, b, 0.0, 1.0, eps)
    assert reversed_["corr"] == pytest.approx(-1.0, abs=1e-9)


def test_conv3x3_matches_lax_convolution():
    from syncos_jax.backbones.toy.model import Conv3x3

    conv = Conv3x3(4, 5, rngs=nnx.Rngs(0))
    conv.bias[...] = jax.random.normal(jax.random.key(2), (5,))
    x = jax.random.normal(jax.random.key(1), (2, 3, 6, 7, 4))  # [B, f, H, W, C_in]: leading axes pass through
    ref = jax.lax.conv_general_dilated(x.reshape(6, 6, 7, 4), conv.kernel[...], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")).reshape(2, 3, 6, 7, 5) + conv.bias[...]
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(ref), atol=1e-5, rtol=1e-5)
    assert float(jnp.abs(Conv3x3(4, 5, rngs=nnx.Rngs(0), zero=True).kernel[...]).max()) == 0.0


def test_pixel_head_starts_at_zero_is_local_at_full_resolution_and_round_trips(tmp_path):
    """``pixel_head``: the pixel path's output convolution is zero-initialised, so a fresh model computes
    exactly what the same weights compute without it (v = 0 at the start); the skip from the noisy input reaches each output pixel through two ``3×3`` convolutions
    only, so with the transformer's decoder silenced, output pixel (i, j) of frame k depends on input
    pixels within 2 of (i, j) in frame k and nothing else; weights round-trip, and the field is
    checked."""
    cfg = dataclasses.replace(TINY, pixel_head=4)
    x, tok = _inputs()
    t = jnp.array([10, 900])
    fresh = ToyVideoDiT(cfg, rngs=nnx.Rngs(0))
    assert float(jnp.abs(_apply(fresh, x, t, tok)).max()) == 0.0
    plain = _randomised(TINY)  # a pixel path whose output convolution is still zero adds nothing
    graphdef, state = nnx.split(fresh)
    plain_state = dict(nnx.to_flat_state(nnx.state(plain)))
    merged = nnx.merge(graphdef, nnx.from_flat_state([(p, plain_state.get(p, v)) for p, v in nnx.to_flat_state(state)]))
    np.testing.assert_array_equal(np.asarray(_apply(merged, x, t, tok)), np.asarray(_apply(plain, x, t, tok)))
    y = jax.random.normal(jax.random.key(5), (2, 3, 32, 32, 5))  # the pixel path's w channels: placed patch by patch
    np.testing.assert_array_equal(np.asarray(fresh.unpatchify(fresh.patchify(y), 32, 32)), np.asarray(y))
    assert fresh.patchify(y)[0, 0, 1].reshape(4, 4, 5)[2, 3, 4] == y[0, 0, 2, 4 + 3, 4]  # token 1 = rows 0-3, cols 4-7
    model = _randomised(cfg)
    out = _apply(model, x, t, tok)
    assert out.shape == x.shape and float(jnp.abs(out).std()) > 1e-3
    for layer in (model.patch_out, model.pixel_feat):  # silence what the tokens decode to
        layer.kernel[...] = jnp.zeros_like(layer.kernel[...])
        layer.bias[...] = jnp.zeros_like(layer.bias[...])
    jac = jax.jit(jax.grad(lambda xx: model(xx, t, tok)[0, 3, 16, 9, 1]))(x)  # [B, f, H, W, C]
    support = np.argwhere(np.abs(np.asarray(jac)).sum(-1) > 0)
    assert len(support) and set(support[:, 0]) == {0} and set(support[:, 1]) == {3}
    assert support[:, 2].min() == 13 and support[:, 2].max() == 19 and support[:, 3].min() == 6 and support[:, 3].max() == 12
    path = str(tmp_path / "px.safetensors")
    save_toy_weights(path, cfg, nnx.state(model, nnx.Param), {"step": 1})
    loaded = load_toy_model(path)
    assert loaded.cfg == cfg
    np.testing.assert_array_equal(np.asarray(_apply(loaded, x, t, tok)), np.asarray(_apply(model, x, t, tok)))
    from safetensors.numpy import load_file, save_file  # a file written before the fields existed: pixel_head, unet 0

    legacy = {k: v for k, v in TINY.to_dict().items() if k not in ("pixel_head", "unet")}
    save_file(load_file(path), str(tmp_path / "legacy.safetensors"), metadata={"config": json.dumps(legacy)})
    assert read_toy_config(str(tmp_path / "legacy.safetensors"))[0] == TINY
    with pytest.raises(ValueError, match="pixel_head"):
        ToyConfig(pixel_head=-1)


def test_pixel_film_grows_from_a_pixel_head_file_as_a_noop_and_gates_the_pixel_path(tmp_path):
    """``pixel_film``: ``--init`` grows it from a ``pixel_head`` file (every file parameter kept, the
    FiLM projection zero), so the grown model computes exactly the file's function; a scale of −1
    on the skip is the model whose input convolution is silenced, and on the hidden features the
    model whose output convolution sees zeros; it round-trips, needs ``pixel_head``, and cannot be dropped
    by ``--init``."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy

    base = dataclasses.replace(TINY, pixel_head=4)
    cfg = dataclasses.replace(base, pixel_film=True)
    x, tok = _inputs()
    t = jnp.array([10, 900])
    path = str(tmp_path / "px.safetensors")
    file_model = _randomised(base, seed=3)
    save_toy_weights(path, base, nnx.state(file_model, nnx.Param))
    state, record = train_toy.init_from_weights(path, cfg, TrainConfig(), seed=7)
    assert record["grown"] == ["pixel_film"]
    grown = nnx.merge(nnx.graphdef(ToyVideoDiT(cfg, rngs=nnx.Rngs(0))), state.params)
    assert float(jnp.abs(grown.pixel_mod.kernel[...]).max()) == 0.0
    np.testing.assert_array_equal(np.asarray(_apply(grown, x, t, tok)), np.asarray(_apply(file_model, x, t, tok)))

    w = base.pixel_head
    for part, silenced in ((0, "stem"), (2, "head_out")):  # scale −1 on the skip (s1) or the hidden features (s2)
        bias = np.zeros(4 * w, np.float32)
        bias[part * w:(part + 1) * w] = -1.0
        grown.pixel_mod.bias[...] = jnp.asarray(bias)
        reference = nnx.merge(*nnx.split(file_model))
        layer = getattr(reference, silenced)  # its input is zero: only its bias is left (gelu(0) = 0 for the stem)
        layer.kernel[...] = jnp.zeros_like(layer.kernel[...])
        if silenced == "stem":
            layer.bias[...] = jnp.zeros_like(layer.bias[...])
        np.testing.assert_allclose(np.asarray(_apply(grown, x, t, tok)), np.asarray(_apply(reference, x, t, tok)),
                                   atol=1e-6, err_msg=silenced)
    grown.pixel_mod.kernel[...] = 0.1 * jax.random.normal(jax.random.key(1), grown.pixel_mod.kernel[...].shape)
    film_path = str(tmp_path / "film.safetensors")
    save_toy_weights(film_path, cfg, nnx.state(grown, nnx.Param))
    loaded = load_toy_model(film_path)
    assert loaded.cfg == cfg
    np.testing.assert_array_equal(np.asarray(_apply(loaded, x, t, tok)), np.asarray(_apply(grown, x, t, tok)))
    assert read_toy_config(path)[0].pixel_film is False  # files written before the field: off
    with pytest.raises(ValueError, match="pixel_film \\(file True, config False\\)"):
        train_toy.init_from_weights(film_path, base, TrainConfig())
    with pytest.raises(ValueError, match="pixel_film=true .* needs pixel_head > 0"):
        ToyConfig(pixel_film=True)


def test_space_to_depth_layout_and_inverse():
    """``space_to_depth`` stacks each ``2×2`` block row-major on channels: ``out[n, i, j, (2a + b)·C + c] =
    x[n, 2i + a, 2j + b, c]``; ``depth_to_space`` inverts it."""
    from syncos_jax.backbones.toy.model import depth_to_space, space_to_depth

    x = jnp.arange(2 * 6 * 4 * 3, dtype=jnp.float32).reshape(2, 6, 4, 3)
    s = np.asarray(space_to_depth(x))
    assert s.shape == (2, 3, 2, 12)
    xs = np.asarray(x)
    for n, i, j, a, b, c in [(0, 0, 0, 0, 1, 2), (1, 2, 1, 1, 0, 0), (1, 1, 0, 1, 1, 1)]:
        assert s[n, i, j, (2 * a + b) * 3 + c] == xs[n, 2 * i + a, 2 * j + b, c]
    np.testing.assert_array_equal(np.asarray(depth_to_space(space_to_depth(x))), xs)


def test_resblock_matches_a_numpy_oracle():
    """The U-Net's residual block against a transcription with ``lax.conv_general_dilated`` and a
    numpy GroupNorm (per sample over ``H, W`` and each group of channels) and FiLM:
    ``skip(x) + conv₂(silu(gn(conv₁(silu(gn_affine(x))))·(1 + scale) + shift))``."""
    from syncos_jax.backbones.toy.model import ResBlock

    blk = ResBlock(12, 20, 7, rngs=nnx.Rngs(0))  # groups: gcd(12, 8) = 4 of 3 channels, gcd(20, 8) = 4 of 5
    graphdef, state = nnx.split(blk)
    blk = nnx.merge(graphdef, _perturbed(state, 1))  # conv2 starts at zero, the norm's scale at one
    x = np.asarray(jax.random.normal(jax.random.key(2), (2, 6, 5, 12))) * np.linspace(0.5, 3, 12) + 0.7
    c = np.asarray(jax.random.normal(jax.random.key(3), (2, 7)))

    def gn(a, groups, scale=None, bias=None):
        n, h, w, ch = a.shape
        g = a.astype(np.float64).reshape(n, h, w, groups, ch // groups)
        g = (g - g.mean((1, 2, 4), keepdims=True)) / np.sqrt(g.var((1, 2, 4), keepdims=True) + 1e-6)
        g = g.reshape(n, h, w, ch)
        return g if scale is None else g * np.asarray(scale) + np.asarray(bias)

    def silu(a):
        return a / (1 + np.exp(-a))

    def conv(a, layer):
        out = jax.lax.conv_general_dilated(jnp.asarray(a, jnp.float32), layer.kernel[...], (1, 1), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return np.asarray(out, np.float64) + np.asarray(layer.bias[...])

    film = silu(c) @ np.asarray(blk.film.kernel[...]) + np.asarray(blk.film.bias[...])
    shift, scale = film[:, None, None, :20], film[:, None, None, 20:]
    h = conv(silu(gn(x, 4, blk.norm_in.scale[...], blk.norm_in.bias[...])), blk.conv1)
    h = conv(silu(gn(h, 4) * (1 + scale) + shift), blk.conv2)
    ref = x @ np.asarray(blk.skip.kernel[...]) + np.asarray(blk.skip.bias[...]) + h
    np.testing.assert_allclose(np.asarray(blk(jnp.asarray(x), jnp.asarray(c))), ref, atol=5e-5, rtol=5e-5)


def test_unet_starts_at_zero_keeps_frames_apart_outside_the_tokens_and_round_trips(tmp_path):
    """``unet = w``: the output convolution is zero-initialised (v = 0 at the start); the
    convolutional levels work frame by frame, so with the token grid's decoder silenced output frame
    k of clip b depends on input frame k of clip b only, while with it the temporal attention
    reaches every frame of the clip (and no other clip); weights round-trip; the field is checked."""
    cfg = dataclasses.replace(TINY, unet=4)
    x, tok = _inputs()
    t = jnp.array([10, 900])
    fresh = ToyVideoDiT(cfg, rngs=nnx.Rngs(0))
    assert fresh.patch_in is None and fresh.patch_out is None
    assert float(jnp.abs(_apply(fresh, x, t, tok)).max()) == 0.0
    model = _randomised(cfg)
    out = _apply(model, x, t, tok)
    assert out.shape == x.shape and float(jnp.abs(out).std()) > 1e-3

    def support():
        jac = jax.jit(jax.grad(lambda xx: model(xx, t, tok)[0, 3, 16, 9, 1]))(x)  # [B, f, H, W, C]
        return np.argwhere(np.abs(np.asarray(jac)).sum((2, 3, 4)) > 0)

    assert {tuple(s) for s in support()} == {(0, k) for k in range(8)}
    model.up_half.kernel[...] = jnp.zeros_like(model.up_half.kernel[...])  # silence the tokens' decoder
    assert {tuple(s) for s in support()} == {(0, 3)}
    path = str(tmp_path / "unet.safetensors")
    save_toy_weights(path, cfg, nnx.state(model, nnx.Param), {"step": 1})
    loaded = load_toy_model(path)
    assert loaded.cfg == cfg
    np.testing.assert_array_equal(np.asarray(_apply(loaded, x, t, tok)), np.asarray(_apply(model, x, t, tok)))
    for bad, match in [(dict(unet=-1), "unet"), (dict(unet=4, patch=2), "patch=4"), (dict(unet=4, pixel_head=4), "alternatives")]:
        with pytest.raises(ValueError, match=match):
            ToyConfig(**bad)


def test_joint_attention_block_matches_a_numpy_oracle_and_round_trips(tmp_path):
    """``joint_attention``: with the block's other sub-layers gated off, ``Block(h)`` is
    ``h + Attn(LN(h))`` over all ``f·P`` tokens of the clip, queries and keys rotated by their
    *frame* index — checked against softmax attention written out in numpy (frame-major token
    order, rotary halves as in :func:`rotate`); weights round-trip; a file without the field loads
    as factorised attention."""
    from syncos_jax.backbones.toy.model import Block

    cfg = dataclasses.replace(TINY, joint_attention=True, local_mixing=False)
    B, f, P, D, H = 2, 3, cfg.tokens_per_frame, cfg.dim, cfg.heads
    blk = Block(cfg, rngs=nnx.Rngs(3))
    assert blk.spatial is None and blk.temporal is None and blk.ada.kernel.shape == (D, 7 * D)
    bias = np.zeros((7, D), np.float32)
    bias[2] = 1.0  # the joint attention's gate open; shifts, scales, the cross and MLP gates 0
    blk.ada.bias[...] = jnp.asarray(bias.reshape(-1))
    rng = np.random.default_rng(0)
    h = rng.standard_normal((B, f, P, D)).astype(np.float32)
    c = rng.standard_normal((B, f, D)).astype(np.float32)  # ada's kernel is zero: c does not matter
    text = jnp.asarray(rng.standard_normal((B, 4, D)).astype(np.float32))
    out = np.asarray(jax.jit(lambda hh: blk(hh, jnp.asarray(c), text, jnp.ones((B, 4), bool)))(jnp.asarray(h)))

    def W(layer):
        return np.asarray(layer.kernel[...], np.float64), np.asarray(layer.bias[...], np.float64)

    x = h.astype(np.float64).reshape(B, f * P, D)
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    (wq, bq), (wkv, bkv), (wo, bo) = W(blk.joint.q), W(blk.joint.kv), W(blk.joint.out)
    q, kv = x @ wq + bq, x @ wkv + bkv
    k, v = kv[..., :D], kv[..., D:]
    hd = D // H
    frame = np.repeat(np.arange(f), P)  # token i = (frame i // P, patch i % P)
    ang = frame[:, None] * 100.0 ** (-np.arange(0, hd, 2) / hd)  # [fP, hd/2]

    def rot(z):  # z: [B, N, H, hd]
        a, b = z[..., : hd // 2], z[..., hd // 2:]
        cs, sn = np.cos(ang)[:, None], np.sin(ang)[:, None]
        return np.concatenate([a * cs - b * sn, a * sn + b * cs], -1)

    q, k, v = (z.reshape(B, f * P, H, hd) for z in (q, k, v))
    q, k = rot(q), rot(k)
    s = np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(hd)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    att = np.einsum("bhnm,bmhd->bnhd", p, v).reshape(B, f * P, D) @ wo + bo
    np.testing.assert_allclose(out, h + att.reshape(B, f, P, D), atol=2e-5, rtol=2e-5)

    model = _randomised(dataclasses.replace(TINY, joint_attention=True))
    xin, tok = _inputs()
    t = jnp.array([10, 900])
    y = _apply(model, xin, t, tok)
    assert y.shape == xin.shape and float(jnp.abs(y).std()) > 1e-3
    path = str(tmp_path / "joint.safetensors")
    save_toy_weights(path, model.cfg, nnx.state(model, nnx.Param), {"step": 1})
    loaded = load_toy_model(path)
    assert loaded.cfg.joint_attention
    np.testing.assert_array_equal(np.asarray(_apply(loaded, xin, t, tok)), np.asarray(y))
    from safetensors.numpy import load_file, save_file  # a file written before the field existed

    legacy = {k_: v_ for k_, v_ in TINY.to_dict().items() if k_ != "joint_attention"}
    save_file(load_file(path), str(tmp_path / "legacy.safetensors"), metadata={"config": json.dumps(legacy)})
    assert read_toy_config(str(tmp_path / "legacy.safetensors"))[0] == TINY
    with pytest.raises(ValueError, match="joint_attention"):
        ToyConfig(joint_attention=1)


def test_steps_per_second_skips_the_compile_and_needs_rows(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy_timed

    path = tmp_path / "loss.csv"
    # step 0 takes 30 s (the compile), steps 1-4 are fast (batches rendered ahead), then 4 steps per second
    rows = [(0, 30.0)] + [(s, 30.0 + 0.01 * s) for s in range(1, 5)] + [(s, 30.04 + 0.25 * (s - 4)) for s in range(5, 25)]
    path.write_text("step,loss,seconds\n" + "".join(f"{s},0.5,{t}\n" for s, t in rows))
    rate, first = train_toy_timed.steps_per_second(str(path), skip=5)
    assert rate == pytest.approx(4.0, rel=1e-9) and first == 30.0
    assert train_toy_timed.steps_per_second(str(path), skip=1)[0] > 4.5  # the rendered-ahead steps inflate it
    with pytest.raises(ValueError, match="25 steps, too few to measure a rate after skipping 16"):
        train_toy_timed.steps_per_second(str(path), skip=16)


@pytest.mark.slow  # two tiny training runs with a spawned worker; ~1 min on 2 cores
def test_timed_training_fits_the_schedule_to_the_measured_rate(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import train_toy_timed
    import yaml

    config = _write_config(tmp_path / "c.yaml")
    work = tmp_path / "run"
    argv = ["--config", config, "--minutes", "0.05", "--calibrate", "14", "--workers", "1",
            "--workdir", str(work), "--export", str(work / "w.safetensors")]
    assert train_toy_timed.main(argv) == 0
    timed = json.loads((work / "timed.json").read_text())
    rate, first = train_toy_timed.steps_per_second(str(work / "calibration" / "loss.csv"), skip=4)
    expected = max(int(rate * 60 * 0.05 * 0.95), 2)
    assert timed["total_steps"] == expected and timed["steps_per_second"] == pytest.approx(rate, abs=1e-3)
    resolved = yaml.safe_load((work / "config.yaml").read_text())
    original = yaml.safe_load(open(config))
    assert resolved["train"] == {**original["train"], "total_steps": expected}
    assert resolved["model"] == original["model"] and resolved["seed"] == original["seed"]
    assert resolved["run"]["max_minutes"] == pytest.approx(0.05 * 1.1 + 2 * first / 60, abs=1e-3)
    settings = json.loads((work / "settings.json").read_text())
    assert settings["train"]["total_steps"] == expected
    assert read_toy_config(str(work / "w.safetensors"))[0] == ToyConfig(**original["model"])
    # a rerun resumes without calibrating again (another --workers is the same run) ...
    capsys.readouterr()
    assert train_toy_timed.main(argv[:7] + ["0"] + argv[8:]) == 0
    assert "resuming the timed run" in capsys.readouterr().out
    assert json.loads((work / "timed.json").read_text()) == timed
    # ... and other settings are refused, naming them
    assert train_toy_timed.main(argv[:3] + ["0.1"] + argv[4:]) == 2
    assert "minutes (0.05, now 0.1)" in capsys.readouterr().err
    assert train_toy_timed.main(argv[:2] + ["--minutes", "0"] + argv[4:]) == 2
    assert train_toy_timed.main(argv[:4] + ["--calibrate", "5"] + argv[6:]) == 2
