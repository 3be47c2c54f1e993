"""Backbone-independent video metrics, after VBench (Huang et al., CVPR 2024).

Every function reads frames ``[F, H, W, 3]``, either uint8 or float in ``[−1, 1]`` (the pixel space
of the toy model and of decoded VAE frames); :func:`unit_frames` normalises both. The learned
networks of VBench are replaced where the library must not depend on them:

* :func:`consistency` (subject / background consistency) takes any per-frame feature function,
  so DINO or CLIP features from any framework plug in; the library itself imports no torch.
* :func:`motion_smoothness` interpolates each odd frame from its neighbours with classical optical
  flow (OpenCV's DIS) instead of AMT.
* :func:`flow_magnitudes` / :func:`dynamic_degree` use DIS flow instead of RAFT.
* :func:`num_scenes` runs PySceneDetect's ``AdaptiveDetector``.

Optical flow (:func:`optical_flow`) is computed on one grey channel per frame pair: the pair's
first principal colour axis (the direction of largest variance of the two frames' pooled RGB
pixels), stretched to ``0..255``. Plain luma would miss iso-luminant contrast: in the shapes world a
red object on grass differs from it by 14 grey levels (the grass texture by up to 15), and DIS
then reads 0.57 px/frame for the true 1.5; on the principal axis it reads 1.42 px/frame. Frames
whose shorter side is below :data:`FLOW_MIN_SIDE` are upscaled by an integer factor (nearest)
before the flow; the 32×32 shapes world is not — measured on renders of a small circle, DIS at
32 px reads 1.42–1.52 px/frame for the true 1.5, while 4× (linear) upscaling overestimated it
(1.7–2.0) and added interpolation error through the resampling, at ten times the cost. DIS (not
Farnebäck) because it reads exactly zero flow between identical frames (Farnebäck read up to
0.5 px on still renders) and interpolates the renders best.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Callable, NamedTuple

import numpy as np

__all__ = [
    "DYNAMIC_COUNT_RATIO",
    "DYNAMIC_THRESHOLD_PER_SIDE",
    "DynamicDegree",
    "FLOW_MIN_SIDE",
    "MIN_SCENE_LEN",
    "Scenes",
    "TOP_FLOW_FRACTION",
    "consistency",
    "cosine_similarity",
    "dynamic_degree",
    "feature_consistency",
    "flow_magnitudes",
    "interpolate_midframe",
    "motion_smoothness",
    "num_scenes",
    "optical_flow",
    "uint8_frames",
    "unit_frames",
]

FLOW_MIN_SIDE = 32  # frames with a shorter side below this are upscaled (integer factor) for the flow
TOP_FLOW_FRACTION = 0.05  # VBench: a pair's motion is the mean of its top 5 % flow magnitudes
# VBench's threshold is 6 px at a shorter side of 256 px; we keep it as a fraction of the shorter
# side: 0.75 px at the shapes world's 32 px, half its MOTION_SPEED of 1.5 px/frame. Calibration on
# renders of every colour × background × shape × size moving right or up (flow_magnitudes per
# pair): 0.88 px at the least (a large triangle moving up, its flat base along the motion),
# 1.24–2.17 px from the 5th to the 95th percentile, up to 5.9 px (DIS overshoots on a large
# uniform square); still renders read exactly 0. tests/test_metrics.py checks both sides.
DYNAMIC_THRESHOLD_PER_SIDE = 6.0 / 256.0
DYNAMIC_COUNT_RATIO = 0.25  # VBench: dynamic if at least round(4·F/16) pairs exceed the threshold
MIN_SCENE_LEN = 3  # frames; scenedetect's default of 15 hides every cut of an 8-frame segment
_FLOAT_SLACK = 1e-3  # float frames may overshoot [−1, 1] by this much (then they are clipped)
_SCENE_MIN_SIDE = 128  # frames are upscaled to at least this for the scene detector's mp4


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------


def _checked(frames, name: str) -> np.ndarray:
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[:3]) == 0:
        raise ValueError(f"{name} must be [F, H, W, 3] with F, H, W >= 1, got shape {x.shape}")
    return x


def unit_frames(frames, *, name: str = "frames") -> np.ndarray:
    """Frames as float64 ``[F, H, W, 3]`` in ``[0, 1]``.

    Args:
      frames: ``[F, H, W, 3]``, uint8 (``0..255``) or float in ``[−1, 1]`` (values up to ``1e−3``
        outside are clipped; a float array in ``0..255`` is refused rather than clipped to white).
      name: the argument's name in error messages.

    Raises:
      ValueError: for another rank, channel count or dtype, no frames, or float values that are
        not finite or lie outside ``[−1, 1]``.
    """
    x = _checked(frames, name)
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float in [-1, 1], got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has non-finite values (NaN or inf)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - _FLOAT_SLACK or hi > 1.0 + _FLOAT_SLACK:
        raise ValueError(f"float {name} must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                         "pass uint8 for 0..255 data or rescale")
    return (np.clip(x, -1.0, 1.0) + 1.0) / 2.0


def uint8_frames(frames, *, name: str = "frames") -> np.ndarray:
    """Frames as uint8 ``[F, H, W, 3]`` (uint8 input unchanged; floats in ``[−1, 1]`` rounded as
    :func:`syncos_jax.video.to_uint8` does). Raises as :func:`unit_frames`."""
    x = _checked(frames, name)
    if x.dtype == np.uint8:
        return x
    return np.round(unit_frames(x, name=name) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Consistency (VBench subject / background consistency)
# ---------------------------------------------------------------------------------------------


def cosine_similarity(a, b) -> np.ndarray:
    """Row-wise cosine similarity of ``a, b: [..., D]`` → ``[...]``; ``0`` where either row is zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    denom = na * nb
    return np.where(denom > 0, (a * b).sum(-1) / np.where(denom > 0, denom, 1.0), 0.0)


