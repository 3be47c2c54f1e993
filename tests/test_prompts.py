"""Structured prompts mapped to chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from syncos_jax.chunking import ChunkLayout, assign_prompts, segment_bounds
from syncos_jax.prompts import (
    Conditioning, ScenarioError, StructuredPrompt, build_conditioning, chunk_texts, join_prompt, load_scenario,
)


def test_chunk_texts_follow_the_segments():
    p = StructuredPrompt.make("a red circle", ["moves left", "moves right"])
    texts = chunk_texts(p, ChunkLayout(16, 4, 2))
    assert texts == ["a red circle moves left"] * 4 + ["a red circle moves right"] * 3
    assert chunk_texts(p, ChunkLayout(16, 4, 4), structured=False) == ["moves left"] * 2 + ["moves right"] * 2
    assert join_prompt("g", "l", template="{local}, {global}") == "l, g"


@pytest.mark.parametrize("local", [[], "one string", ["ok", ""], ["ok", 3]])
def test_invalid_local_prompts(local):
    with pytest.raises(ValueError, match="local_prompts"):
        StructuredPrompt.make("global", local)


def test_conditioning_builder_structured_and_not():
    import jax.numpy as jnp

    from syncos_jax.prompts import build_conditioning

    vocab = {}

    def encode(texts):  # a toy encoder: one id per distinct text
        return jnp.asarray([vocab.setdefault(t, len(vocab)) for t in texts])

    p = StructuredPrompt.make("a red circle", ["moves left", "moves right"])
    cond = build_conditioning(encode, p)
    assert cond.num_prompts == 2
    inverse = {v: k for k, v in vocab.items()}
    assert [inverse[int(i)] for i in cond.prompts] == ["a red circle moves left", "a red circle moves right"]
    assert inverse[int(cond.uncond[0])] == ""
    cond = build_conditioning(encode, p, structured=False, negative_prompt="blurry")
    inverse = {v: k for k, v in vocab.items()}
    assert [inverse[int(i)] for i in cond.prompts] == ["moves left", "moves right"]
    assert inverse[int(cond.uncond[0])] == "blurry"
    assert cond.frames is None


# --- Conditioning: a pytree whose event lengths are static ---


def test_conditioning_constructors_and_methods():
    a, u = jnp.arange(3), jnp.array([7])
    for cond in (Conditioning(a, u), Conditioning(prompts=a, uncond=u)):
        assert cond.num_prompts == 3 and cond.frames is None
        np.testing.assert_array_equal(cond.select(jnp.array([2, 0, 2])), [2, 0, 2])
        np.testing.assert_array_equal(cond.null(4), [7, 7, 7, 7])
    assert Conditioning(prompts=a).uncond is None
    with pytest.raises(ValueError, match="needs Conditioning.uncond"):
        Conditioning(prompts=a).null(2)
    with pytest.raises(ValueError, match="Conditioning.prompts has no arrays"):
        Conditioning(prompts={}).num_prompts
    tree = Conditioning({"ids": jnp.zeros((2, 5), jnp.int32), "mask": jnp.ones((2, 5))}, None)
    assert tree.num_prompts == 2 and tree.select(jnp.array([1, 1, 0]))["mask"].shape == (3, 5)
    cond = Conditioning(a, u, frames=[8, 16, 8])
    assert cond.frames == (8, 16, 8)  # a tuple: hashable, static
    assert cond._replace(uncond=None).frames == (8, 16, 8) and cond._replace(uncond=None).uncond is None


@pytest.mark.parametrize("frames", [(), (8, 0), (8, -1), (8, 2.0), (True, 7), "8,8", 8])
def test_conditioning_rejects_bad_frames(frames):
    with pytest.raises(ValueError, match="Conditioning.frames=.* must be None or a sequence of positive ints"):
        Conditioning(jnp.arange(2), frames=frames)


def test_conditioning_is_a_pytree_with_static_frames():
    cond = Conditioning(jnp.arange(3), jnp.array([3]), frames=(8, 16, 8))
    leaves = jax.tree_util.tree_leaves(cond)
    assert len(leaves) == 2 and all(isinstance(x, jax.Array) for x in leaves)
    assert len(jax.tree_util.tree_leaves(Conditioning(jnp.arange(3)))) == 1  # uncond=None has no leaves
    assert jax.tree_util.tree_structure(cond) != jax.tree_util.tree_structure(cond._replace(frames=(16, 8, 8)))
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, cond)
    assert isinstance(doubled, Conditioning) and doubled.frames == (8, 16, 8)
    traces = []

    @jax.jit
    def ids(c):
        traces.append(c.frames)
        assert not isinstance(c.frames, jax.core.Tracer)
        return c.select(assign_prompts(ChunkLayout(32, 8, 8), c.segments(32)))

    np.testing.assert_array_equal(ids(cond), [0, 1, 1, 2])
    np.testing.assert_array_equal(ids(cond._replace(prompts=jnp.arange(3) + 10)), [10, 11, 11, 12])
    assert traces == [(8, 16, 8)]  # new arrays, same frames: no retrace
    np.testing.assert_array_equal(ids(cond._replace(frames=(4, 4, 24))), [0, 2, 2, 2])
    assert traces == [(8, 16, 8), (4, 4, 24)]  # frames are part of the static structure


def test_conditioning_segments():
    cond = Conditioning(jnp.arange(3))
    assert cond.segments(10) == segment_bounds(10, 3) == ((0, 4), (4, 7), (7, 10))
    assert cond._replace(frames=(2, 5, 3)).segments(10) == ((0, 2), (2, 7), (7, 10))
    with pytest.raises(ValueError, match=r"adding up to 10 frames; .* adding up to num_frames=12"):
        cond._replace(frames=(2, 5, 3)).segments(12)
    with pytest.raises(ValueError, match=r"gives 2 event lengths .* expected num_prompts=3"):
        cond._replace(frames=(5, 5)).segments(10)


def test_build_conditioning_carries_the_event_lengths():
    p = StructuredPrompt.make("a red circle", ["moves left", "moves right"], frames=[12, 4])
    cond = build_conditioning(lambda texts: jnp.arange(len(texts)), p)
    assert cond.frames == (12, 4) and cond.segments(16) == ((0, 12), (12, 16))


def test_structured_prompt_frames():
    p = StructuredPrompt.make("a red circle", ["moves left", "moves right"], frames=[12, 4])
    assert p.frames == (12, 4) and p.segments(16) == ((0, 12), (12, 16))
    assert StructuredPrompt.make("g", ["a", "b"]).segments(16) == ((0, 8), (8, 16))
    assert chunk_texts(p, ChunkLayout(16, 4, 4)) == ["a red circle moves left"] * 3 + ["a red circle moves right"]
    with pytest.raises(ValueError, match="add up to 16 frames, but num_frames=20"):
        p.segments(20)
    with pytest.raises(ValueError, match="must be a sequence of 2 frame counts"):
        StructuredPrompt.make("g", ["a", "b"], frames=[16])
    with pytest.raises(ValueError, match=r"frames\[1\]=0 must be a positive int"):
        StructuredPrompt.make("g", ["a", "b"], frames=[16, 0])


# --- scenario files: {prompt, frames} local prompts ---

HEAD = "global_prompt: a large red circle\nlocal_prompts:\n"


def _scenario(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return str(path)


def test_scenario_events_of_any_length(tmp_path):
    s = load_scenario(_scenario(tmp_path, HEAD + "  - {prompt: moves right on grass, frames: 12}\n"
                                       "  - prompt: moves down on grass\n    frames: 20\nframes: 32\n"))
    assert s.prompt.local_prompts == ("moves right on grass", "moves down on grass")
    assert s.prompt.frames == (12, 20) and s.frames == 32 and s.prompt.segments(s.frames) == ((0, 12), (12, 32))
    # without a top-level frames, the video is as long as its events
    s = load_scenario(_scenario(tmp_path, HEAD + "  - {prompt: moves right on grass, frames: 5}\n"
                                       "  - {prompt: moves down on grass, frames: 3}\n"))
    assert s.frames == 8 and s.prompt.frames == (5, 3)
    # plain strings (and mappings without frames) keep the equal split
    s = load_scenario(_scenario(tmp_path, HEAD + "  - moves right on grass\n  - {prompt: moves down on grass}\n"))
    assert s.prompt.frames is None and s.frames is None
    assert s.prompt.local_prompts == ("moves right on grass", "moves down on grass")


BAD_EVENTS = [
    ("  - {prompt: a, frames: 8}\n  - {prompt: b, frames: 8}\n  - c\nframes: 24\n", "local_prompts[2].frames",
     "missing; local_prompts[0] gives its event's length, so every local prompt must"),
    ("  - a\n  - {prompt: b, frames: 8}\n", "local_prompts[0].frames", "missing; local_prompts[1] gives"),
    ("  - {prompt: a, frames: 8}\n  - {prompt: b}\n", "local_prompts[1].frames", "missing"),
    ("  - {prompt: a, frames: eight}\n", "local_prompts[0].frames", "expected the event's length, an integer in [1, 10000], got 'eight'"),
    ("  - {prompt: a, frames: 2.5}\n", "local_prompts[0].frames", "got 2.5"),
    ("  - {prompt: a, frames: true}\n", "local_prompts[0].frames", "got True"),
    ("  - {prompt: a, frames: null}\n", "local_prompts[0].frames", "got None"),
    ("  - {prompt: a, frames: 8}\n  - {prompt: b, frames: 0}\n", "local_prompts[1].frames", "got 0"),
    ("  - {prompt: a, frames: -4}\n", "local_prompts[0].frames", "got -4"),
    ("  - {prompt: a, frames: 8}\n  - {prompt: b, frames: 16}\nframes: 32\n", "local_prompts",
     "the events' frames add up to 24, but the video has frames: 32"),
    ("  - {prompt: a, frames: 6000}\n  - {prompt: b, frames: 6000}\n", "local_prompts", "add up to 12000, more than 10000"),
    ("  - {prompt: a, frames: 8, speed: 2}\n", "local_prompts[0].speed", "unknown field; expected prompt and frames"),
    ("  - {frames: 8}\n", "local_prompts[0].prompt", "missing"),
    ("  - {prompt: '', frames: 8}\n", "local_prompts[0].prompt", "expected a non-empty string"),
    ("  - {prompt: [a], frames: 8}\n", "local_prompts[0].prompt", "expected a non-empty string"),
    ("  - [a, 8]\n", "local_prompts[0]", "expected a non-empty string"),
]


@pytest.mark.parametrize("events,field,problem", BAD_EVENTS)
def test_scenario_event_errors_are_one_line(tmp_path, events, field, problem):
    path = _scenario(tmp_path, HEAD + events)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: field '{field}': "), message
    assert problem in message, message
