"""Converters and weights folders never mutate their inputs; the CogVideoX weights folder round-trips (no torch)."""

import jax
import numpy as np
import pytest
from flax import nnx

from converters.common import Rule, convert
from syncos_jax.backbones.cogvideox import (
    CogVideoXConfig,
    CogVideoXTransformer,
    load,
    model_abstract,
    restore_weights,
    save_weights,
)

TINY = CogVideoXConfig(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
                       text_embed_dim=8, num_layers=1, sample_width=8, sample_height=8, sample_frames=9,
                       max_text_seq_length=8)


def _snapshot(state):
    """``[(path, variable object, type, value)]``: what a caller would see change if ``state`` were mutated."""
    return [(p, v, type(v), v.get_value()) for p, v in nnx.to_flat_state(state)]


def _assert_unchanged(state, before):
    after = _snapshot(state)
    assert [a[:3] for a in after] == [b[:3] for b in before]
    for (path, _, _, value), (_, _, _, was) in zip(after, before):
        assert isinstance(value, jax.ShapeDtypeStruct) and value == was, path


def test_convert_leaves_the_abstract_state_and_the_source_unchanged():
    _, abstract = nnx.split(nnx.eval_shape(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(0))))
    before = _snapshot(abstract)
    source = {"weight": np.arange(6, dtype=np.float32).reshape(3, 2), "bias": np.ones(3, np.float32)}
    copies = {k: v.copy() for k, v in source.items()}
    state = convert(source, [Rule("weight", "kernel", "linear"), Rule("bias", "bias")], abstract, dtype="bfloat16")
    _assert_unchanged(abstract, before)
    assert sorted(source) == sorted(copies) and all(np.array_equal(source[k], copies[k]) for k in source)
    np.testing.assert_array_equal(np.asarray(state["kernel"].get_value(), np.float32), copies["weight"].T)
    assert state["kernel"].get_value().dtype == np.dtype("bfloat16")


def test_weights_folder_round_trip_leaves_the_abstract_state_unchanged(tmp_path):
    graphdef, params = nnx.split(CogVideoXTransformer(TINY, rngs=nnx.Rngs(0)))
    save_weights(str(tmp_path / "w"), params, TINY, extra={"dtype": "float32"})
    cfg, graphdef2, abstract = model_abstract(TINY.to_dict())
    assert cfg == TINY
    before = _snapshot(abstract)
    state = restore_weights(str(tmp_path / "w"), abstract)
    _assert_unchanged(abstract, before)  # the old converters.common.load_converted filled it in place
    restored = {p: v.get_value() for p, v in nnx.to_flat_state(state)}
    assert len(restored) == len(before)
    for path, v in nnx.to_flat_state(params):
        np.testing.assert_array_equal(np.asarray(restored[path]), np.asarray(v.get_value()), err_msg=str(path))
    model, cfg2 = load(str(tmp_path / "w"))
    assert cfg2 == TINY and isinstance(model, CogVideoXTransformer)
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        save_weights(str(tmp_path / "w"), params, TINY)


def test_restore_is_strict_about_shapes_and_finiteness(tmp_path):
    _, params = nnx.split(CogVideoXTransformer(TINY, rngs=nnx.Rngs(0)))
    save_weights(str(tmp_path / "w"), params, TINY)
    bigger = CogVideoXConfig(**{**TINY.to_dict(), "num_layers": 2})
    _, _, abstract = model_abstract(bigger.to_dict())
    with pytest.raises(ValueError, match=r"missing \['transformer_blocks\.1\..*\(24\), unexpected \[\] \(0\)"):
        restore_weights(str(tmp_path / "w"), abstract)
    nan = nnx.from_flat_state([(p, v.replace(np.full(v.shape, np.nan, np.float32)) if p == ("proj_out", "bias") else v)
                               for p, v in nnx.to_flat_state(params)])
    save_weights(str(tmp_path / "nan"), nan, TINY)
    _, _, abstract = model_abstract(TINY.to_dict())
    with pytest.raises(ValueError, match=r"holds NaN or Inf in 1 tensor\(s\): \['proj_out\.bias'\]"):
        restore_weights(str(tmp_path / "nan"), abstract)


@pytest.mark.parametrize("text, problem", [("{not json", "is not valid JSON"), ("[1]", "must hold a JSON object, got list"),
                                           ('{"model": "toy", "config": {}}', "holds a 'toy' checkpoint, not cogvideox"),
                                           ('{"model": "cogvideox", "config": {"bogus": 1}}', "unknown CogVideoX config keys")])
def test_a_bad_weights_config_is_named(tmp_path, text, problem):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=problem):
        load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load(str(tmp_path / "absent"))
