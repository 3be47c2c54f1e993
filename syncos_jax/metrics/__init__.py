"""Metrics of generated videos, in two layers.

* :mod:`syncos_jax.metrics.video`: backbone-independent metrics of any frames ``[F, H, W, 3]``
  (uint8 or float in ``[−1, 1]``), after VBench (Huang et al. 2024): subject / background
  :func:`consistency` under any feature function, :func:`motion_smoothness` and
  :func:`dynamic_degree` from classical optical flow (OpenCV), and :func:`num_scenes` by
  PySceneDetect. They need no model and no torch.
* :mod:`syncos_jax.metrics.shapes`: the shapes world's analytic probes (:func:`probe_frames`,
  :func:`read_segments`, :func:`motion_direction`) and the metrics built on them: exact
  descriptors for :func:`consistency`, identity consistency, centre jumps, ghosts, prompt
  fidelity, and :func:`shapes_report`, which gathers both layers into one JSON-ready dict.

Everything public in either module is importable from here (``from syncos_jax import metrics;
metrics.read_segments(...)``).
"""

from syncos_jax.metrics.video import (
    DYNAMIC_COUNT_RATIO,
    DYNAMIC_THRESHOLD_PER_SIDE,
    FLOW_MIN_SIDE,
    MIN_SCENE_LEN,
    TOP_FLOW_FRACTION,
    DynamicDegree,
    Scenes,
    consistency,
    cosine_similarity,
    dynamic_degree,
    feature_consistency,
    flow_magnitudes,
    interpolate_midframe,
    motion_smoothness,
    num_scenes,
    optical_flow,
    uint8_frames,
    unit_frames,
)
from syncos_jax.metrics.shapes import (
    AGREEMENT_BINS,
    AGREEMENT_PAIRS,
    DRIFT_FAR,
    DRIFT_NEAR,
    FACTORS,
    GHOST_AREA_FRACTION,
    GHOST_MIN_AREA,
    INK_RADIUS,
    OBJECT_IDENTITY,
    UNPROMPTED_ATTRIBUTES,
    OBJECT_THRESHOLD,
    OBJECT_WINDOW,
    PLAIN_INK_FRACTION,
    CentreJumps,
    FrameReadings,
    PromptFidelity,
    SegmentReading,
    background_descriptor,
    centre_jumps,
    clean_frames,
    ghost_frames,
    identity_agreement,
    identity_code,
    identity_consistency,
    motion_direction,
    object_descriptor,
    object_shade_scale,
    light_vector,
    probe_frames,
    prompt_fidelity,
    read_segments,
    same_identity_at_the_ends,
    shapes_report,
)
from syncos_jax.metrics import shapes, video

__all__ = sorted(shapes.__all__ + video.__all__)
