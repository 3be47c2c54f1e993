"""The shapes world: a deterministic renderer of short and long captioned RGB clips.

One object (a coloured shape of some size) moves over a textured background. A clip is
described frame by frame by a :class:`Track` — the object's colour, shape, size, centre and
motion and the background class of every frame — and :func:`render` turns a track into pixels
``[F, H, W, 3]`` in ``[−1, 1]``. Everything is numpy and deterministic given a seed, so the
ground truth of every frame is known exactly (the probes in :mod:`syncos_jax.metrics` read it
back from pixels).

Factors::

    colour      red blue yellow purple orange cyan
    shape       circle square triangle
    size        small (half-width 5 px) large (half-width 8 px)
    motion      left right up down still  (MOTION_SPEED px per frame, bouncing off walls)
    background  grass snow sand night     (colour fields with a little texture)

and three attributes no caption names — the unprompted identity, drawn uniformly per clip
(per long track) and kept through every event of a long track:

    shade       dark mid bright           (the object's named colour scaled by 0.58, 0.79, 1)
    pattern     plain capped halved spotted  (upper half / left half / a centred disc in magenta ink)
    light       west east north south     (the side the scene is lit from: a linear brightness
                                           ramp of ±LIGHT_AMPLITUDE across the background)

The probes read all three exactly from renders. They stand in for what drifts in real long
videos: the face, the coat's pattern, the exact shade of the car, the scene's lighting. The shade
and the pattern are details of a small object (10–16 px), which the toy models of issue 13 decide
late in sampling (t ≈ 60–180) and frame by frame. The light was added as the other kind: a
feature of the whole frame, the same in every frame of a clip, so that its evidence in a noisy
clip is large. Whether a model settles it early is measured, not assumed
(``experiments/settling.py``): the shipped weights, trained on this world from scratch, settle
it at step 31 of 50 (t ≈ 380), before the shade and the pattern but long after SynCoS's stage 2
(t > 800) (``experiments/results/toy_recipes/dit_px16_mid_img_light/settling.md``).

The within-clip event is a background change: ``"... on snow then grass"`` switches the scene
at a frame inside the clip. Captions follow one small grammar::

    a {size} {colour} {shape} {moves left | moves right | moves up | moves down | stays still}
      on {background} [then {background}]

Long multi-event clips (:func:`long_track`) chain local events — motion, background and colour
changes — with one persistent object; the object keeps its position, shade and pattern across
events and bounces off the walls. :func:`random_long_window` cuts truthfully captioned training
clips out of random long tracks.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence

import numpy as np

from syncos_jax.validate import brief

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "Event",
    "MOTIONS",
    "MOTION_SPEED",
    "INK",
    "LIGHTS",
    "LIGHT_AMPLITUDE",
    "PATTERNS",
    "SHADES",
    "SHAPES",
    "SIZES",
    "Track",
    "background_field",
    "caption",
    "light_field",
    "long_track",
    "object_colour",
    "object_masks",
    "pattern_mask",
    "random_long_window",
    "parse_caption",
    "random_track",
    "render",
    "shape_mask",
]

IMAGE_SIZE = 32
MOTION_SPEED = 1.5

# Palettes in [0, 1] RGB; rendered as 2·c − 1.
COLOURS = {
    "red": (0.92, 0.12, 0.10),
    "blue": (0.12, 0.28, 0.95),
    "yellow": (1.00, 0.92, 0.05),
    "purple": (0.58, 0.10, 0.80),
    "orange": (1.00, 0.52, 0.00),
    "cyan": (0.00, 0.88, 0.92),
}
BACKGROUNDS = {
    "grass": (0.22, 0.55, 0.20),
    "snow": (0.90, 0.92, 0.96),
    "sand": (0.84, 0.74, 0.50),
    "night": (0.03, 0.03, 0.10),
}
SHAPES = ("circle", "square", "triangle")
# The scene's light (unprompted): the side it comes from, as a unit direction d in image axes (y
# grows downwards). A background pixel at u = ((x − c)/c, (y − c)/c), c = size/2, is brightened by
# LIGHT_AMPLITUDE · (d · u) in every channel (then clipped to [0, 1]): ±LIGHT_AMPLITUDE at the
# lit and the far edge — larger than the texture, smaller than every palette separation.
LIGHTS = {"west": (-1.0, 0.0), "east": (1.0, 0.0), "north": (0.0, -1.0), "south": (0.0, 1.0)}
LIGHT_AMPLITUDE = 0.08
# Unprompted identity: no caption names these; they are drawn per clip (per long track) and persist.
# A shade scales the named colour (the palette entry is the brightest shade).
SHADES = {"dark": 0.58, "mid": 0.79, "bright": 1.0}
# A pattern paints part of the object in INK, relative to its centre (x0, y0) and half-width r:
# "capped" the upper half (dy < 0), "halved" the left half (dx < 0), "spotted" a centred disc of
# radius SPOT_RADIUS·r. Every region is at least 3 px across: a pattern is a large, low-frequency
# feature. (No pattern is named after a caption word.)
PATTERNS = ("plain", "capped", "halved", "spotted")
INK = (1.0, 0.0, 1.0)  # magenta: ≥ 0.9 from every background, ≥ 0.47 from every shade of every colour
SPOT_RADIUS = 0.55
SIZES = {"small": 5, "large": 8}
MOTIONS = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "still": (0.0, 0.0),
}
MOTION_PHRASES = {"left": "moves left", "right": "moves right", "up": "moves up", "down": "moves down", "still": "stays still"}

COLOUR_NAMES = tuple(COLOURS)
BACKGROUND_NAMES = tuple(BACKGROUNDS)
SIZE_NAMES = tuple(SIZES)
SHADE_NAMES = tuple(SHADES)
LIGHT_NAMES = tuple(LIGHTS)
MOTION_NAMES = tuple(MOTIONS)

TEXTURE_AMPLITUDE = 0.06  # in [0, 1] units; well below the palette separations


class Track(NamedTuple):
    """The ground truth of a clip, frame by frame (``F`` frames).

    Attributes:
      colour: ``[F]`` int, index into :data:`COLOUR_NAMES`.
      shape: ``[F]`` int, index into :data:`SHAPES`.
      size: ``[F]`` int, index into :data:`SIZE_NAMES`.
      background: ``[F]`` int, index into :data:`BACKGROUND_NAMES`.
      motion: ``[F]`` int, index into :data:`MOTION_NAMES`: the motion asked for at each frame.
      centre: ``[F, 2]`` float, the object's centre ``(x, y)`` in pixels (y grows downwards).
      phase: ``[2]`` float, the texture phase of the background (constant over the clip).
      shade: ``[F]`` int, index into :data:`SHADE_NAMES` (unprompted; constant over a track).
      pattern: ``[F]`` int, index into :data:`PATTERNS` (unprompted; constant over a track).
      light: ``[F]`` int, index into :data:`LIGHT_NAMES` (unprompted; constant over a track).
    """

    colour: np.ndarray
    shape: np.ndarray
    size: np.ndarray
    background: np.ndarray
    motion: np.ndarray
    centre: np.ndarray
    phase: np.ndarray
    shade: np.ndarray
    pattern: np.ndarray
    light: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.colour.shape[0])


@dataclasses.dataclass(frozen=True)
class Event:
    """One local event of a long clip: ``frames`` frames of one motion on one background.

    ``colour`` (optional) recolours the persistent object from this event on.
    """

    frames: int
    motion: str
    background: str
    colour: Optional[str] = None


def _index(table, name: str, what: str) -> int:
    names = tuple(table)
    if name not in names:
        raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(names)}")
    return names.index(name)


# ---------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres
    return x, y


def shape_mask(shape: str, centre, half_width: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """The pixels (centres) inside a shape: ``[size, size]`` bool.

    ``centre`` is ``(x, y)``; its entries may be arrays of shape ``[K, 1, 1]``, giving ``K`` masks
    ``[K, size, size]`` at once.

    A circle of radius ``half_width``; an axis-aligned square of half side ``half_width``; an
    upward triangle with base ``2·half_width`` and height ``2·half_width`` whose bounding box is
    centred on ``centre``.
    """
    x, y = _grid(size)
    dx, dy = x - centre[0], y - centre[1]
    r = float(half_width)
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "triangle":
        # apex at (0, −r), base from (−r, r) to (r, r): |dx| ≤ (dy + r) / 2
        return (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def background_field(background: str, phase, size: int = IMAGE_SIZE) -> np.ndarray:
    """The textured background ``[size, size, 3]`` in ``[0, 1]`` RGB.

    A flat colour plus a small structured texture per scene: grass has vertical blades, snow soft
    drifts, sand horizontal ripples, night a few stars. ``phase`` ``[2]`` shifts the texture.
    """
    x, y = _grid(size)
    base = np.asarray(BACKGROUNDS[background], np.float64)
    px, py = float(phase[0]), float(phase[1])
    a = TEXTURE_AMPLITUDE
    if background == "grass":
        tex = a * np.sin(2 * np.pi * (x + px) / 4.0) * (0.6 + 0.4 * np.sin(2 * np.pi * (y + py) / 16.0))
        delta = tex[..., None] * np.array([0.5, 1.0, 0.4])
    elif background == "snow":
        tex = a * np.sin(2 * np.pi * (x + px) / 16.0) * np.sin(2 * np.pi * (y + py) / 12.0)
        delta = tex[..., None] * np.array([1.0, 1.0, 0.6])
    elif background == "sand":
        tex = a * np.sin(2 * np.pi * (y + 0.3 * x + py) / 6.0)
        delta = tex[..., None] * np.array([1.0, 0.9, 0.6])
    elif background == "night":
        stars = (np.sin(x * 12.9898 + px * 3.1) * np.sin(y * 78.233 + py * 1.7)) > 0.985
        delta = 2.5 * a * stars[..., None] * np.ones(3)
    else:
        raise ValueError(f"unknown background {background!r}; expected one of {', '.join(BACKGROUND_NAMES)}")
    return np.clip(base + delta, 0.0, 1.0)


def light_field(light: str, size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene light's brightening of the background, ``[size, size]`` in ``[0, 1]`` units:
    ``LIGHT_AMPLITUDE · (d · u)`` with ``d = LIGHTS[light]`` and ``u`` the pixel centre's offset
    from the image centre in half-widths (so ``+LIGHT_AMPLITUDE`` at the lit edge)."""
    if light not in LIGHTS:
        raise ValueError(f"unknown light {light!r}; expected one of {', '.join(LIGHT_NAMES)}")
    x, y = _grid(size)
    c = size / 2.0
    dx, dy = LIGHTS[light]
    return LIGHT_AMPLITUDE * (dx * (x - c) / c + dy * (y - c) / c)


