"""Shapes-world metrics: the analytic probes (the judges of prompt fidelity) and what is built on them.

From pixels alone, :func:`probe_frames` recovers per frame the background class and the
object's colour, shape, size and centre; :func:`motion_direction` reads the motion from the
centre track. The renderer (:mod:`syncos_jax.backbones.toy.world`) is known, so the probes are
exact on real renders (``tests/test_toy_world.py`` checks this on random tracks); on generated
videos they are the nearest-class readings.

How a frame is read:

1. the background colour is the per-channel median of the frame (the object covers at most a
   fifth of it); the background class is the nearest palette entry;
2. object pixels are those farther than :data:`OBJECT_THRESHOLD` from that colour; the largest
   4-connected component is kept (a night sky's stars are isolated pixels);
3. ink: the component's pixels within :data:`INK_RADIUS` of the pattern ink
   (:data:`world.INK <syncos_jax.backbones.toy.world.INK>`); colour and shade: the nearest of the
   18 (colour, shade) entries to the median colour of the other pixels (of all of them where every
   pixel is ink);
4. centre and size: from the component's bounding box (half-width ``< 5.5`` px is small);
5. shape: the nearest template — the renderer's own masks of every shape, at the read size,
   centred within ±2 px (in ½ px steps) of the component's box centre — by intersection over
   union. On a render the right template overlaps exactly or within a pixel row; the nearest wrong
   one reaches at most about 0.8 (a circle inside its square). Template matching reads ragged
   generated objects by their overall form; a reading from a few boundary pixels (such as whether
   the box's corners are filled) flips on one stray pixel;
6. light: a least-squares plane ``a + b·u_x + c·u_y`` through the brightness (the mean of the
   three channels) of the background pixels (those step 2 does not call far), ``u`` the pixel's
   offset from the image centre in half-widths; the light is the entry of
   :data:`world.LIGHTS <syncos_jax.backbones.toy.world.LIGHTS>` whose direction ``d`` has the largest
   ``(b, c) · d``. The texture and the clipping at the palette's ends bend the plane a little; the
   ramp (``±LIGHT_AMPLITUDE``) outweighs them on every render;
7. pattern: ``plain`` where fewer than :data:`PLAIN_INK_FRACTION` of the component's pixels are
   ink; otherwise the pattern whose region within the component (``world.pattern_mask`` at the
   read size, centred within ±2 px of the box centre, intersected with the component) has the
   highest intersection over union with the ink pixels. The smallest painted region (the top of
   a small triangle) is about a quarter of the object.

:func:`object_shade_scale` reads step 3's base colour as a continuous brightness against a named
colour (on renders, the shade's factor), to see whether a model draws the world's shades or values
between them.

Shade, pattern and light are the unprompted identity: no caption names them, so a long video keeps
them only if its sampler keeps them. Shade and pattern are the object's (:data:`OBJECT_IDENTITY`,
what "unprompted identity" means where no attributes are named); the light is the scene's.
:func:`identity_code` is the one place that turns readings into one identity per frame.
Built on the probes (every function reads pixels; none needs the track):

* :func:`object_descriptor` and :func:`background_descriptor`: exact per-frame features for the
  generic :func:`syncos_jax.metrics.consistency` (subject and background consistency);
* :func:`identity_consistency`: how often the attributes a global prompt fixes keep their
  majority reading; :func:`centre_jumps`: the largest centre jumps at and away from event
  boundaries; :func:`ghost_frames` / :func:`clean_frames`: frames with two object-like blobs / with
  exactly one;
* :func:`identity_agreement`: how often two frames show the same unprompted identity, by their
  distance, and the drift (near minus far agreement) that tells drift from flicker;
  :func:`same_identity_at_the_ends`: the first and the last chunk alike;
* :func:`prompt_fidelity`: per segment, which of the caption's five factors the probes read back;
* :func:`shapes_report`: all of the above and the generic video metrics in one JSON-ready dict.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from syncos_jax.backbones.toy import world
from syncos_jax.metrics import video as _video

__all__ = [
    "CentreJumps",
    "FACTORS",
    "FrameReadings",
    "GHOST_AREA_FRACTION",
    "GHOST_MIN_AREA",
    "INK_RADIUS",
    "PLAIN_INK_FRACTION",
    "OBJECT_THRESHOLD",
    "OBJECT_WINDOW",
    "PromptFidelity",
    "SegmentReading",
    "background_descriptor",
    "centre_jumps",
    "clean_frames",
    "ghost_frames",
    "AGREEMENT_BINS",
    "AGREEMENT_PAIRS",
    "DRIFT_FAR",
    "DRIFT_NEAR",
    "identity_agreement",
    "identity_code",
    "OBJECT_IDENTITY",
    "UNPROMPTED_ATTRIBUTES",
    "identity_consistency",
    "motion_direction",
    "object_descriptor",
    "object_shade_scale",
    "light_vector",
    "probe_frames",
    "prompt_fidelity",
    "read_segments",
    "same_identity_at_the_ends",
    "shapes_report",
]

OBJECT_THRESHOLD = 0.3  # colour distance in [0, 1] RGB units
# The mask window of object_descriptor (px): a large object (17 px across) with 1–2 px to spare.
OBJECT_WINDOW = 2 * (world.SIZES["large"] + 2)
# A blob is object-like from 30 % of a small circle's area (80 px at 32×32): 24 px. A night sky's
# stars are single pixels (and nearer the sky's colour than OBJECT_THRESHOLD); the smallest object,
# a small triangle, covers 50 px.
GHOST_AREA_FRACTION = 0.3
_SMALL_CIRCLE_AREA = int(world.shape_mask("circle", (16.0, 16.0), world.SIZES["small"], 32).sum())
GHOST_MIN_AREA = math.ceil(GHOST_AREA_FRACTION * _SMALL_CIRCLE_AREA)
FACTORS = ("colour", "shape", "size", "motion", "background")  # the factors a caption names
# A pixel within INK_RADIUS of the ink is ink: half the smallest distance from the ink to a shade of a colour (0.476).
INK_RADIUS = 0.23
PLAIN_INK_FRACTION = 0.1
_BG = np.array(list(world.BACKGROUNDS.values()))
_COL = np.array(list(world.COLOURS.values()))
_SHADED = np.array([world.object_colour(c, s) for c in world.COLOUR_NAMES for s in world.SHADE_NAMES])  # [18, 3]
_INK = np.array(world.INK)
_SIZE_SPLIT = 0.5 * (world.SIZES["small"] + world.SIZES["large"])
_TEMPLATE_OFFSETS = np.arange(-2.0, 2.01, 0.5)  # template centres searched around the box centre (px)


class FrameReadings(NamedTuple):
    """Per-frame probe readings of a clip of ``F`` frames.

    Attributes:
      background: ``[F]`` int index into ``world.BACKGROUND_NAMES``.
      found: ``[F]`` bool, whether an object was found.
      colour, shape, size: ``[F]`` int indices (``−1`` where no object was found).
      centre: ``[F, 2]`` float ``(x, y)`` bounding-box centre in pixels (NaN where none).
      area: ``[F]`` int object pixel count.
      shade, pattern: ``[F]`` int indices into ``world.SHADE_NAMES`` / ``world.PATTERNS`` (``−1``
        where no object was found): the object's unprompted identity.
      light: ``[F]`` int index into ``world.LIGHT_NAMES``: the scene's unprompted light (read in
        every frame, with or without an object).
    """

    background: np.ndarray
    found: np.ndarray
    colour: np.ndarray
    shape: np.ndarray
    size: np.ndarray
    centre: np.ndarray
    area: np.ndarray
    shade: np.ndarray
    pattern: np.ndarray
    light: np.ndarray


def _nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return np.argmin(((colours[..., None, :] - palette) ** 2).sum(-1), axis=-1)


def _nearest_shape(mask: np.ndarray, centre, half_width: float) -> int:
    """The index into ``world.SHAPES`` of the template (at ``half_width``, centred within
    :data:`_TEMPLATE_OFFSETS` of ``centre``) with the highest intersection over union with
    ``mask: [H, W]`` bool."""
    ox, oy = np.meshgrid(_TEMPLATE_OFFSETS, _TEMPLATE_OFFSETS)
    cx = (centre[0] + ox.ravel())[:, None, None]  # [K, 1, 1]: shape_mask broadcasts over centres
    cy = (centre[1] + oy.ravel())[:, None, None]
    best = []
    for shape in world.SHAPES:
        t = world.shape_mask(shape, (cx, cy), half_width, mask.shape[0])  # [K, H, W]
        inter = (t & mask).sum((1, 2))
        union = (t | mask).sum((1, 2))
        best.append((inter / np.maximum(union, 1)).max())
    return int(np.argmax(best))


def _nearest_pattern(mask: np.ndarray, ink: np.ndarray, centre, half_width: float) -> int:
    """The index into ``world.PATTERNS`` read from the object's pixels ``mask: [H, W]`` bool and
    its ink pixels ``ink: [H, W]`` bool (step 7 of the module docstring)."""
    if ink.sum() < PLAIN_INK_FRACTION * mask.sum():
        return world.PATTERNS.index("plain")
    ox, oy = np.meshgrid(_TEMPLATE_OFFSETS, _TEMPLATE_OFFSETS)
    cx = (centre[0] + ox.ravel())[:, None, None]  # [K, 1, 1]
    cy = (centre[1] + oy.ravel())[:, None, None]
    best = {}
    for pattern in world.PATTERNS[1:]:
        t = world.pattern_mask(pattern, (cx, cy), half_width, mask.shape[0]) & mask  # [K, H, W]
        inter = (t & ink).sum((1, 2))
        union = (t | ink).sum((1, 2))
        best[pattern] = (inter / np.maximum(union, 1)).max()
    return world.PATTERNS.index(max(best, key=best.get))


_LIGHT_DIRECTIONS = np.array(list(world.LIGHTS.values()))  # [L, 2]


def _light_slope(img: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The slope ``(b, c)`` ``[2]`` of the least-squares plane ``a + b·u_x + c·u_y`` through the
    brightness of ``img: [H, W, 3]`` in ``[0, 1]`` over the pixels ``background: [H, W]`` bool (all
    pixels if none), ``u`` in half-widths from the image centre (step 6 of the module docstring)."""
    size = img.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    c = size / 2.0
    sel = background if background.any() else np.ones_like(background)
    design = np.stack([np.ones(int(sel.sum())), (x[sel] - c) / c, (y[sel] - c) / c], axis=1)  # [N, 3]
    return np.linalg.lstsq(design, img[sel].mean(-1), rcond=None)[0][1:]


