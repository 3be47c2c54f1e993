"""Structured prompts: one global prompt and ``P`` local prompts, mapped to chunks (ALGORITHM.md §2).

The local prompt of chunk ``i`` is the one whose frame segment ``[p·F/P, (p+1)·F/P)`` holds the
chunk's centre frame (:func:`syncos_jax.chunking.assign_prompts`). The chunk's text is
``template.format(global=..., local=...)`` (default ``"{global} {local}"``), or the local prompt
alone with ``structured=False`` (the paper's ablation).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from syncos_jax.chunking import ChunkLayout, assign_prompts

DEFAULT_TEMPLATE = "{global} {local}"

__all__ = ["DEFAULT_TEMPLATE", "StructuredPrompt", "chunk_texts", "join_prompt"]


class StructuredPrompt(NamedTuple):
    """A long-video scenario's text.

    Attributes:
      global_prompt: what holds for the whole video (subject, style).
      local_prompts: one prompt per event, in order; event ``p`` owns frames ``[p·F/P, (p+1)·F/P)``.
    """

    global_prompt: str
    local_prompts: tuple[str, ...]

    @classmethod
    def make(cls, global_prompt: str, local_prompts: Sequence[str]) -> "StructuredPrompt":
        """Returns a validated :class:`StructuredPrompt` (a non-empty list of non-empty local prompts)."""
        if not isinstance(global_prompt, str):
            raise TypeError(f"global_prompt must be a string, got {type(global_prompt).__name__}.")
        if isinstance(local_prompts, str) or len(local_prompts) == 0:
            raise ValueError(f"local_prompts must be a non-empty list of strings, got {local_prompts!r}.")
        for i, p in enumerate(local_prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"local_prompts[{i}]={p!r} must be a non-empty string.")
        return cls(global_prompt.strip(), tuple(p.strip() for p in local_prompts))


def join_prompt(global_prompt: str, local_prompt: str, *, structured: bool = True, template: str = DEFAULT_TEMPLATE) -> str:
    """Returns one chunk's text: ``template`` filled with the global and local prompt, or the local alone."""
    if not structured:
        return local_prompt
    return " ".join(template.format(**{"global": global_prompt, "local": local_prompt}).split())


def chunk_texts(
    prompt: StructuredPrompt, layout: ChunkLayout, *, structured: bool = True, template: str = DEFAULT_TEMPLATE
) -> list[str]:
    """Returns the text of each of the layout's ``N`` chunks."""
    ids = assign_prompts(layout, len(prompt.local_prompts))
    return [join_prompt(prompt.global_prompt, prompt.local_prompts[p], structured=structured, template=template) for p in ids]