def object_colour(colour: str, shade: str) -> np.ndarray:
    """The ``[3]`` RGB in ``[0, 1]`` of a colour name at a shade: ``SHADES[shade] · COLOURS[colour]``."""
    return SHADES[shade] * np.asarray(COLOURS[colour], np.float64)


def pattern_mask(pattern: str, centre, half_width: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """The pixels (centres) a pattern paints in :data:`INK` (before clipping to the shape):
    ``[size, size]`` bool, or ``[K, size, size]`` for centre entries of shape ``[K, 1, 1]`` (as
    :func:`shape_mask`). ``"plain"`` paints nothing."""
    x, y = _grid(size)
    dx, dy = x - centre[0], y - centre[1]
    if pattern == "plain":
        return np.zeros(np.broadcast(dx, dy).shape, bool)
    if pattern == "capped":
        return np.broadcast_to(dy < 0, np.broadcast(dx, dy).shape)
    if pattern == "halved":
        return np.broadcast_to(dx < 0, np.broadcast(dx, dy).shape)
    if pattern == "spotted":
        return dx**2 + dy**2 <= (SPOT_RADIUS * float(half_width)) ** 2
    raise ValueError(f"unknown pattern {pattern!r}; expected one of {', '.join(PATTERNS)}")


def render(track: Track, size: int = IMAGE_SIZE) -> np.ndarray:
    """Renders a track to pixels ``[F, size, size, 3]`` float32 in ``[−1, 1]``.

    Each frame: the background field lit by the scene's light (:func:`light_field`, clipped to
    ``[0, 1]``), then the object's shape in its colour at its shade, then its pattern's pixels
    inside the shape in :data:`INK`. Deterministic: the same track gives the same pixels, bit for
    bit.
    """
    frames = np.empty((track.num_frames, size, size, 3), np.float64)
    cache = {}
    for i in range(track.num_frames):
        bg = BACKGROUND_NAMES[track.background[i]]
        key = (bg, int(track.light[i]))
        if key not in cache:
            lit = background_field(bg, track.phase, size) + light_field(LIGHT_NAMES[track.light[i]], size)[..., None]
            cache[key] = np.clip(lit, 0.0, 1.0)
        img = cache[key].copy()
        hw = SIZES[SIZE_NAMES[track.size[i]]]
        mask = shape_mask(SHAPES[track.shape[i]], track.centre[i], hw, size)
        img[mask] = object_colour(COLOUR_NAMES[track.colour[i]], SHADE_NAMES[track.shade[i]])
        img[mask & pattern_mask(PATTERNS[track.pattern[i]], track.centre[i], hw, size)] = INK
        frames[i] = img
    return (2.0 * frames - 1.0).astype(np.float32)


def object_masks(track: Track, size: int = IMAGE_SIZE) -> np.ndarray:
    """The object's pixels in every frame of a track: ``[F, size, size]`` bool — the pixels
    :func:`render` paints in the object's colour or its pattern's ink (the shape's mask)."""
    return np.stack([shape_mask(SHAPES[track.shape[i]], track.centre[i], SIZES[SIZE_NAMES[track.size[i]]], size)
                     for i in range(track.num_frames)])


# ---------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------


def _bounce(pos: float, vel: float, lo: float, hi: float) -> tuple[float, float]:
    pos = pos + vel
    if pos < lo:
        pos, vel = 2 * lo - pos, -vel
    elif pos > hi:
        pos, vel = 2 * hi - pos, -vel
    return pos, vel


def simulate(start, motions: Sequence[int], half_width: float, size: int = IMAGE_SIZE, speed: float = MOTION_SPEED):
    """Object centres ``[F, 2]`` from a start ``(x, y)`` and a per-frame motion index ``[F]``.

    Frame 0 is at ``start``; each later frame moves ``speed`` pixels in the direction of that
    frame's motion. The object bounces off the walls: its velocity along an axis flips when it
    would leave the image, and stays flipped until the asked-for motion changes.
    """
    lo, hi = half_width, size - half_width
    pos = np.array(start, np.float64)
    centres = [pos.copy()]
    sign = np.ones(2)
    for i in range(1, len(motions)):
        if motions[i] != motions[i - 1]:
            sign = np.ones(2)
        d = np.asarray(MOTIONS[MOTION_NAMES[motions[i]]]) * speed * sign
        for ax in range(2):
            pos[ax], v = _bounce(pos[ax], d[ax], lo, hi)
            if d[ax] != 0 and np.sign(v) != np.sign(d[ax]):
                sign[ax] = -sign[ax]
        centres.append(pos.copy())
    return np.stack(centres)


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------


def caption(colour: str, shape: str, size: str, motion: str, background: str, then: Optional[str] = None) -> str:
    """The caption of a clip, in the world's grammar (see the module docstring)."""
    text = f"a {size} {colour} {shape} {MOTION_PHRASES[motion]} on {background}"
    return text + (f" then {then}" if then else "")


class CaptionFactors(NamedTuple):
    """The factors a caption names (``then`` is the background after the event, or ``None``)."""

    colour: str
    shape: str
    size: str
    motion: str
    background: str
    then: Optional[str] = None


def parse_caption(text: str) -> CaptionFactors:
    """Parses a caption of the world's grammar back to its factors.

    Raises:
      ValueError: naming the caption and what was expected where it does not parse.
    """
    words = text.split()
    phrase_of = {v: k for k, v in MOTION_PHRASES.items()}
    ok = len(words) in (8, 10) and words[0] == "a" and words[6] == "on"
    motion = phrase_of.get(" ".join(words[4:6])) if ok else None
    then = None
    if ok and len(words) == 10:
        ok = words[8] == "then" and words[9] in BACKGROUNDS
        then = words[9]
    if not (ok and motion and words[1] in SIZES and words[2] in COLOURS and words[3] in SHAPES and words[7] in BACKGROUNDS):
        raise ValueError(
            f"caption {brief(text, 80)} does not parse; expected 'a SIZE COLOUR SHAPE MOTION on BACKGROUND [then BACKGROUND]' "
            f"with SIZE in {SIZE_NAMES}, COLOUR in {COLOUR_NAMES}, SHAPE in {SHAPES}, MOTION in "
            f"{tuple(MOTION_PHRASES.values())}, BACKGROUND in {BACKGROUND_NAMES}"
        )
    return CaptionFactors(words[2], words[3], words[1], motion, words[7], then)


# ---------------------------------------------------------------------------------------------
# Sampling tracks
# ---------------------------------------------------------------------------------------------


def _start_range(motion: str, half_width: float, frames: int, size: int, speed: float):
    """Per axis ``(lo, hi)`` of starts for which a clip of ``frames`` frames never bounces."""
    travel = speed * (frames - 1)
    d = MOTIONS[motion]
    ranges = []
    for ax in range(2):
        lo, hi = half_width, size - half_width
        if d[ax] > 0:
            hi -= travel
        elif d[ax] < 0:
            lo += travel
        ranges.append((lo, max(lo, hi)))
    return ranges


def _identity_index(table, name: Optional[str], what: str, rng: np.random.Generator) -> int:
    """The index of ``name`` in ``table``, or one drawn uniformly from ``rng`` when ``name`` is None."""
    return int(rng.integers(len(table))) if name is None else _index(table, name, what)


def track_from_caption(
    text: str,
    frames: int,
    rng: np.random.Generator,
    *,
    event_frame: Optional[int] = None,
    size: int = IMAGE_SIZE,
    shade: Optional[str] = None,
    pattern: Optional[str] = None,
    light: Optional[str] = None,
) -> Track:
    """A random track that its caption describes truthfully (no bounce within the clip).

    The start position, texture phase and the unprompted identity (shade, pattern and light,
    uniform unless given) are drawn from ``rng``; with a ``then`` clause the background switches at
    ``event_frame`` (drawn in ``[2, F − 2]`` when not given).
    """
    c = parse_caption(text)
    hw = SIZES[c.size]
    (xlo, xhi), (ylo, yhi) = _start_range(c.motion, hw, frames, size, MOTION_SPEED)
    start = (rng.uniform(xlo, xhi), rng.uniform(ylo, yhi))
    motion = np.full(frames, MOTION_NAMES.index(c.motion))
    background = np.full(frames, BACKGROUND_NAMES.index(c.background))
    if c.then is not None:
        k = int(rng.integers(2, frames - 1)) if event_frame is None else int(event_frame)
        background[k:] = BACKGROUND_NAMES.index(c.then)
    phase = rng.uniform(0.0, 16.0, size=2)
    return Track(
        colour=np.full(frames, COLOUR_NAMES.index(c.colour)),
        shape=np.full(frames, SHAPES.index(c.shape)),
        size=np.full(frames, SIZE_NAMES.index(c.size)),
        background=background,
        motion=motion,
        centre=simulate(start, motion, hw, size),
        phase=phase,
        shade=np.full(frames, _identity_index(SHADES, shade, "shade", rng)),
        pattern=np.full(frames, _identity_index(dict.fromkeys(PATTERNS), pattern, "pattern", rng)),
        light=np.full(frames, _identity_index(LIGHTS, light, "light", rng)),
    )


def random_caption(rng: np.random.Generator, event_probability: float = 0.2) -> str:
    """A caption with uniformly drawn factors; with ``event_probability`` a background change."""
    bg = BACKGROUND_NAMES[rng.integers(len(BACKGROUNDS))]
    then = None
    if rng.uniform() < event_probability:
        others = [b for b in BACKGROUND_NAMES if b != bg]
        then = others[rng.integers(len(others))]
    return caption(
        COLOUR_NAMES[rng.integers(len(COLOURS))],
        SHAPES[rng.integers(len(SHAPES))],
        SIZE_NAMES[rng.integers(len(SIZES))],
        MOTION_NAMES[rng.integers(len(MOTIONS))],
        bg,
        then,
    )


def random_track(rng: np.random.Generator, frames: int = 8, event_probability: float = 0.2) -> tuple[str, Track]:
    """A random ``(caption, track)`` pair of ``frames`` frames."""
    text = random_caption(rng, event_probability)
    return text, track_from_caption(text, frames, rng)


def random_long_window(rng: np.random.Generator, frames: int = 8, *, max_tries: int = 100,
                       size: int = IMAGE_SIZE) -> tuple[str, Track]:
    """A ``(caption, track)`` window of ``frames`` frames cut from a random long multi-event track.

    The long track (:func:`long_track`) has 2–4 events of 4–16 frames, each a random motion on a
    random background, one persistent object (colour, shape, size, shade, pattern) under one light, that starts
    anywhere and bounces off the walls. The window is drawn among those its single caption
    describes truthfully: one motion and no bounce inside it, at most one background change (its
    ``then``). The object enters the window wherever the track has brought it — near a wall,
    right after a bounce — with the identity it had before the window.
    """
    for _ in range(max_tries):
        colour, shape, sz = (COLOUR_NAMES[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))],
                             SIZE_NAMES[rng.integers(len(SIZES))])
        events = [Event(int(rng.integers(4, 17)), MOTION_NAMES[rng.integers(len(MOTIONS))],
                        BACKGROUND_NAMES[rng.integers(len(BACKGROUNDS))]) for _ in range(int(rng.integers(2, 5)))]
        hw = SIZES[sz]
        start = tuple(rng.uniform(hw, size - hw, size=2))
        long = long_track(colour, shape, sz, events, start=start, seed=int(rng.integers(2**31)), image_size=size)
        n = long.num_frames
        step = np.asarray([MOTIONS[MOTION_NAMES[m]] for m in long.motion[1:]]) * MOTION_SPEED  # [n − 1, 2]
        straight = np.all(np.abs(np.diff(long.centre, axis=0) - step) < 1e-9, axis=1)  # no bounce into frame i + 1
        ok = []
        for w in range(n - frames + 1):
            sl = slice(w, w + frames)
            changes = np.flatnonzero(np.diff(long.background[sl]))
            if (np.all(long.motion[sl] == long.motion[w]) and straight[w:w + frames - 1].all() and changes.size <= 1
                    and (changes.size == 0 or 1 <= changes[0] + 1 <= frames - 1)):
                ok.append(w)
        if not ok:
            continue
        w = ok[int(rng.integers(len(ok)))]
        window = Track(*(v if k == "phase" else v[w:w + frames] for k, v in long._asdict().items()))
        bgs = window.background
        then = BACKGROUND_NAMES[bgs[-1]] if bgs[-1] != bgs[0] else None
        text = caption(colour, shape, sz, MOTION_NAMES[window.motion[0]], BACKGROUND_NAMES[bgs[0]], then)
        return text, window
    raise RuntimeError(f"no truthful window of {frames} frames in {max_tries} random long tracks")