def _read_light(img: np.ndarray, background: np.ndarray) -> int:
    """The index into ``world.LIGHT_NAMES`` of the light whose direction has the largest component
    of :func:`_light_slope`."""
    return int(np.argmax(_LIGHT_DIRECTIONS @ _light_slope(img, background)))


def light_vector(frames) -> np.ndarray:
    """How strongly, and toward which side, each frame's background is lit: ``[F, 2]`` float, the
    slope ``(b, c)`` of the plane the light probe fits (step 6 of the module docstring), in ``[0, 1]``
    brightness per half-width.

    ``frames: [F, H, W, 3]`` in ``[−1, 1]``. On a render it is close to ``LIGHT_AMPLITUDE · d`` for the
    light's direction ``d`` (the texture and the clipping at the palette's ends bend it a little); on
    samples its length shows whether a model draws the world's ramp at full strength or a weaker
    one, which the nearest-direction probe cannot show.

    Raises:
      ValueError: for frames not ``[F, H, W, 3]``.
    """
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {frames.shape}")
    out = []
    for img in np.clip((frames + 1.0) / 2.0, 0.0, 1.0):
        _, labels, _ = _blobs(img)
        out.append(_light_slope(img, labels == 0))
    return np.array(out).reshape(len(frames), 2)


def _blobs(img: np.ndarray):
    """``img: [H, W, 3]`` in ``[0, 1]`` → (background colour ``[3]``, labels ``[H, W]`` of the
    4-connected components of the pixels farther than :data:`OBJECT_THRESHOLD` from it, their
    areas ``[n]``) — steps 1 and 2 of the module docstring."""
    bg_colour = np.median(img.reshape(-1, 3), axis=0)
    far = np.linalg.norm(img - bg_colour, axis=-1) > OBJECT_THRESHOLD
    labels, n = ndimage.label(far)
    areas = ndimage.sum_labels(far, labels, index=np.arange(1, n + 1)) if n else np.zeros(0)
    return bg_colour, labels, np.asarray(areas)


