"""Structured prompts and scenario files: one global prompt and ``P`` local prompts, mapped to chunks (ALGORITHM.md §2).

Local prompt ``p`` owns a segment of frames: ``[p·F/P, (p+1)·F/P)`` (the equal split), or, when the
prompt gives each event's length, the ``f_p`` frames after the previous events'
(:func:`segment_bounds`). The local prompt of chunk ``i`` is the one whose segment holds the chunk's
centre frame (:func:`syncos_jax.chunking.assign_prompts`). The chunk's text is
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

Plain-string local prompts split the video equally. A local prompt may instead give its event's
length in frames, ``- {prompt: moves right on grass, frames: 12}``; then every local prompt must, and
the lengths must add up to ``frames`` (which defaults to their sum)::

    global_prompt: a large red circle
    local_prompts:
      - {prompt: moves right on grass, frames: 8}
      - {prompt: moves down on grass, frames: 16}
      - {prompt: moves left on grass, frames: 8}
    frames: 32

:func:`load_scenario` validates it and raises :class:`ScenarioError` — one line naming the file,
the field and the problem — for anything malformed.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from syncos_jax.chunking import ChunkLayout, assign_prompts, segment_bounds
from syncos_jax.validate import brief

DEFAULT_TEMPLATE = "{global} {local}"

__all__ = [
    "DEFAULT_TEMPLATE", "MAX_FRAMES", "MAX_SCENARIO_BYTES", "SEED_RANGE", "Conditioning", "PromptError", "Scenario",
    "ScenarioError", "StructuredPrompt", "build_conditioning", "check_texts", "chunk_texts", "join_prompt", "load_scenario",
    "parse_yaml", "read_yaml", "segment_bounds",
]

MAX_SCENARIO_BYTES = 64 * 1024  # a scenario is a few lines; anything larger is refused unread
MAX_FRAMES = 10_000
SEED_RANGE = (0, 2**32 - 1)  # what jax.random.key takes without wrapping (64-bit mode off)


def _check_event_frames(frames, num_prompts: int) -> Optional[tuple[int, ...]]:
    """Returns ``frames`` as a tuple of positive ints, one per local prompt (or ``None``); raises ``ValueError``."""
    if frames is None:
        return None
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence) or len(frames) != num_prompts:
        raise ValueError(f"frames={brief(frames)} must be a sequence of {num_prompts} frame counts, one per local prompt.")
    for i, n in enumerate(frames):
        if not _is_int(n) or n < 1:
            raise ValueError(f"frames[{i}]={brief(n)} must be a positive int (the event's length in frames).")
    return tuple(int(n) for n in frames)


class StructuredPrompt(NamedTuple):
    """A long-video scenario's text.

    Attributes:
      global_prompt: what holds for the whole video (subject, style).
      local_prompts: one prompt per event, in order.
      frames: each event's length in frames (``P`` positive ints summing to the video's ``F``), or
        ``None`` for the equal split: event ``p`` owns frames ``[p·F/P, (p+1)·F/P)``.
    """

    global_prompt: str
    local_prompts: tuple[str, ...]
    frames: Optional[tuple[int, ...]] = None

    @classmethod
    def make(
        cls, global_prompt: str, local_prompts: Sequence[str], frames: Optional[Sequence[int]] = None
    ) -> "StructuredPrompt":
        """Returns a validated :class:`StructuredPrompt` (a non-empty list of non-empty local prompts,
        and, if given, one positive frame count per local prompt)."""
        if not isinstance(global_prompt, str):
            raise TypeError(f"global_prompt must be a string, got {type(global_prompt).__name__}.")
        if isinstance(local_prompts, str) or len(local_prompts) == 0:
            raise ValueError(f"local_prompts must be a non-empty list of strings, got {brief(local_prompts)}.")
        for i, p in enumerate(local_prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"local_prompts[{i}]={brief(p)} must be a non-empty string.")
        counts = _check_event_frames(frames, len(local_prompts))
        return cls(global_prompt.strip(), tuple(p.strip() for p in local_prompts), counts)

    def segments(self, num_frames: int) -> tuple[tuple[int, int], ...]:
        """Returns the ``(start, end)`` of each local prompt's frames in a video of ``num_frames``
        (:func:`segment_bounds`); ``ValueError`` if ``frames`` does not add up to ``num_frames``."""
        return segment_bounds(num_frames, self.frames if self.frames is not None else len(self.local_prompts))

    def texts(self, *, structured: bool = True, template: str = DEFAULT_TEMPLATE) -> list[str]:
        """Returns each event's text: its local prompt joined with the global one (:func:`join_prompt`)."""
        return [join_prompt(self.global_prompt, p, structured=structured, template=template) for p in self.local_prompts]


