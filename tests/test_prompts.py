"""Structured prompts mapped to chunks."""

import pytest

from syncos_jax.chunking import ChunkLayout
from syncos_jax.prompts import StructuredPrompt, chunk_texts, join_prompt


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

    from syncos_jax.samplers import build_conditioning

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