def _object_pixels(img: np.ndarray, labels: np.ndarray, areas: np.ndarray):
    """The largest blob's ``mask [H, W]`` bool, its ink pixels ``[H, W]`` bool and its base colour
    ``[3]`` (the median of its non-ink pixels; of all of them where every pixel is ink)."""
    mask = labels == (1 + int(np.argmax(areas)))
    ink = mask & (np.linalg.norm(img - _INK, axis=-1) < INK_RADIUS)
    base = img[mask & ~ink] if (mask & ~ink).any() else img[mask]
    return mask, ink, np.median(base, axis=0)


def _read_frame(img: np.ndarray):
    """``img: [H, W, 3]`` in ``[0, 1]`` → (background, found, colour, shape, size, centre, area, shade,
    pattern, light)."""
    bg_colour, labels, sizes = _blobs(img)
    background = int(_nearest(bg_colour, _BG))
    light = _read_light(img, labels == 0)
    if sizes.size == 0:
        return background, False, -1, -1, -1, (np.nan, np.nan), 0, -1, -1, light
    mask, ink, base = _object_pixels(img, labels, sizes)
    colour, shade = divmod(int(_nearest(base, _SHADED)), len(world.SHADES))
    ys, xs = np.nonzero(mask)
    cx, cy = 0.5 * (xs.min() + xs.max()) + 0.5, 0.5 * (ys.min() + ys.max()) + 0.5
    half = 0.5 * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    size = int(half > _SIZE_SPLIT)
    hw = world.SIZES[world.SIZE_NAMES[size]]
    shape = _nearest_shape(mask, (cx, cy), hw)
    pattern = _nearest_pattern(mask, ink, (cx, cy), hw)
    return background, True, colour, shape, size, (cx, cy), int(mask.sum()), shade, pattern, light


def probe_frames(frames) -> FrameReadings:
    """Reads every frame of ``frames: [F, H, W, 3]`` in ``[−1, 1]`` (see the module docstring)."""
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {frames.shape}")
    imgs = np.clip((frames + 1.0) / 2.0, 0.0, 1.0)
    rows = [_read_frame(img) for img in imgs]
    bg, found, col, shp, size, centre, area, shade, pattern, light = zip(*rows)
    return FrameReadings(
        background=np.array(bg),
        found=np.array(found),
        colour=np.array(col),
        shape=np.array(shp),
        size=np.array(size),
        centre=np.array(centre, np.float64),
        area=np.array(area),
        shade=np.array(shade),
        pattern=np.array(pattern),
        light=np.array(light),
    )


def object_shade_scale(frames, colour: str) -> np.ndarray:
    """How bright each frame's object is against the named colour: ``[F]`` float, the least-squares
    scale ``s`` of ``world.COLOURS[colour]`` nearest the object's base colour (the median colour
    of its non-ink pixels, as :func:`probe_frames` reads it), ``NaN`` where no object is found.

    ``frames: [F, H, W, 3]`` in ``[−1, 1]``. On renders of that colour it is the shade's factor
    exactly (:data:`world.SHADES <syncos_jax.backbones.toy.world.SHADES>`); on samples it is a
    continuous reading, which shows whether a model draws the world's three shades or values in
    between them (that the nearest-shade probe then splits at its thresholds).

    Raises:
      ValueError: for frames not ``[F, H, W, 3]`` or a colour not in ``world.COLOUR_NAMES``.
    """
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {frames.shape}")
    if colour not in world.COLOURS:
        raise ValueError(f"colour must be one of {world.COLOUR_NAMES}, got {colour!r}")
    c = np.asarray(world.COLOURS[colour], np.float64)
    out = np.full(len(frames), np.nan)
    for i, img in enumerate(np.clip((frames + 1.0) / 2.0, 0.0, 1.0)):
        _, labels, areas = _blobs(img)
        if areas.size:
            out[i] = float(_object_pixels(img, labels, areas)[2] @ c / (c @ c))
    return out


