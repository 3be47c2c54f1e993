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
