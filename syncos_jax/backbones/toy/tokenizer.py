"""A word-level tokenizer over the shapes world's vocabulary.

Token ids: ``0`` is padding, ``1`` is the begin token that every sequence starts with (so the
empty text — the unconditional prompt — is ``[1, 0, 0, …]`` and attention always has a key),
then the world's words in a fixed order. An unknown word is an error that lists the vocabulary.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from syncos_jax.backbones.toy import world
from syncos_jax.validate import brief

__all__ = ["BOS", "PAD", "VOCABULARY", "Tokenizer"]

PAD = 0
BOS = 1


def _words() -> tuple[str, ...]:
    words = ["a", "on", "then", "moves", "stays"]
    words += list(world.SIZES) + list(world.COLOURS) + list(world.SHAPES)
    words += list(world.MOTIONS) + list(world.BACKGROUNDS)
    return tuple(dict.fromkeys(words))


VOCABULARY: tuple[str, ...] = ("<pad>", "<bos>") + _words()


class Tokenizer:
    """Maps text to fixed-length int32 token ids ``[max_length]`` (begin token, words, padding).

    Args:
      max_length: the sequence length, begin token included.
    """

    def __init__(self, max_length: int = 16):
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (the begin token and one word), got {max_length}")
        self.max_length = int(max_length)
        self.vocabulary = VOCABULARY
        self._ids = {w: i for i, w in enumerate(VOCABULARY)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> np.ndarray:
        """Token ids ``[max_length]`` int32 of one text (case-insensitive, whitespace-split).

        Raises:
          ValueError: for an unknown word (listing the vocabulary) or a text longer than
            ``max_length − 1`` words.
        """
        words = str(text).lower().split()
        unknown = [w for w in words if w not in self._ids or self._ids[w] < 2]
        if unknown:
            raise ValueError(
                f"unknown word {brief(unknown[0], 40)} in {brief(text, 80)}; the vocabulary is: {' '.join(self.vocabulary[2:])}"
            )
        if len(words) > self.max_length - 1:
            raise ValueError(
                f"text {brief(text, 80)} has {len(words)} words; at most {self.max_length - 1} fit (max_length={self.max_length})"
            )
        ids = np.full(self.max_length, PAD, np.int32)
        ids[0] = BOS
        ids[1 : 1 + len(words)] = [self._ids[w] for w in words]
        return ids

    def __call__(self, texts: Sequence[str] | str) -> np.ndarray:
        """Token ids ``[len(texts), max_length]`` (or ``[max_length]`` for one string)."""
        if isinstance(texts, str):
            return self.encode(texts)
        return np.stack([self.encode(t) for t in texts]) if len(texts) else np.zeros((0, self.max_length), np.int32)

    def decode(self, ids) -> str:
        """The words of token ids, begin token and padding dropped."""
        return " ".join(self.vocabulary[int(i)] for i in np.asarray(ids).reshape(-1) if int(i) > BOS)