def motion_direction(centre, speed: float = world.MOTION_SPEED) -> int:
    """The motion of a centre track ``[F, 2]`` as an index into ``world.MOTION_NAMES``.

    The velocity is the least-squares slope of the track over the frames where an object was
    found (NaN rows are skipped). Slower than ``speed / 2`` pixels per frame is ``still``;
    otherwise the dominant axis and its sign decide (``y`` grows downwards). With fewer than two
    valid frames the reading is ``still``.
    """
    centre = np.asarray(centre, np.float64)
    ok = np.all(np.isfinite(centre), axis=-1)
    if ok.sum() < 2:
        return world.MOTION_NAMES.index("still")
    t = np.arange(len(centre))[ok]
    vel = np.polyfit(t, centre[ok], 1)[0]  # [2]
    if np.hypot(*vel) < speed / 2:
        return world.MOTION_NAMES.index("still")
    if abs(vel[0]) >= abs(vel[1]):
        return world.MOTION_NAMES.index("right" if vel[0] > 0 else "left")
    return world.MOTION_NAMES.index("down" if vel[1] > 0 else "up")


def _majority(values: np.ndarray) -> int:
    values = values[values >= 0]
    if values.size == 0:
        return -1
    return int(np.bincount(values).argmax())


class SegmentReading(NamedTuple):
    """The majority readings of one segment of frames, as names (``None`` where nothing was found)."""

    start: int
    end: int
    background: str
    colour: str | None
    shape: str | None
    size: str | None
    motion: str
    object_frames: int
    shade: str | None = None
    pattern: str | None = None
    light: str | None = None

    def as_dict(self) -> dict:
        """The reading as a plain dict (JSON-ready)."""
        return self._asdict()


def read_segments(frames, segments: Sequence[tuple[int, int]]) -> list[SegmentReading]:
    """Probe readings per segment ``(start, end)`` (end exclusive) of ``frames: [F, H, W, 3]``."""
    return _read_segments(probe_frames(frames), segments)


def _read_segments(r: FrameReadings, segments: Sequence[tuple[int, int]]) -> list[SegmentReading]:
    out = []
    for a, b in segments:
        if not 0 <= a < b <= len(r.background):
            raise ValueError(f"segment ({a}, {b}) is not inside the video's {len(r.background)} frames")

        def name(names, idx):
            return None if idx < 0 else names[idx]

        out.append(
            SegmentReading(
                start=int(a),
                end=int(b),
                background=world.BACKGROUND_NAMES[_majority(r.background[a:b])],
                colour=name(world.COLOUR_NAMES, _majority(r.colour[a:b])),
                shape=name(world.SHAPES, _majority(r.shape[a:b])),
                size=name(world.SIZE_NAMES, _majority(r.size[a:b])),
                motion=world.MOTION_NAMES[motion_direction(r.centre[a:b])],
                object_frames=int(r.found[a:b].sum()),
                shade=name(world.SHADE_NAMES, _majority(r.shade[a:b])),
                pattern=name(world.PATTERNS, _majority(r.pattern[a:b])),
                light=world.LIGHT_NAMES[_majority(r.light[a:b])],
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Descriptors for consistency
# ---------------------------------------------------------------------------------------------


def _feature_frames(frames) -> np.ndarray:
    """Frames in the convention of :func:`syncos_jax.metrics.consistency`'s ``features``: uint8, or
    float in ``[0, 1]``; float64 ``[F, H, W, 3]`` in ``[0, 1]``."""
    x = np.asarray(frames)
    if x.dtype == np.uint8:
        return _video.unit_frames(x)
    if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[:3]) == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F, H, W >= 1, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)) or x.min() < -1e-3 or x.max() > 1.0 + 1e-3:
        raise ValueError(f"float frames must lie in [0, 1] (the features convention of consistency), got values in "
                         f"[{np.nanmin(x):.4g}, {np.nanmax(x):.4g}]; for frames in [-1, 1] pass (frames + 1) / 2")
    return np.clip(x, 0.0, 1.0)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else np.zeros_like(v)


def object_descriptor(frames) -> np.ndarray:
    """Per-frame features of the object (the subject): float64 ``[F, 3 + W²]``, ``W`` =
    :data:`OBJECT_WINDOW`.

    ``d = [û / √2, m̂ / √2]`` where ``u`` is the object's own colour — the median of its non-ink
    pixels (the probes' largest blob, step 3), so the colour at its shade — in ``[−1, 1]`` units
    (``2·rgb − 1``) and ``m`` the binary mask of those non-ink pixels in the ``W × W`` window whose
    top-left pixel is ``(⌊cx − W/2⌋, ⌊cy − W/2⌋)``, ``(cx, cy)`` the probes' box centre (so position
    does not count; shape, size, shade and pattern do); ``v̂ = v / |v|`` (``0`` for ``v = 0``). The
    cosine of two descriptors is therefore ``½(û_a·û_b + m̂_a·m̂_b)``: for one object recoloured from
    ``a`` to ``b`` in place, ``½(1 + û_a·û_b)``. A frame with no object has ``d = 0`` (cosine 0
    with everything).

    The mask is the pixel mask: a render moving at 1.5 px/frame alternates between masks a pixel
    row or column apart, so its subject consistency is 0.96–0.99 (a small triangle lowest, a large
    square highest), not 1; a small circle against a small square in place is
    ``½(1 + 80/√(80·100)) ≈ 0.947``. :func:`identity_consistency` reads the shape exactly.

    Args:
      frames: ``[F, H, W, 3]`` uint8 or float in ``[0, 1]`` (the ``features`` convention of
        :func:`~syncos_jax.metrics.consistency`, not the ``[−1, 1]`` of the probes).
    """
    x = _feature_frames(frames)
    w = OBJECT_WINDOW
    out = np.zeros((x.shape[0], 3 + w * w))
    for i, img in enumerate(x):
        _, labels, areas = _blobs(img)
        if areas.size == 0:
            continue
        mask, ink, base = _object_pixels(img, labels, areas)
        ys, xs = np.nonzero(mask)
        cx, cy = 0.5 * (xs.min() + xs.max()) + 0.5, 0.5 * (ys.min() + ys.max()) + 0.5
        x0, y0 = math.floor(cx - w / 2), math.floor(cy - w / 2)
        window = np.pad(mask & ~ink, w)[y0 + w : y0 + 2 * w, x0 + w : x0 + 2 * w]
        out[i, :3] = _unit(2.0 * base - 1.0) / np.sqrt(2.0)
        out[i, 3:] = _unit(window.ravel().astype(np.float64)) / np.sqrt(2.0)
    return out