def feature_consistency(features) -> float:
    """VBench's consistency of per-frame features ``features: [F, D]``.

    ``(1/(F−1)) · Σ_{t=1}^{F−1} ½·[max(0, cos(f_{t−1}, f_t)) + max(0, cos(f_0, f_t))]``, in
    ``[0, 1]``. The cosine with a zero vector is ``0`` (a frame with no feature matches nothing),
    so the result is never NaN. A single frame (``F = 1``) has nothing to be inconsistent with:
    ``1.0``.
    """
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"features must be [F, D] with F >= 1, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features has non-finite values (NaN or inf)")
    if f.shape[0] == 1:
        return 1.0
    prev = np.maximum(0.0, cosine_similarity(f[:-1], f[1:]))
    first = np.maximum(0.0, cosine_similarity(f[:1], f[1:]))
    return float(np.mean(0.5 * (prev + first)))


def consistency(frames, features: Callable[[np.ndarray], np.ndarray]) -> float:
    """VBench's subject or background consistency of ``frames: [F, H, W, 3]`` (see
    :func:`feature_consistency`), under a feature function of the caller's choice.

    Args:
      frames: uint8 or float in ``[−1, 1]``.
      features: ``frames [F, H, W, 3] float32 in [0, 1] → [F, D]``; DINO features give VBench's
        subject consistency, CLIP image features its background consistency (computed in any
        framework), :func:`syncos_jax.metrics.object_descriptor` and
        :func:`~syncos_jax.metrics.background_descriptor` exact ones for the shapes world.
    """
    x = unit_frames(frames).astype(np.float32)
    f = np.asarray(features(x))
    if f.ndim != 2 or f.shape[0] != x.shape[0]:
        raise ValueError(f"features(frames) must return [F, D] = [{x.shape[0]}, D], got shape {f.shape}")
    return feature_consistency(f)


# ---------------------------------------------------------------------------------------------
# Optical flow
# ---------------------------------------------------------------------------------------------