class PromptError(ValueError):
    """A prompt a backbone cannot take: ``field`` names it in the scenario (``global_prompt``,
    ``local_prompts[2]``), ``problem`` says why (``str(err)`` is ``"FIELD: PROBLEM"``)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def check_texts(prompt: StructuredPrompt, check: Callable[[str], None]) -> None:
    """Runs ``check(text)`` on each event's joined text (:meth:`StructuredPrompt.texts`); a ``ValueError``
    it raises becomes a :class:`PromptError` naming the local prompt at fault."""
    for i, text in enumerate(prompt.texts()):
        try:
            check(text)
        except ValueError as e:
            raise PromptError(f"local_prompts[{i}]", str(e)) from None


def join_prompt(global_prompt: str, local_prompt: str, *, structured: bool = True, template: str = DEFAULT_TEMPLATE) -> str:
    """Returns one chunk's text: ``template`` filled with the global and local prompt, or the local alone."""
    if not structured:
        return local_prompt
    return " ".join(template.format(**{"global": global_prompt, "local": local_prompt}).split())


def chunk_texts(
    prompt: StructuredPrompt, layout: ChunkLayout, *, structured: bool = True, template: str = DEFAULT_TEMPLATE
) -> list[str]:
    """Returns the text of each of the layout's ``N`` chunks (each chunk's prompt by its centre frame)."""
    ids = assign_prompts(layout, prompt.segments(layout.num_frames))
    return [join_prompt(prompt.global_prompt, prompt.local_prompts[p], structured=structured, template=template) for p in ids]


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """Conditioning of a long video with ``P`` local prompts: a pytree whose ``frames`` is static.

    Attributes:
      prompts: pytree whose leaves have leading axis ``P``: one entry per local prompt (already
        joined with the global prompt by the conditioning builder, e.g. text embeddings or, for the
        Gaussian backbone, prompt ids).
      uncond: pytree of the same structure with leading axis 1: the unconditional (null) prompt.
        Needed only when ``guidance_scale != 1``.
      frames: static: each local prompt's event length in frames (``P`` positive ints summing to
        the video's ``F``), or ``None`` for the equal split (:meth:`segments`).

    Ids (prompt ids, token ids) must be in the backbone's range. A sampler's ``build`` (and
    ``sample(..., cond=)``) check concrete arrays before tracing (``samplers.base.check_inputs``) and
    raise ``ValueError``; a caller who builds a sampler inside their own ``jax.jit`` holds tracers,
    and ids out of range are then clamped by JAX's indexing, silently: that contract is the caller's.
    """

    prompts: Any
    uncond: Any = None
    frames: Optional[tuple[int, ...]] = None

    def __post_init__(self):
        if self.frames is not None:  # a tuple, so that it is hashable: it is static under jax.jit
            counts = self.frames
            if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence) or not counts or not all(
                _is_int(n) and n >= 1 for n in counts
            ):
                raise ValueError(f"Conditioning.frames={brief(self.frames)} must be None or a sequence of positive ints.")
            object.__setattr__(self, "frames", tuple(int(n) for n in counts))

    @property
    def num_prompts(self) -> int:
        """``P``, the number of local prompts."""
        leaves = jax.tree_util.tree_leaves(self.prompts)
        if not leaves:
            raise ValueError("Conditioning.prompts has no arrays.")
        return int(jnp.shape(leaves[0])[0])

    def select(self, prompt_ids) -> Any:
        """Returns the conditional pytree for ``prompt_ids: [B]`` (leading axis ``B``)."""
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[prompt_ids], self.prompts)

    def null(self, batch: int) -> Any:
        """Returns the unconditional pytree broadcast to leading axis ``batch``."""
        if self.uncond is None:
            raise ValueError("guidance_scale != 1 needs Conditioning.uncond (the null prompt).")
        return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[:1], (batch,) + jnp.shape(a)[1:]), self.uncond)

    def segments(self, num_frames: int) -> tuple[tuple[int, int], ...]:
        """Returns the ``(start, end)`` (end exclusive) of each local prompt's frames in a video of ``num_frames``.

        The equal split (:func:`segment_bounds`) when ``frames`` is ``None``, else the cumulative counts.

        Raises:
          ValueError: ``frames`` has not ``num_prompts`` entries or does not add up to ``num_frames``.
        """
        P = self.num_prompts
        if self.frames is None:
            return segment_bounds(num_frames, P)
        if len(self.frames) != P or sum(self.frames) != num_frames:
            raise ValueError(
                f"Conditioning.frames={self.frames} gives {len(self.frames)} event lengths adding up to "
                f"{sum(self.frames)} frames; expected num_prompts={P} lengths adding up to num_frames={num_frames}."
            )
        return segment_bounds(num_frames, self.frames)

    def _replace(self, **changes) -> "Conditioning":
        """Returns a copy with ``changes`` (``dataclasses.replace``; the name of ``NamedTuple``'s)."""
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(Conditioning, data_fields=["prompts", "uncond"], meta_fields=["frames"])