def background_descriptor(frames) -> np.ndarray:
    """Per-frame features of the background: float64 ``[F, 3]``, the unit vector of the background
    colour in ``[−1, 1]`` units (``2·rgb − 1``): the per-channel median of the pixels that are not
    object pixels (within :data:`OBJECT_THRESHOLD` of the probes' background colour; the probes'
    colour itself where every pixel is far), so that an object recoloured in place leaves it
    unchanged.

    The cosine of two frames' descriptors is that of their background colours about mid-grey (grass
    and snow: −0.48, clipped to 0 by consistency; night and grass: 0.67). The texture is left out:
    its amplitude (0.06) is below every palette separation and it never changes on a render, so it
    would only add noise on generated frames. A uniform mid-grey frame has ``d = 0``.

    Args:
      frames: ``[F, H, W, 3]`` uint8 or float in ``[0, 1]`` (as :func:`object_descriptor`).
    """
    x = _feature_frames(frames)
    out = np.zeros((x.shape[0], 3))
    for i, img in enumerate(x):
        bg_colour, labels, _ = _blobs(img)
        rest = img[labels == 0]
        out[i] = _unit(2.0 * (np.median(rest, axis=0) if rest.size else bg_colour) - 1.0)
    return out


# ---------------------------------------------------------------------------------------------
# Identity, centre jumps, ghosts
# ---------------------------------------------------------------------------------------------


_IDENTITY_ATTRIBUTES = ("colour", "shape", "size", "background", "shade", "pattern", "light", "unprompted")
UNPROMPTED_ATTRIBUTES = ("shade", "pattern", "light")  # what no caption names
OBJECT_IDENTITY = ("shade", "pattern")  # the object's part of it: "the unprompted identity" by default


def identity_code(readings: FrameReadings, attributes: Sequence[str] = OBJECT_IDENTITY) -> np.ndarray:
    """One integer per frame for the joint reading of some unprompted attributes: ``[F]`` int, equal
    in two frames exactly when every attribute's reading is, and ``−1`` where any of them was not
    read (an object attribute where no object was found; the scene's light is read in every frame).

    Args:
      readings: :func:`probe_frames` of a video.
      attributes: a non-empty subset of :data:`UNPROMPTED_ATTRIBUTES`, in any order.

    Raises:
      ValueError: for an empty or unknown attribute list.
    """
    attributes = tuple(attributes)
    if not attributes or any(a not in UNPROMPTED_ATTRIBUTES for a in attributes) or len(set(attributes)) < len(attributes):
        raise ValueError(f"attributes must be distinct names among {UNPROMPTED_ATTRIBUTES}, got {attributes}")
    sizes = {"shade": len(world.SHADES), "pattern": len(world.PATTERNS), "light": len(world.LIGHTS)}
    code = np.zeros(np.asarray(readings.found).shape, np.int64)
    object_attributes = any(a != "light" for a in attributes)  # the scene's light is read in every frame
    read = np.asarray(readings.found, bool) if object_attributes else np.ones(code.shape, bool)
    for a in attributes:
        v = np.asarray(getattr(readings, a), np.int64)
        code, read = code * sizes[a] + v, read & (v >= 0)
    return np.where(read, code, -1)


def identity_consistency(readings: FrameReadings, attributes: Sequence[str] = ("colour", "shape", "size")) -> dict:
    """For each attribute, the fraction of frames whose reading equals the video's majority reading
    (``1.0`` = it never changes): ``{attribute: float}``.

    ``colour``, ``shape`` and ``size`` (the attributes a global prompt fixes) and ``shade`` and
    ``pattern`` (the object's unprompted identity: no prompt names them) count the frames where an
    object was found; ``unprompted`` is the fraction of those frames whose (shade, pattern) pair is
    the majority pair; ``background`` and ``light`` (the scene's) count every frame. With no such frame the value is ``0.0`` (an
    object that never appears keeps no identity).

    Args:
      readings: :func:`probe_frames` of a video.
      attributes: a subset of ``("colour", "shape", "size", "background", "shade", "pattern",
        "light", "unprompted")``.
    """
    out = {}
    for a in attributes:
        if a not in _IDENTITY_ATTRIBUTES:
            raise ValueError(f"attributes: unknown attribute {a!r}; expected some of {_IDENTITY_ATTRIBUTES}")
        v = identity_code(readings) if a == "unprompted" else np.asarray(getattr(readings, a))
        if a not in ("background", "light"):  # the scene's: read in every frame
            v = v[np.asarray(readings.found, bool)]
        out[a] = 0.0 if v.size == 0 else float(np.mean(v == _majority(v)))
    return out


class CentreJumps(NamedTuple):
    """The largest centre jumps (px) of a video, at event boundaries and away from them."""

    at_boundary: float
    away: float


