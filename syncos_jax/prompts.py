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
from syncos_jax.validate import brief

DEFAULT_TEMPLATE = "{global} {local}"

__all__ = [
    "DEFAULT_TEMPLATE", "MAX_FRAMES", "MAX_SCENARIO_BYTES", "SEED_RANGE", "Scenario", "ScenarioError", "StructuredPrompt",
    "chunk_texts", "join_prompt", "load_scenario", "parse_yaml", "read_yaml", "segment_bounds",
]

MAX_SCENARIO_BYTES = 64 * 1024  # a scenario is a few lines; anything larger is refused unread
MAX_FRAMES = 10_000
SEED_RANGE = (0, 2**32 - 1)  # what jax.random.key takes without wrapping (64-bit mode off)


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
            raise ValueError(f"local_prompts must be a non-empty list of strings, got {brief(local_prompts)}.")
        for i, p in enumerate(local_prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"local_prompts[{i}]={brief(p)} must be a non-empty string.")
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


def _no_alias_loader(path: str, field: str):
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise ScenarioError(path, field, f"YAML aliases (*name) are not allowed here (line {mark.line + 1})")
            return super().compose_node(parent, index)

    return NoAliasLoader


def parse_yaml(text: str, path: str, field: str) -> Any:
    """Returns the YAML value of ``text``, refusing aliases; errors are :class:`ScenarioError` ``(path, field)``."""
    import yaml

    try:
        return yaml.load(text, Loader=_no_alias_loader(path, field))
    except ScenarioError:
        raise
    except yaml.YAMLError as e:
        raise ScenarioError(path, field, "not valid YAML: " + brief(" ".join(str(e).split()), 160)) from None
    except RecursionError:
        raise ScenarioError(path, field, "nested too deeply") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as e:  # a bad tagged value: !!float abc, 2020-13-45, ...
        raise ScenarioError(path, field, "a value YAML cannot build: " + brief(" ".join(str(e).split()), 120)) from None


def read_yaml(path: str, *, max_bytes: int = MAX_SCENARIO_BYTES) -> Any:
    """Returns the YAML document in ``path``, read safely.

    Refuses a file over ``max_bytes`` (unread), a file that is not UTF-8 text, and YAML aliases
    (``*name``): nested aliases expand exponentially (a "billion laughs" file of a few hundred
    bytes takes minutes and gigabytes), and a scenario never needs them.

    Raises:
      ScenarioError: field ``(file)``, naming the problem (never echoing the content).
    """
    if not os.path.isfile(path):
        raise ScenarioError(path, "(file)", "no such file" if not os.path.exists(path) else "not a regular file")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ScenarioError(path, "(file)", f"{size} bytes; a scenario file may have at most {max_bytes}")
    try:
        with open(path, "rb") as f:
            text = f.read(max_bytes + 1).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(path, "(file)", f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ScenarioError(path, "(file)", f"cannot be read: {e.strerror}") from None
    return parse_yaml(text, path, "(file)")


def load_scenario(path: str) -> Scenario:
    """Reads and validates a scenario file (see the module docstring).

    Raises:
      ScenarioError: for a missing, oversized or non-UTF-8 file, bad YAML or YAML aliases, a
        missing or unknown field, an empty or non-string prompt, an empty prompt list, a frame
        count outside ``[1, MAX_FRAMES]``, a seed outside ``SEED_RANGE``, or a ``sampler`` that is
        not a mapping of names to values.
    """
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ScenarioError(path, "(file)", f"expected a mapping with keys {', '.join(SCENARIO_FIELDS)}, got {type(data).__name__}")
    unknown = [k for k in data if k not in SCENARIO_FIELDS]
    if unknown:
        raise ScenarioError(path, brief(unknown[0], 40).strip("'"), f"unknown field; expected one of {', '.join(SCENARIO_FIELDS)}")
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
            raise ScenarioError(path, f"local_prompts[{i}]", f"expected a non-empty string, got {brief(p)}")
    frames = data.get("frames")
    if frames is not None and (not _is_int(frames) or not 1 <= frames <= MAX_FRAMES):
        raise ScenarioError(path, "frames", f"expected an integer in [1, {MAX_FRAMES}], got {brief(frames)}")
    seed = data.get("seed")
    if seed is not None and (not _is_int(seed) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]):
        raise ScenarioError(path, "seed", f"expected an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {brief(seed)}")
    sampler = data.get("sampler") or {}
    if not isinstance(sampler, dict):
        raise ScenarioError(path, "sampler", f"expected a mapping of settings, got {type(sampler).__name__}")
    for name in sampler:
        if not isinstance(name, str):
            raise ScenarioError(path, "sampler", f"setting names must be strings, got {brief(name)}")
    return Scenario(path, StructuredPrompt.make(g, locs), frames, seed, dict(sampler))


def segment_bounds(num_frames: int, num_prompts: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each local prompt's segment: the frames ``c`` with ``(c·P) // F == p``
    (the same integer rule as :func:`syncos_jax.chunking.assign_prompts`)."""
    return [(-(-p * num_frames // num_prompts), -(-(p + 1) * num_frames // num_prompts)) for p in range(num_prompts)]
