"""Structured prompts and scenario files: one global prompt and ``P`` local prompts, mapped to chunks (ALGORITHM.md §2).

The local prompt of chunk ``i`` is the one whose frame segment ``[p·F/P, (p+1)·F/P)`` holds the
chunk's centre frame (:func:`syncos_jax.chunking.assign_prompts`). The chunk's text is
``template.format(global=..., local=...)`` (default ``"{global} {local}"``), or the local prompt
alone with ``structured=False`` (the paper's ablation).

A scenario file (YAML) holds a structured prompt and optional settings::

    global_prompt: a large red circle
    local_prompts:
      - moves right on grass
      - moves right on snow
    frames: 32            # optional; the command line's default otherwise
    seed: 0               # optional
    sampler:              # optional: sampler settings by name (steps, stride, guidance_scale, ...)
      steps: 50

:func:`load_scenario` validates it and raises :class:`ScenarioError` — one line naming the file,
the field and the problem — for anything malformed.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional, Sequence

from syncos_jax.chunking import ChunkLayout, assign_prompts

DEFAULT_TEMPLATE = "{global} {local}"

__all__ = ["DEFAULT_TEMPLATE", "Scenario", "ScenarioError", "StructuredPrompt", "chunk_texts", "join_prompt", "load_scenario", "segment_bounds"]


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


class ScenarioError(ValueError):
    """A malformed scenario: ``str(err)`` is one line ``"FILE: field 'FIELD': PROBLEM"``."""

    def __init__(self, path: str, field: str, problem: str):
        self.path, self.field, self.problem = path, field, problem
        super().__init__(f"{path}: field '{field}': {problem}")


class Scenario(NamedTuple):
    """A loaded scenario file.

    Attributes:
      path: the file it came from.
      prompt: its :class:`StructuredPrompt`.
      frames: the number of frames asked for, or ``None``.
      seed: the seed asked for, or ``None``.
      sampler: sampler settings by name (validated by the sampler that uses them).
    """

    path: str
    prompt: StructuredPrompt
    frames: Optional[int] = None
    seed: Optional[int] = None
    sampler: dict = {}


SCENARIO_FIELDS = ("global_prompt", "local_prompts", "frames", "seed", "sampler")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_scenario(path: str) -> Scenario:
    """Reads and validates a scenario file (see the module docstring).

    Raises:
      ScenarioError: for a missing file, bad YAML, a missing or unknown field, an empty or
        non-string prompt, an empty prompt list, a non-positive frame count or seed type, or a
        ``sampler`` that is not a mapping.
    """
    import yaml

    if not os.path.isfile(path):
        raise ScenarioError(path, "(file)", "no such file")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ScenarioError(path, "(file)", "not valid YAML: " + " ".join(str(e).split())) from None
    if not isinstance(data, dict):
        raise ScenarioError(path, "(file)", f"expected a mapping with keys {', '.join(SCENARIO_FIELDS)}, got {type(data).__name__}")
    unknown = [k for k in data if k not in SCENARIO_FIELDS]
    if unknown:
        raise ScenarioError(path, str(unknown[0]), f"unknown field; expected one of {', '.join(SCENARIO_FIELDS)}")
    for key in ("global_prompt", "local_prompts"):
        if key not in data:
            raise ScenarioError(path, key, "missing")
    g = data["global_prompt"]
    if not isinstance(g, str):
        raise ScenarioError(path, "global_prompt", f"expected a string, got {type(g).__name__}")
    locs = data["local_prompts"]
    if not isinstance(locs, list):
        raise ScenarioError(path, "local_prompts", f"expected a list of strings, got {type(locs).__name__}")
    if not locs:
        raise ScenarioError(path, "local_prompts", "empty; give at least one local prompt")
    for i, p in enumerate(locs):
        if not isinstance(p, str) or not p.strip():
            raise ScenarioError(path, f"local_prompts[{i}]", f"expected a non-empty string, got {p!r}")
    frames = data.get("frames")
    if frames is not None and (not _is_int(frames) or frames < 1):
        raise ScenarioError(path, "frames", f"expected a positive integer, got {frames!r}")
    seed = data.get("seed")
    if seed is not None and not _is_int(seed):
        raise ScenarioError(path, "seed", f"expected an integer, got {seed!r}")
    sampler = data.get("sampler") or {}
    if not isinstance(sampler, dict):
        raise ScenarioError(path, "sampler", f"expected a mapping of settings, got {type(sampler).__name__}")
    return Scenario(path, StructuredPrompt.make(g, locs), frames, seed, dict(sampler))


def segment_bounds(num_frames: int, num_prompts: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each local prompt's segment: the frames ``c`` with ``(c·P) // F == p``
    (the same integer rule as :func:`syncos_jax.chunking.assign_prompts`)."""
    return [(-(-p * num_frames // num_prompts), -(-(p + 1) * num_frames // num_prompts)) for p in range(num_prompts)]