def centre_jumps(readings: FrameReadings, boundaries: Sequence[int], *, window: int = 0) -> CentreJumps:
    """The largest jump of the object's centre at the event boundaries and away from them.

    The jump of the pair ``(t, t + 1)`` is ``|c_{t+1} − c_t|`` (Euclidean, px), for pairs where an
    object was found in both frames. The pair at boundary ``b`` (the first frame of a new event) is
    ``(b − 1, b)``; with ``window = w`` the pairs ``(b − 1 − w, b − w) … (b − 1 + w, b + w)`` count as
    at the boundary too (default 0: the boundaries of a generated video are where the prompts
    switch, exactly known). Each maximum is ``0.0`` where it has no valid pair (no jump seen).

    Args:
      readings: :func:`probe_frames` of a video of ``F`` frames.
      boundaries: frame indices in ``[1, F − 1]`` (e.g. the segment starts but 0).
      window: extra pairs on each side of a boundary pair, ``>= 0``.
    """
    c = np.asarray(readings.centre, np.float64)
    n = c.shape[0]
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    jumps = np.linalg.norm(np.diff(c, axis=0), axis=-1)  # [F − 1]; NaN where a side has no object
    valid = np.isfinite(jumps)
    at = np.zeros(max(n - 1, 0), bool)
    for b in boundaries:
        if int(b) != b or not 1 <= b <= n - 1:
            raise ValueError(f"boundaries: {b!r} is not a frame index in [1, {n - 1}] (the video has {n} frames)")
        at[max(0, int(b) - 1 - window) : min(n - 1, int(b) + window)] = True

    def largest(sel):
        return float(jumps[sel].max()) if sel.any() else 0.0

    return CentreJumps(at_boundary=largest(at & valid), away=largest(~at & valid))


def _object_blob_counts(x: np.ndarray) -> np.ndarray:
    """``x: [F, H, W, 3]`` in ``[0, 1]`` → ``[F]`` int: blobs of at least :data:`GHOST_MIN_AREA` px."""
    return np.array([int((_blobs(img)[2] >= GHOST_MIN_AREA).sum()) for img in x])


def ghost_frames(frames) -> np.ndarray:
    """``[F]`` bool: frames with two or more object-like blobs — 4-connected components of the
    probes' object pixels (farther than :data:`OBJECT_THRESHOLD` from the background colour) of at
    least :data:`GHOST_MIN_AREA` px, i.e. the second-largest blob is at least 30 % of a small
    circle. A ghost touching the object merges with it and is not seen.

    Args:
      frames: ``[F, H, W, 3]`` uint8 or float in ``[−1, 1]``.
    """
    return _object_blob_counts(_video.unit_frames(frames)) >= 2


def clean_frames(frames) -> np.ndarray:
    """``[F]`` bool: frames with exactly one object-like blob (see :func:`ghost_frames`): an object
    was found and there is no ghost.

    Args:
      frames: ``[F, H, W, 3]`` uint8 or float in ``[−1, 1]``.
    """
    return _object_blob_counts(_video.unit_frames(frames)) == 1


# ---------------------------------------------------------------------------------------------
# Prompt fidelity and the report
# ---------------------------------------------------------------------------------------------


class PromptFidelity(NamedTuple):
    """How well a video's segments show their captions.

    Attributes:
      matches: per segment, ``{factor: bool}`` over :data:`FACTORS`.
      all_factors: the fraction of segments matching all five factors.
      per_factor: ``{factor: fraction of segments matching it}``.
    """

    matches: tuple
    all_factors: float
    per_factor: dict


def _parse_texts(segments, texts) -> list:
    segments, texts = list(segments), list(texts)
    if not segments:
        raise ValueError("segments is empty; expected a list of (start, end)")
    if len(segments) != len(texts):
        raise ValueError(f"texts must have one caption per segment: got {len(texts)} texts for {len(segments)} segments")
    captions = []
    for i, t in enumerate(texts):
        try:
            captions.append(world.parse_caption(t))
        except ValueError as e:
            raise ValueError(f"texts[{i}]: {e}") from None
    return captions


def _prompt_fidelity(r: FrameReadings, segments, captions) -> PromptFidelity:
    bg = world.BACKGROUND_NAMES
    matches = []
    for (a, b), s, c in zip(segments, _read_segments(r, segments), captions):
        if c.then is None:
            background = s.background == c.background
        else:
            background = bg[r.background[a]] == c.background and bg[r.background[b - 1]] == c.then
        matches.append({"colour": s.colour == c.colour, "shape": s.shape == c.shape, "size": s.size == c.size,
                        "motion": s.motion == c.motion, "background": bool(background)})
    per_factor = {k: float(np.mean([m[k] for m in matches])) for k in FACTORS}
    return PromptFidelity(tuple(matches), float(np.mean([all(m.values()) for m in matches])), per_factor)


def prompt_fidelity(frames, segments: Sequence[tuple[int, int]], texts: Sequence[str]) -> PromptFidelity:
    """Which of the five factors (:data:`FACTORS`) the probes read in each segment as its caption says.

    A segment's colour, shape and size are its majority readings and its motion
    :func:`motion_direction` of its centre track (:func:`read_segments`); its background is its
    majority reading, or, for a caption with ``then``, its first frame must read the first
    background and its last frame the second.

    Args:
      frames: ``[F, H, W, 3]`` uint8 or float in ``[−1, 1]``.
      segments: ``(start, end)`` per segment, end exclusive.
      texts: the joined caption of each segment, in :func:`world.parse_caption`'s grammar.

    Raises:
      ValueError: naming the caption that does not parse, or for mismatched lengths.
    """
    captions = _parse_texts(segments, texts)
    r = probe_frames(2.0 * _video.unit_frames(frames) - 1.0)
    return _prompt_fidelity(r, list(segments), captions)