def sample_batch(seed: int, batch: int, frames: int = 8, event_probability: float = 0.2, long_fraction: float = 0.0):
    """A deterministic batch: ``(captions [batch], clips [batch, F, H, W, 3], tracks)``.

    A fraction ``long_fraction`` (in expectation) of the clips are windows of long tracks
    (:func:`random_long_window`); the others are fresh clips (:func:`random_track`).
    """
    rng = np.random.default_rng(seed)
    pairs = [random_long_window(rng, frames) if rng.uniform() < long_fraction else random_track(rng, frames, event_probability)
             for _ in range(batch)]
    texts = [p[0] for p in pairs]
    tracks = [p[1] for p in pairs]
    return texts, np.stack([render(t) for t in tracks]), tracks


def long_track(
    colour: str,
    shape: str,
    size: str,
    events: Sequence[Event],
    *,
    start=None,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    shade: Optional[str] = None,
    pattern: Optional[str] = None,
    light: Optional[str] = None,
) -> Track:
    """A long multi-event track: one persistent object through a sequence of local events.

    The object keeps its shape, size, shade and pattern, and the scene its light (drawn from
    ``seed`` when not given: the unprompted identity); each event sets the motion and background for its frames, and may
    recolour the object. The object starts at ``start`` (the image centre by default) and bounces
    off the walls.
    """
    if not events:
        raise ValueError("events is empty; a long track needs at least one Event")
    rng = np.random.default_rng(seed)
    hw = SIZES[size] if size in SIZES else _index(SIZES, size, "size")
    colours, motions, backgrounds = [], [], []
    current = _index(COLOURS, colour, "colour")
    for e in events:
        if e.frames < 1:
            raise ValueError(f"Event.frames must be >= 1, got {e.frames}")
        if e.colour is not None:
            current = _index(COLOURS, e.colour, "colour")
        colours += [current] * e.frames
        motions += [_index(MOTIONS, e.motion, "motion")] * e.frames
        backgrounds += [_index(BACKGROUNDS, e.background, "background")] * e.frames
    n = len(colours)
    start = (image_size / 2, image_size / 2) if start is None else start
    motion = np.asarray(motions)
    return Track(
        colour=np.asarray(colours),
        shape=np.full(n, _index(dict.fromkeys(SHAPES), shape, "shape")),
        size=np.full(n, _index(SIZES, size, "size")),
        background=np.asarray(backgrounds),
        motion=motion,
        centre=simulate(start, motion, hw, image_size),
        phase=rng.uniform(0.0, 16.0, size=2),
        shade=np.full(n, _identity_index(SHADES, shade, "shade", rng)),
        pattern=np.full(n, _identity_index(dict.fromkeys(PATTERNS), pattern, "pattern", rng)),
        light=np.full(n, _identity_index(LIGHTS, light, "light", rng)),
    )