def build_conditioning(
    encode: Callable[[list], Any],
    prompt: StructuredPrompt,
    *,
    structured: bool = True,
    template: str = DEFAULT_TEMPLATE,
    negative_prompt: str = "",
) -> Conditioning:
    """Returns the :class:`Conditioning` of a structured prompt: the conditioning builder.

    Args:
      encode: ``encode(texts) -> pytree`` with leading axis ``len(texts)`` (a text encoder,
        a tokenizer + embedding, ...).
      prompt: the :class:`StructuredPrompt`; its ``frames`` (event lengths) become the conditioning's.
      structured: join each local prompt with the global one (``template``); ``False`` uses the
        local prompts alone (the paper's "w/o structured prompt" ablation).
      template: ``"{global} {local}"`` by default.
      negative_prompt: the text of the unconditional prompt (empty by default).
    """
    texts = prompt.texts(structured=structured, template=template)
    return Conditioning(prompts=encode(texts), uncond=encode([negative_prompt]), frames=prompt.frames)


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
      frames: the number of frames asked for, or ``None``; the sum of the events' lengths when the
        local prompts give them and the file does not.
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
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


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


LOCAL_PROMPT_FIELDS = ("prompt", "frames")
_MISSING = object()  # a local prompt without an event length


def _local_prompt(path: str, i: int, item: Any) -> tuple[str, Any]:
    """Returns ``(text, frames)`` of ``local_prompts[i]``: a string, or a mapping ``{prompt: TEXT,
    frames: N}`` whose ``frames`` is optional (``_MISSING`` where not given)."""
    field = f"local_prompts[{i}]"
    if not isinstance(item, dict):
        text, count = item, _MISSING
    else:
        unknown = [k for k in item if k not in LOCAL_PROMPT_FIELDS]
        if unknown:
            name = brief(unknown[0], 40).strip("'")
            raise ScenarioError(path, f"{field}.{name}", f"unknown field; expected {' and '.join(LOCAL_PROMPT_FIELDS)}")
        if "prompt" not in item:
            raise ScenarioError(path, f"{field}.prompt", "missing")
        text, count = item["prompt"], item.get("frames", _MISSING)
        if count is not _MISSING and (not _is_int(count) or not 1 <= count <= MAX_FRAMES):
            raise ScenarioError(path, f"{field}.frames",
                                f"expected the event's length, an integer in [1, {MAX_FRAMES}], got {brief(count)}")
        field += ".prompt"
    if not isinstance(text, str) or not text.strip():
        what = "a non-empty string" if field.endswith(".prompt") else "a non-empty string or a {prompt: TEXT, frames: N} mapping"
        raise ScenarioError(path, field, f"expected {what}, got {brief(text)}")
    return text, count