def same_identity_at_the_ends(readings: FrameReadings, end_frames: int = 8,
                              attributes: Sequence[str] = OBJECT_IDENTITY) -> float:
    """``1.0`` if the majority unprompted identity (:func:`identity_code` of ``attributes``; by
    default the object's shade and pattern) of the first ``end_frames`` frames equals that of the
    last ``end_frames`` (frames where it was read), else ``0.0`` (also where either end shows no
    object): whether the object a long video ends with is the one it started with, however far
    apart the two ends are.

    Args:
      readings: :func:`probe_frames` of a video.
      end_frames: frames at each end, ``>= 1`` (a chunk of the toy model: 8).
      attributes: as :func:`identity_code`.
    """
    if end_frames < 1:
        raise ValueError(f"end_frames must be >= 1, got {end_frames}")
    pair = identity_code(readings, attributes)
    first, last = _majority(pair[:end_frames]), _majority(pair[-end_frames:])
    return float(first >= 0 and first == last)


# Frame distances for identity_agreement: [1, 8) is the toy model's chunk length; drift compares
# pairs [16, 32) apart with pairs >= 32 apart, both beyond what one chunk (8 frames, stride 4) spans.
AGREEMENT_BINS = (1, 8, 16, 32, 64)
DRIFT_NEAR = 16
DRIFT_FAR = 32


AGREEMENT_PAIRS = ("all", "same", "different")


def identity_agreement(readings: FrameReadings, bins: Sequence[int] = AGREEMENT_BINS, near: int = DRIFT_NEAR,
                       far: int = DRIFT_FAR, *, groups=None, pairs: str = "all",
                       attributes: Sequence[str] = OBJECT_IDENTITY) -> dict:
    """How often two frames show the same unprompted identity, by how far apart they are: what tells
    drift from flicker.

    Over the pairs of frames ``i < j`` where the identity was read (:func:`identity_code` of
    ``attributes``; by default the object's (shade, pattern), read where an object was found), the
    fraction whose readings are equal, pooled by distance ``d = j − i`` into ``[bins[0], bins[1]), …, [bins[-1], ∞)``.
    A video that keeps its identity scores 1 at every distance. One whose identity flickers around
    a fixed identity scores below 1. If the flicker is correlated over fewer than ``near`` frames
    (a wrong identity held for a few frames inside one chunk, say), the agreement is flat from
    ``near`` on. One whose identity *drifts* agrees less the farther apart the frames are.
    ``drift`` is the agreement of the pairs ``near <= d < far`` apart minus that of the pairs
    ``d >= far`` apart. It is ≈ 0 without drift and > 0 with drift. The near bins (``d < near``)
    also show the flicker within a chunk, which ``drift`` leaves out on purpose.

    ``groups`` and ``pairs`` restrict the pairs counted, to control for what else two frames share.
    A model may choose the unprompted identity partly from the prompt (a shade that suits the named
    colour), so in a video whose prompts repeat (A, B, A, B) frames under the same prompt agree more
    even without any carried identity, and where the repeats fall at one distance the agreement
    *rises* there. With ``groups`` the frames' prompt indices, ``pairs="same"`` counts only pairs
    under the same prompt and ``pairs="different"`` only pairs under different prompts.

    Returns:
      ``{f"agreement_{lo}": float | None for each bin's lower edge lo, "drift": float | None}``;
      ``None`` where the video has no such pair (too short, or too few frames with an object).

    Args:
      readings: :func:`probe_frames` of a video.
      bins: increasing integer distances ``>= 1``, the bins' lower edges.
      near, far: integers with ``1 <= near < far``: the distances ``drift`` compares.
      groups: ``[F]`` integer labels, one per frame (say, the index of the frame's prompt), or
        ``None``; needed for ``pairs`` ``"same"`` and ``"different"``, refused with ``"all"``.
      pairs: ``"all"`` (every pair), ``"same"`` (pairs whose two frames have the same label) or
        ``"different"`` (pairs whose labels differ).
      attributes: as :func:`identity_code` (``("light",)``: the scene's light alone).

    Raises:
      ValueError: naming the argument that is not as above.
    """
    if not bins or any(int(b) != b for b in bins) or bins[0] < 1 or any(b <= a for a, b in zip(bins, bins[1:])):
        raise ValueError(f"bins must be increasing integer distances >= 1, got {tuple(bins)}")
    if int(near) != near or int(far) != far or not 1 <= near < far:
        raise ValueError(f"near and far must be integers with 1 <= near < far, got near={near}, far={far}")
    if pairs not in AGREEMENT_PAIRS:
        raise ValueError(f"pairs must be one of {AGREEMENT_PAIRS}, got {pairs!r}")
    ident = identity_code(readings, attributes)
    found = ident >= 0
    n = found.size
    if pairs == "all" and groups is not None:
        raise ValueError("groups is only used with pairs='same' or 'different'; got groups with pairs='all'")
    if pairs != "all" and groups is None:
        raise ValueError(f"groups is needed for pairs={pairs!r} (one integer label per frame), got None")
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != (n,) or not np.issubdtype(g.dtype, np.integer):
            raise ValueError(f"groups must be {n} integer labels (one per frame), got dtype {g.dtype} shape {g.shape}")
    both = np.zeros(n, np.int64)  # both[d]: pairs d apart with an object in both frames; same[d]: of those, agreeing
    same = np.zeros(n, np.int64)
    for d in range(1, n):
        ok = found[d:] & found[:-d]
        if pairs != "all":
            ok &= (g[d:] == g[:-d]) if pairs == "same" else (g[d:] != g[:-d])
        both[d], same[d] = ok.sum(), (ok & (ident[d:] == ident[:-d])).sum()

    def mean(lo, hi):
        lo, hi = min(int(lo), n), min(hi, n)
        tot = both[lo:hi].sum()
        return float(same[lo:hi].sum() / tot) if tot else None

    edges = [int(b) for b in bins] + [n]
    out = {f"agreement_{lo}": mean(lo, hi) for lo, hi in zip(edges, edges[1:])}
    a, b = mean(near, far), mean(far, n)
    out["drift"] = None if a is None or b is None else a - b
    return out