def _principal_grey(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two uint8 RGB frames ``[H, W, 3]`` projected on the first principal axis of their pooled
    pixel colours (sign fixed so that the axis sums to ``≥ 0``, like luma) and stretched together
    to ``0..255``: uint8 ``[H, W]`` each. Flat pairs give zeros."""
    h, w, _ = a.shape
    px = np.concatenate([a.reshape(-1, 3), b.reshape(-1, 3)]).astype(np.float64)
    centred = px - px.mean(0)
    if not np.any(centred):
        return np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    axis = axis if axis.sum() >= 0 else -axis
    p = px @ axis
    lo, hi = p.min(), p.max()
    g = np.round((p - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return g[: h * w].reshape(h, w), g[h * w :].reshape(h, w)


def _flow_scale(h: int, w: int) -> int:
    return max(1, math.ceil(FLOW_MIN_SIDE / min(h, w)))


def _upscale(img: np.ndarray, k: int) -> np.ndarray:
    return img if k == 1 else img.repeat(k, axis=0).repeat(k, axis=1)


def _dis_flow(g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g0, g1, None)


def optical_flow(a, b) -> np.ndarray:
    """Dense optical flow from frame ``a`` to frame ``b`` (each ``[H, W, 3]`` uint8): ``[H, W, 2]``
    float32 ``(dx, dy)`` in pixels of the input, such that ``a(p) ≈ b(p + flow(p))``.

    OpenCV's DIS flow (medium preset) on the pair's principal grey channel (module docstring); frames
    with a shorter side below :data:`FLOW_MIN_SIDE` are upscaled ``k``× (nearest, ``k`` the smallest
    integer reaching it) and the flow is divided by ``k``.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"a and b must be uint8 [H, W, 3] of one shape, got {a.dtype} {a.shape} and {b.dtype} {b.shape}")
    k = _flow_scale(*a.shape[:2])
    g0, g1 = _principal_grey(a, b)
    flow = _dis_flow(_upscale(g0, k), _upscale(g1, k))
    if k == 1:
        return flow
    h, w = a.shape[:2]
    return flow.reshape(h, k, w, k, 2).mean((1, 3)) / k


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at ``p + flow(p)`` (bilinear, edges replicated): float32 like ``img``."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def interpolate_midframe(a, b) -> np.ndarray:
    """The frame halfway between uint8 frames ``a, b: [H, W, 3]``: uint8 ``[H, W, 3]``.

    Bidirectional DIS flows ``F_ab``, ``F_ba`` (:func:`optical_flow`, on the ``k``× upscaled
    frames) give the flows from the middle frame as in Super SloMo (Jiang et al. 2018, eq. 4) at
    ``t = ½``: ``F_ma = ¼(F_ba − F_ab)``, ``F_mb = ¼(F_ab − F_ba)``; both neighbours are warped there
    (``cv2.remap``, bilinear) and averaged, then area-downscaled by ``k`` (the exact inverse of the
    nearest upscaling for an unmoved image).
    """
    import cv2

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"a and b must be uint8 [H, W, 3] of one shape, got {a.dtype} {a.shape} and {b.dtype} {b.shape}")
    h, w = a.shape[:2]
    k = _flow_scale(h, w)
    g0, g1 = _principal_grey(a, b)
    g0, g1 = _upscale(g0, k), _upscale(g1, k)
    f_ab, f_ba = _dis_flow(g0, g1), _dis_flow(g1, g0)
    f_ma, f_mb = 0.25 * (f_ba - f_ab), 0.25 * (f_ab - f_ba)
    mid = 0.5 * (_warp(_upscale(a, k), f_ma) + _warp(_upscale(b, k), f_mb))
    if k > 1:
        mid = cv2.resize(mid, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(mid), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Motion smoothness and dynamic degree
# ---------------------------------------------------------------------------------------------


def motion_smoothness(frames) -> float:
    """VBench's motion smoothness of ``frames: [F, H, W, 3]`` (uint8 or float in ``[−1, 1]``),
    with a classical interpolator in place of AMT; in ``[0, 1]``, ``1`` = perfectly predictable.

    Every odd frame ``t`` with both neighbours is predicted from frames ``t − 1`` and ``t + 1``
    (:func:`interpolate_midframe`); the score is ``(255 − mean |pred − real|) / 255`` over uint8
    pixels and all predicted frames (VBench's ``vfi_score``).

    Raises:
      ValueError: with fewer than 3 frames (no frame has both neighbours), or as :func:`unit_frames`.
    """
    x = uint8_frames(frames)
    if x.shape[0] < 3:
        raise ValueError(f"motion_smoothness needs frames with F >= 3, got F = {x.shape[0]}")
    diffs = [np.abs(interpolate_midframe(x[t - 1], x[t + 1]).astype(np.float64) - x[t]).mean()
             for t in range(1, x.shape[0] - 1, 2)]
    return float((255.0 - np.mean(diffs)) / 255.0)


def _top_mean(values: np.ndarray, fraction: float) -> float:
    v = np.sort(values.ravel())[::-1]
    return float(v[: max(1, int(v.size * fraction))].mean())


def flow_magnitudes(frames) -> np.ndarray:
    """Per consecutive pair of ``frames: [F, H, W, 3]``, VBench's motion of the pair: the mean of the
    top :data:`TOP_FLOW_FRACTION` (5 %) of the per-pixel flow magnitudes ``|optical_flow(x_t,
    x_{t+1})|``, in pixels of the input. Returns float64 ``[F − 1]`` (empty for one frame)."""
    x = uint8_frames(frames)
    return np.array([_top_mean(np.hypot(*np.moveaxis(optical_flow(x[t], x[t + 1]), -1, 0)), TOP_FLOW_FRACTION)
                     for t in range(x.shape[0] - 1)], np.float64)


class DynamicDegree(NamedTuple):
    """The dynamic degree of a video.

    Attributes:
      dynamic: whether at least ``min_count`` pairs move more than ``threshold`` (VBench's verdict).
      fraction: the fraction of pairs above ``threshold`` (a continuous score to average).
      mean_magnitude: the mean of ``magnitudes`` (px/frame).
      magnitudes: ``[F − 1]`` :func:`flow_magnitudes`.
      threshold: px/frame, as used.
      min_count: pairs needed for ``dynamic``.
    """

    dynamic: bool
    fraction: float
    mean_magnitude: float
    magnitudes: np.ndarray
    threshold: float
    min_count: int


def dynamic_degree(frames, threshold: float | None = None, *, fps: float = 8.0,
                   count_ratio: float = DYNAMIC_COUNT_RATIO) -> DynamicDegree:
    """VBench's dynamic degree of ``frames: [F, H, W, 3]`` (uint8 or float in ``[−1, 1]``).

    Args:
      threshold: px/frame a pair must exceed; by default VBench's rule scaled to the resolution,
        ``max(1, 8/fps) · DYNAMIC_THRESHOLD_PER_SIDE · min(H, W)`` (0.75 px at 32×32, 8 fps: half the
        shapes world's speed; see :data:`DYNAMIC_THRESHOLD_PER_SIDE` for the calibration).
      fps: frames per second of the video (VBench samples at about 8; slower videos get a
        proportionally higher threshold).
      count_ratio: the video is dynamic when at least ``max(1, round(count_ratio · F))`` pairs
        exceed the threshold (VBench: ``round(4 · F / 16)``).
    """
    x = uint8_frames(frames)
    n, h, w = x.shape[:3]
    if threshold is None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        threshold = max(1.0, 8.0 / fps) * DYNAMIC_THRESHOLD_PER_SIDE * min(h, w)
    if n < 2:
        raise ValueError(f"dynamic_degree needs frames with F >= 2, got F = {n}")
    mags = flow_magnitudes(x)
    above = int((mags > threshold).sum())
    min_count = max(1, round(count_ratio * n))
    return DynamicDegree(
        dynamic=bool(above >= min_count),
        fraction=above / len(mags),
        mean_magnitude=float(mags.mean()),
        magnitudes=mags,
        threshold=float(threshold),
        min_count=int(min_count),
    )


# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------


class Scenes(NamedTuple):
    """Scenes found by PySceneDetect: ``count`` scenes, ``cuts`` the first frame of every scene but
    the first (``count − 1`` of them), under ``min_scene_len`` frames."""

    count: int
    cuts: tuple[int, ...]
    min_scene_len: int


def num_scenes(frames, *, min_scene_len: int = MIN_SCENE_LEN, fps: int = 8) -> Scenes:
    """The scenes of ``frames: [F, H, W, 3]`` (uint8 or float in ``[−1, 1]``) by PySceneDetect's
    ``AdaptiveDetector`` (default settings but ``min_scene_len``).

    The frames are written to a temporary H.264 mp4 at ``fps`` (upscaled, nearest, by the smallest
    integer bringing the shorter side to 128 px) and read back by the detector.

    Args:
      min_scene_len: the shortest scene in frames; detections closer than this to the previous cut
        are dropped. The default :data:`MIN_SCENE_LEN` (3) finds every cut between scenes of 3 or
        more frames and reads a one- or two-frame flash as a single cut, not two (scenedetect's
        own default of 15 frames would hide every cut in an 8-frame segment).
    """
    from scenedetect import AdaptiveDetector, detect

    from syncos_jax.video import write_mp4

    x = uint8_frames(frames)
    if int(min_scene_len) < 1:
        raise ValueError(f"min_scene_len must be >= 1, got {min_scene_len}")
    scale = max(1, math.ceil(_SCENE_MIN_SIDE / min(x.shape[1:3])))
    with tempfile.TemporaryDirectory(prefix="syncos-scenes-") as d:
        path = os.path.join(d, "video.mp4")
        write_mp4(path, x, fps=fps, scale=scale)
        scenes = detect(path, AdaptiveDetector(min_scene_len=int(min_scene_len)), start_in_scene=True)
    cuts = tuple(int(s.frame_num) for s, _ in scenes[1:])
    return Scenes(count=max(1, len(scenes)), cuts=cuts, min_scene_len=int(min_scene_len))