def _event_frames(path: str, counts: Sequence[Any], frames: Optional[int]) -> Optional[tuple[int, ...]]:
    """Returns the events' lengths (``None`` if no local prompt gives one), checked: all or none
    given, and adding up to ``frames`` when the scenario sets it."""
    given = [i for i, n in enumerate(counts) if n is not _MISSING]
    if not given:
        return None
    if len(given) < len(counts):
        j = next(i for i, n in enumerate(counts) if n is _MISSING)
        raise ScenarioError(path, f"local_prompts[{j}].frames",
                            f"missing; local_prompts[{given[0]}] gives its event's length, so every local prompt must "
                            f"(or none, for the equal split)")
    total = sum(counts)
    if frames is not None and total != frames:
        raise ScenarioError(path, "local_prompts",
                            f"the events' frames add up to {total}, but the video has frames: {frames}; make them equal")
    if total > MAX_FRAMES:
        raise ScenarioError(path, "local_prompts", f"the events' frames add up to {total}, more than {MAX_FRAMES}")
    return tuple(counts)


def load_scenario(path: str) -> Scenario:
    """Reads and validates a scenario file (see the module docstring).

    Raises:
      ScenarioError: for a missing, oversized or non-UTF-8 file, bad YAML or YAML aliases, a
        missing or unknown field, an empty or non-string prompt, an empty prompt list, a frame
        count outside ``[1, MAX_FRAMES]``, event lengths (``local_prompts[i].frames``) given for
        some local prompts but not all, not positive integers, or not adding up to ``frames``, a
        seed outside ``SEED_RANGE``, or a ``sampler`` that is not a mapping of names to values.
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
        raise ScenarioError(path, "local_prompts", f"expected a list of strings (or of {{prompt: TEXT, frames: N}} "
                                                   f"mappings), got {type(locs).__name__}")
    if not locs:
        raise ScenarioError(path, "local_prompts", "empty; give at least one local prompt")
    texts, counts = zip(*(_local_prompt(path, i, p) for i, p in enumerate(locs)))
    frames = data.get("frames")
    if frames is not None and (not _is_int(frames) or not 1 <= frames <= MAX_FRAMES):
        raise ScenarioError(path, "frames", f"expected an integer in [1, {MAX_FRAMES}], got {brief(frames)}")
    event_frames = _event_frames(path, counts, frames)
    if event_frames is not None and frames is None:
        frames = sum(event_frames)
    seed = data.get("seed")
    if seed is not None and (not _is_int(seed) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]):
        raise ScenarioError(path, "seed", f"expected an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {brief(seed)}")
    sampler = data.get("sampler") or {}
    if not isinstance(sampler, dict):
        raise ScenarioError(path, "sampler", f"expected a mapping of settings, got {type(sampler).__name__}")
    for name in sampler:
        if not isinstance(name, str):
            raise ScenarioError(path, "sampler", f"setting names must be strings, got {brief(name)}")
    return Scenario(path, StructuredPrompt.make(g, texts, event_frames), frames, seed, dict(sampler))