def shapes_report(frames, segments: Sequence[tuple[int, int]], texts: Sequence[str], *,
                  min_scene_len: int = _video.MIN_SCENE_LEN, fps: int = 8, end_frames: int = 8) -> dict:
    """Every shapes-world and generic metric of a video, as a flat dict of plain floats, ints and
    bools, and ``None`` where a metric is undefined for the video (JSON-ready).

    Keys:
      ``frames``, ``segments``: counts.
      ``fidelity_all``, ``fidelity_{colour,shape,size,motion,background}``: :func:`prompt_fidelity`;
      ``motion_fidelity`` repeats ``fidelity_motion`` (the fraction of segments whose motion reads
      as asked).
      ``identity_{colour,shape,size}``: :func:`identity_consistency`; ``identity_{shade,pattern}``
      and ``identity_unprompted`` (both at once): the same for the object's unprompted identity;
      ``identity_unprompted_ends``: :func:`same_identity_at_the_ends` (1.0 or 0.0).
      ``identity_agreement_{1,8,16,32,64}`` and ``identity_drift``: :func:`identity_agreement` at its
      default bins (``None`` where the video has no pair for a bin).
      ``identity_light``, ``identity_light_ends``, ``identity_light_agreement_{1,8,16,32,64}`` and
      ``identity_light_drift``: the same three for the scene's light alone.
      ``centre_jump_at_boundary``, ``centre_jump_away``: :func:`centre_jumps`, boundaries the segment
      starts but 0, ``window = 0``.
      ``object_found_fraction``, ``ghost_fraction``, ``clean_fraction``: fractions of frames.
      ``subject_consistency``, ``background_consistency``: :func:`~syncos_jax.metrics.consistency`
      with :func:`object_descriptor` / :func:`background_descriptor`.
      ``motion_smoothness``: :func:`~syncos_jax.metrics.motion_smoothness`.
      ``dynamic`` (bool), ``dynamic_degree`` (fraction of dynamic pairs), ``mean_flow_magnitude``
      (px/frame): :func:`~syncos_jax.metrics.dynamic_degree` at ``fps``.
      ``num_scenes``, ``min_scene_len``: :func:`~syncos_jax.metrics.num_scenes`.

    Args:
      frames: ``[F, H, W, 3]`` uint8 or float in ``[−1, 1]``, ``F >= 3``.
      segments, texts: as :func:`prompt_fidelity`.
      min_scene_len, fps: passed to :func:`~syncos_jax.metrics.num_scenes` (``fps`` also to
        :func:`~syncos_jax.metrics.dynamic_degree`).
      end_frames: passed to :func:`same_identity_at_the_ends`.
    """
    captions = _parse_texts(segments, texts)
    segments = [(int(a), int(b)) for a, b in segments]
    u = _video.unit_frames(frames)
    if u.shape[0] < 3:
        raise ValueError(f"shapes_report needs frames with F >= 3 (for motion smoothness), got F = {u.shape[0]}")
    x = _video.uint8_frames(frames)
    r = probe_frames(2.0 * u - 1.0)
    fid = _prompt_fidelity(r, segments, captions)
    ident = identity_consistency(r, ("colour", "shape", "size", "shade", "pattern", "light", "unprompted"))
    ends = same_identity_at_the_ends(r, end_frames)
    agree = identity_agreement(r)
    light_ends = same_identity_at_the_ends(r, end_frames, ("light",))
    light_agree = identity_agreement(r, attributes=("light",))
    jumps = centre_jumps(r, sorted({a for a, _ in segments if a != 0}))
    blobs = _object_blob_counts(u)
    dyn = _video.dynamic_degree(x, fps=fps)
    scenes = _video.num_scenes(x, min_scene_len=min_scene_len, fps=fps)
    feats = u.astype(np.float32)  # what consistency hands its feature function
    return {
        "frames": int(u.shape[0]),
        "segments": len(segments),
        "fidelity_all": fid.all_factors,
        **{f"fidelity_{k}": v for k, v in fid.per_factor.items()},
        "motion_fidelity": fid.per_factor["motion"],
        **{f"identity_{k}": v for k, v in ident.items()},
        "identity_unprompted_ends": ends,
        **{f"identity_{k}": v for k, v in agree.items()},
        "identity_light_ends": light_ends,
        **{f"identity_light_{k}": v for k, v in light_agree.items()},
        "centre_jump_at_boundary": jumps.at_boundary,
        "centre_jump_away": jumps.away,
        "object_found_fraction": float(np.mean(r.found)),
        "ghost_fraction": float(np.mean(blobs >= 2)),
        "clean_fraction": float(np.mean(blobs == 1)),
        "subject_consistency": _video.feature_consistency(object_descriptor(feats)),
        "background_consistency": _video.feature_consistency(background_descriptor(feats)),
        "motion_smoothness": _video.motion_smoothness(x),
        "dynamic": dyn.dynamic,
        "dynamic_degree": dyn.fraction,
        "mean_flow_magnitude": dyn.mean_magnitude,
        "num_scenes": scenes.count,
        "min_scene_len": scenes.min_scene_len,
    }
