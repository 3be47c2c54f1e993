"""Metrics. For now: the analytic probes of the shapes world (the judges of prompt fidelity).

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
3. colour: the nearest palette entry to the component's median colour;
4. centre and size: from the component's bounding box (half-width ``< 5.5`` px is small);
5. shape: the nearest template — the renderer's own masks of every shape, at the read size,
   centred within ±2 px (in ½ px steps) of the component's box centre — by intersection over
   union. On a render the right template overlaps exactly or within a pixel row; the nearest wrong
   one reaches at most about 0.8 (a circle inside its square). Template matching reads ragged
   generated objects by their overall form; a reading from a few boundary pixels (such as whether
   the box's corners are filled) flips on one stray pixel.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from syncos_jax.backbones.toy import world

__all__ = ["FrameReadings", "OBJECT_THRESHOLD", "SegmentReading", "motion_direction", "probe_frames", "read_segments"]

OBJECT_THRESHOLD = 0.3  # colour distance in [0, 1] RGB units
_BG = np.array(list(world.BACKGROUNDS.values()))
_COL = np.array(list(world.COLOURS.values()))
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
    """

    background: np.ndarray
    found: np.ndarray
    colour: np.ndarray
    shape: np.ndarray
    size: np.ndarray
    centre: np.ndarray
    area: np.ndarray


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


def _read_frame(img: np.ndarray):
    """``img: [H, W, 3]`` in ``[0, 1]`` → (background, found, colour, shape, size, centre, area)."""
    bg_colour = np.median(img.reshape(-1, 3), axis=0)
    background = int(_nearest(bg_colour, _BG))
    far = np.linalg.norm(img - bg_colour, axis=-1) > OBJECT_THRESHOLD
    labels, n = ndimage.label(far)
    if n == 0:
        return background, False, -1, -1, -1, (np.nan, np.nan), 0
    sizes = ndimage.sum_labels(far, labels, index=np.arange(1, n + 1))
    mask = labels == (1 + int(np.argmax(sizes)))
    colour = int(_nearest(np.median(img[mask], axis=0), _COL))
    ys, xs = np.nonzero(mask)
    cx, cy = 0.5 * (xs.min() + xs.max()) + 0.5, 0.5 * (ys.min() + ys.max()) + 0.5
    half = 0.5 * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    size = int(half > _SIZE_SPLIT)
    shape = _nearest_shape(mask, (cx, cy), world.SIZES[world.SIZE_NAMES[size]])
    return background, True, colour, shape, size, (cx, cy), int(mask.sum())


def probe_frames(frames) -> FrameReadings:
    """Reads every frame of ``frames: [F, H, W, 3]`` in ``[−1, 1]`` (see the module docstring)."""
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {frames.shape}")
    imgs = np.clip((frames + 1.0) / 2.0, 0.0, 1.0)
    rows = [_read_frame(img) for img in imgs]
    bg, found, col, shp, size, centre, area = zip(*rows)
    return FrameReadings(
        background=np.array(bg),
        found=np.array(found),
        colour=np.array(col),
        shape=np.array(shp),
        size=np.array(size),
        centre=np.array(centre, np.float64),
        area=np.array(area),
    )


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

    def as_dict(self) -> dict:
        return self._asdict()


def read_segments(frames, segments: Sequence[tuple[int, int]]) -> list[SegmentReading]:
    """Probe readings per segment ``(start, end)`` (end exclusive) of ``frames: [F, H, W, 3]``."""
    r = probe_frames(frames)
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
            )
        )
    return out
