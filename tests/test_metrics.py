"""Video metrics: generic VBench-style metrics and the shapes-world ones, on constructed videos with known answers."""

import json

import numpy as np
import pytest

from syncos_jax import metrics
from syncos_jax.backbones.toy import world
from syncos_jax.video import to_uint8


def _render(colour="red", shape="circle", size="small", events=(("still", "grass", 8),), start=None, shade="bright",
            pattern="plain"):
    """A render of ``world.long_track``; ``events`` are ``(motion, background, frames[, new colour])``."""
    evs = [world.Event(e[2], e[0], e[1], *e[3:]) for e in events]
    return world.render(world.long_track(colour, shape, size, evs, start=start, shade=shade, pattern=pattern))


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def test_uint8_and_float_frames_normalise_alike():
    v = _render(events=(("right", "sand", 6),), start=(10, 16))
    np.testing.assert_array_equal(metrics.uint8_frames(v), to_uint8(v))
    np.testing.assert_allclose(metrics.unit_frames(v), (v.astype(np.float64) + 1) / 2)
    np.testing.assert_array_equal(metrics.unit_frames(to_uint8(v)), to_uint8(v) / 255.0)
    np.testing.assert_array_equal(metrics.flow_magnitudes(v), metrics.flow_magnitudes(to_uint8(v)))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 32, 32)), r"\[F, H, W, 3\].*\(8, 32, 32\)"),
        (np.zeros((8, 32, 32, 4)), r"\[F, H, W, 3\].*\(8, 32, 32, 4\)"),
        (np.zeros((0, 32, 32, 3)), r"F, H, W >= 1"),
        (np.zeros((8, 32, 32, 3), np.int64), r"uint8 or float.*int64"),
        (np.zeros((8, 32, 32, 3), bool), r"uint8 or float.*bool"),
        (np.full((8, 32, 32, 3), 200.0), r"\[-1, 1\].*200"),
        (np.full((8, 32, 32, 3), np.nan), r"non-finite"),
    ],
)
def test_bad_frames_give_a_clear_error(bad, match):
    for fn in (metrics.unit_frames, metrics.uint8_frames, metrics.motion_smoothness, metrics.dynamic_degree,
               metrics.num_scenes, metrics.ghost_frames, lambda f: metrics.consistency(f, metrics.object_descriptor)):
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_other_bad_arguments_give_a_clear_error():
    v = _render()
    with pytest.raises(ValueError, match=r"F >= 3.*F = 2"):
        metrics.motion_smoothness(v[:2])
    with pytest.raises(ValueError, match=r"features\(frames\) must return \[F, D\] = \[8, D\].*\(8,\)"):
        metrics.consistency(v, lambda x: x.mean((1, 2, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\].*\(frames \+ 1\) / 2"):
        metrics.object_descriptor(v)  # frames in [−1, 1]: the descriptors take the features convention
    with pytest.raises(ValueError, match=r"texts\[1\]: caption 'a red blob' does not parse"):
        metrics.prompt_fidelity(v, [(0, 4), (4, 8)], ["a small red circle stays still on grass", "a red blob"])
    with pytest.raises(ValueError, match=r"one caption per segment: got 1 texts for 2 segments"):
        metrics.prompt_fidelity(v, [(0, 4), (4, 8)], ["a small red circle stays still on grass"])
    with pytest.raises(ValueError, match=r"boundaries: 8 is not a frame index in \[1, 7\]"):
        metrics.centre_jumps(metrics.probe_frames(v), [8])
    with pytest.raises(ValueError, match=r"unknown attribute 'motion'"):
        metrics.identity_consistency(metrics.probe_frames(v), ("motion",))
    with pytest.raises(ValueError, match=r"min_scene_len must be >= 1, got 0"):
        metrics.num_scenes(v, min_scene_len=0)


# ---------------------------------------------------------------------------------------------
# Consistency
# ---------------------------------------------------------------------------------------------


def _vbench_consistency(feats):
    """VBench's loop (subject_consistency.py), in numpy."""
    unit = feats / np.linalg.norm(feats, axis=-1, keepdims=True)
    total = 0.0
    for i in range(1, len(unit)):
        total += 0.5 * (max(0.0, unit[i - 1] @ unit[i]) + max(0.0, unit[0] @ unit[i]))
    return total / (len(unit) - 1)


@pytest.mark.parametrize("seed", range(4))
def test_feature_consistency_is_vbench_formula(seed):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(9, 5)) + 0.3  # some cosines negative, so the max(0, ·) matters
    assert metrics.feature_consistency(feats) == pytest.approx(_vbench_consistency(feats), abs=1e-12)


def test_feature_consistency_edge_cases():
    assert metrics.feature_consistency(np.ones((1, 4))) == 1.0
    f = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])  # a zero vector: cosine 0, never NaN
    assert metrics.feature_consistency(f) == pytest.approx(0.5 * (0.0 + 0.5 * (0.0 + 1.0)))
    assert metrics.feature_consistency(np.zeros((4, 3))) == 0.0
    np.testing.assert_array_equal(metrics.cosine_similarity(np.zeros((2, 3)), np.ones((2, 3))), [0.0, 0.0])


def test_consistency_hands_unit_frames_to_the_features():
    v = _render(events=(("right", "grass", 5), ("right", "snow", 5)), start=(8, 16))
    seen = []

    def mean_colour(x):
        seen.append(x)
        return x.mean((1, 2))

    got = metrics.consistency(v, mean_colour)
    assert seen[0].dtype == np.float32 and seen[0].shape == v.shape
    np.testing.assert_allclose(seen[0], (v + 1) / 2, atol=1e-7)
    assert got == metrics.feature_consistency(seen[0].mean((1, 2)))


def _unit(v):
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("new_colour", ["blue", "orange"])
def test_colour_switch_lowers_subject_consistency_by_the_closed_form(new_colour):
    T, k = 10, 4  # a still small red circle, recoloured at frame k
    v = _render(events=(("still", "grass", k), ("still", "grass", T - k, new_colour)))
    u = [_unit(2.0 * np.float32(world.COLOURS[c]).astype(np.float64) - 1.0) for c in ("red", new_colour)]
    rho = 0.5 * (1.0 + u[0] @ u[1])  # cosine of the two descriptors: same mask, other colour
    expected = ((k - 1) + rho + (T - 1 - k) * 0.5 * (1.0 + rho)) / (T - 1)
    assert metrics.consistency(v, metrics.object_descriptor) == pytest.approx(expected, abs=1e-6)
    assert metrics.consistency(v[:k], metrics.object_descriptor) == pytest.approx(1.0, abs=1e-12)
    assert metrics.consistency(v, metrics.background_descriptor) == pytest.approx(1.0, abs=1e-12)


def test_object_descriptor_ignores_position_but_not_shape():
    a = _render(start=(10, 12))[:1]
    b = _render(start=(21, 19))[:1]
    c = _render(shape="square", start=(10, 12))[:1]
    da, db, dc = (metrics.object_descriptor((x + 1) / 2)[0] for x in (a, b, c))
    circle = world.shape_mask("circle", (10, 12), world.SIZES["small"])
    square = world.shape_mask("square", (10, 12), world.SIZES["small"])
    assert da @ da == pytest.approx(1.0, abs=1e-12) and da @ db == pytest.approx(1.0, abs=1e-12)
    assert da @ dc == pytest.approx(0.5 * (1.0 + (circle & square).sum() / np.sqrt(circle.sum() * square.sum())), abs=1e-12)
    assert not metrics.object_descriptor(np.full((1, 32, 32, 3), 0.4)).any()  # no object: zero


# ---------------------------------------------------------------------------------------------
# Motion: smoothness, dynamic degree, calibration
# ---------------------------------------------------------------------------------------------


def test_static_video_is_not_dynamic_and_one_scene():
    v = _render(events=(("still", "sand", 16),))
    d = metrics.dynamic_degree(v)
    assert not d.dynamic and d.fraction == 0.0 and d.mean_magnitude == 0.0
    np.testing.assert_array_equal(d.magnitudes, np.zeros(15))
    assert metrics.num_scenes(v) == metrics.Scenes(count=1, cuts=(), min_scene_len=metrics.MIN_SCENE_LEN)
    assert metrics.motion_smoothness(v) == 1.0


@pytest.mark.parametrize("shape, size", [("circle", "small"), ("square", "large"), ("triangle", "large")])
def test_calibration_moving_renders_are_dynamic_still_ones_are_not(shape, size):
    d0 = metrics.dynamic_degree(_render())
    assert d0.threshold == pytest.approx(metrics.DYNAMIC_THRESHOLD_PER_SIDE * 32) == pytest.approx(0.5 * world.MOTION_SPEED)
    for colour in world.COLOURS:
        for bg in world.BACKGROUNDS:
            for motion, start in [("right", (10, 16)), ("up", (16, 22))]:
                d = metrics.dynamic_degree(_render(colour, shape, size, ((motion, bg, 6),), start=start))
                assert d.dynamic and d.fraction >= 0.5, (colour, bg, motion, d.magnitudes)
            still = metrics.dynamic_degree(_render(colour, shape, size, (("still", bg, 6),), start=(12, 20)))
            assert not still.dynamic and still.mean_magnitude == 0.0, (colour, bg)


def test_tiny_frames_are_upscaled_for_the_flow():
    v = _render(events=(("right", "grass", 8),), start=(8, 16))
    half = v.reshape(8, 16, 2, 16, 2, 3).mean((2, 4))  # 16×16: below FLOW_MIN_SIDE, object at 0.75 px/frame
    d = metrics.dynamic_degree(half)
    assert d.threshold == pytest.approx(0.375) and d.dynamic
    assert not metrics.dynamic_degree(_render().reshape(8, 16, 2, 16, 2, 3).mean((2, 4))).dynamic


def test_smooth_motion_scores_higher_than_shuffled():
    rng = np.random.default_rng(0)
    for colour, bg in [("red", "grass"), ("yellow", "night"), ("blue", "snow")]:
        v = _render(colour, "triangle", "large", (("right", bg, 12),), start=(9, 16))
        smooth = metrics.motion_smoothness(v)
        shuffled = metrics.motion_smoothness(v[rng.permutation(12)])
        assert 0.98 < smooth <= 1.0 and shuffled < smooth - 0.005, (colour, bg, smooth, shuffled)


# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------


def test_hard_cut_is_two_scenes():
    a = _render("red", "circle", "small", (("right", "grass", 16),), start=(8, 16))
    b = _render("blue", "square", "large", (("left", "snow", 16),), start=(24, 16))
    assert metrics.num_scenes(np.concatenate([a, b])) == metrics.Scenes(2, (16,), metrics.MIN_SCENE_LEN)


def test_short_scenes_need_a_small_min_scene_len():
    events = (("right", "grass", 8), ("down", "snow", 8), ("left", "sand", 8), ("up", "night", 8))
    v = _render(events=events, start=(10, 10))
    assert metrics.num_scenes(v) == metrics.Scenes(4, (8, 16, 24), 3)
    assert metrics.num_scenes(v, min_scene_len=15).count == 2  # scenedetect's default hides cuts


# ---------------------------------------------------------------------------------------------
# Centre track, identity, ghosts
# ---------------------------------------------------------------------------------------------


def test_constant_velocity_has_no_acceleration_and_no_jump():
    tr = world.long_track("red", "circle", "small", [world.Event(12, "right", "grass")], start=(8, 16))
    r = metrics.probe_frames(world.render(tr))
    np.testing.assert_array_equal(np.diff(r.centre, 2, axis=0), np.zeros((10, 2)))
    assert metrics.centre_jumps(r, []) == metrics.CentreJumps(at_boundary=0.0, away=world.MOTION_SPEED)


def test_teleport_is_a_jump_of_the_right_size_at_its_boundary():
    a = _render(events=(("right", "grass", 8),), start=(8, 16))  # centre of frame 7: (18.5, 16)
    b = _render(events=(("right", "grass", 8),), start=(14, 24))
    r = metrics.probe_frames(np.concatenate([a, b]))
    jump = float(np.hypot(14 - 18.5, 24 - 16))
    assert metrics.centre_jumps(r, [8]) == metrics.CentreJumps(jump, 1.5)
    assert metrics.centre_jumps(r, [4]) == metrics.CentreJumps(1.5, jump)
    assert metrics.centre_jumps(r, [9]).at_boundary == 1.5
    assert metrics.centre_jumps(r, [9], window=1).at_boundary == jump
    gone = r._replace(centre=np.where(np.arange(16)[:, None] == 8, np.nan, r.centre))
    assert metrics.centre_jumps(gone, [8]) == metrics.CentreJumps(0.0, 1.5)  # no object at 8: no pair to judge


def test_identity_consistency_counts_majority_frames():
    v = _render(events=(("still", "grass", 6), ("still", "grass", 2, "cyan")))
    r = metrics.probe_frames(v)
    assert metrics.identity_consistency(r) == {"colour": 0.75, "shape": 1.0, "size": 1.0}
    none = r._replace(found=np.zeros(8, bool))
    assert metrics.identity_consistency(none, ("colour", "background")) == {"colour": 0.0, "background": 1.0}


def _paste(frame, shape, centre, size, colour):
    out = frame.copy()
    out[world.shape_mask(shape, centre, world.SIZES[size])] = 2.0 * np.asarray(world.COLOURS[colour]) - 1.0
    return out


def test_ghosts_and_clean_frames():
    assert metrics.GHOST_MIN_AREA == 24 == int(np.ceil(0.3 * world.shape_mask("circle", (16, 16), 5).sum()))
    clean = _render("orange", "circle", "small", (("still", "sand", 1),), start=(10, 10))[0]
    ghost = _paste(clean, "circle", (24, 22), "small", "orange")
    speck = clean.copy()
    speck[26:30, 26:30] = 2.0 * np.asarray(world.COLOURS["orange"]) - 1.0  # 16 px < GHOST_MIN_AREA
    night = _render("cyan", "square", "small", (("still", "night", 1),), start=(10, 10))[0]
    bg = world.background_field("night", world.long_track("cyan", "square", "small", [world.Event(1, "still", "night")]).phase)
    assert (bg > np.asarray(world.BACKGROUNDS["night"]) + 0.1).any(), "the night sky has stars"
    empty = 2.0 * np.broadcast_to(np.asarray(world.BACKGROUNDS["snow"]), (32, 32, 3)) - 1.0
    frames = np.stack([clean, ghost, speck, night, empty]).astype(np.float32)
    np.testing.assert_array_equal(metrics.ghost_frames(frames), [False, True, False, False, False])
    np.testing.assert_array_equal(metrics.clean_frames(frames), [True, False, True, True, False])
    np.testing.assert_array_equal(metrics.ghost_frames(to_uint8(frames)), [False, True, False, False, False])


# ---------------------------------------------------------------------------------------------
# Prompt fidelity and the report
# ---------------------------------------------------------------------------------------------

_EVENTS = (("right", "grass", 8), ("down", "grass", 8), ("left", "snow", 8), ("up", "snow", 8))
_SEGMENTS = [(0, 8), (8, 16), (16, 24), (24, 32)]


def _four_turns():
    v = _render("purple", "square", "small", _EVENTS, start=(8, 8))
    texts = [world.caption("purple", "square", "small", m, bg) for m, bg, _ in _EVENTS]
    return v, texts


def test_prompt_fidelity_reads_every_factor():
    v, texts = _four_turns()
    f = metrics.prompt_fidelity(v, _SEGMENTS, texts)
    assert f.all_factors == 1.0 and f.per_factor == dict.fromkeys(metrics.FACTORS, 1.0)
    wrong = [texts[0].replace("purple", "red"), texts[1].replace("moves down", "moves up"), texts[2], texts[3]]
    f = metrics.prompt_fidelity(v, _SEGMENTS, wrong)
    assert f.all_factors == 0.5
    assert f.per_factor == {"colour": 0.75, "shape": 1.0, "size": 1.0, "motion": 0.75, "background": 1.0}
    assert f.matches[0] == {"colour": False, "shape": True, "size": True, "motion": True, "background": True}
    then = [world.caption("purple", "square", "small", "right", "grass"),
            world.caption("purple", "square", "small", "down", "grass", "snow")]
    f = metrics.prompt_fidelity(v[:24], [(0, 8), (8, 24)], then)  # segment 2 switches grass → snow at frame 16
    assert [m["background"] for m in f.matches] == [True, True]
    swapped = then[:1] + [world.caption("purple", "square", "small", "down", "snow", "grass")]
    assert [m["background"] for m in metrics.prompt_fidelity(v[:24], [(0, 8), (8, 24)], swapped).matches] == [True, False]


def test_shapes_report_on_a_clean_render():
    v, texts = _four_turns()
    rep = metrics.shapes_report(v, _SEGMENTS, texts)
    json.dumps(rep)  # plain JSON types only
    assert all(isinstance(x, (int, float, bool)) or (x is None and k.startswith(
        ("identity_agreement", "identity_drift", "identity_light_agreement", "identity_light_drift"))) for k, x in rep.items())
    assert rep["identity_agreement_1"] == 1.0 and rep["identity_drift"] == (0.0 if rep["frames"] > 32 else None)
    assert rep["identity_light"] == rep["identity_light_ends"] == rep["identity_light_agreement_1"] == 1.0
    assert rep["identity_light_drift"] == rep["identity_drift"]
    assert rep["fidelity_all"] == rep["motion_fidelity"] == 1.0
    assert rep["identity_colour"] == rep["identity_shape"] == rep["identity_size"] == 1.0
    assert rep["ghost_fraction"] == 0.0 and rep["clean_fraction"] == rep["object_found_fraction"] == 1.0
    assert rep["centre_jump_at_boundary"] == rep["centre_jump_away"] == 1.5
    assert 0.97 < rep["subject_consistency"] < 1.0  # a moving square's pixel mask alternates 10 and 11 px wide
    assert rep["background_consistency"] < 1.0  # grass → snow at frame 16
    assert rep["dynamic"] and rep["num_scenes"] == 2 and rep["min_scene_len"] == metrics.MIN_SCENE_LEN
    assert 0.95 < rep["motion_smoothness"] < 1.0
    assert rep["identity_shade"] == rep["identity_pattern"] == rep["identity_unprompted"] == 1.0
    assert rep["identity_unprompted_ends"] == 1.0


def test_unprompted_identity_drift_is_counted():
    """A long track whose pattern drifts (plain → spotted after 20 of 32 frames) and whose shade
    drifts (bright → dark after 26): the fractions and the ends follow in closed form."""
    events = [world.Event(32, "still", "grass")]
    tr = world.long_track("orange", "circle", "large", events, start=(15.3, 16.0), shade="bright", pattern="plain")
    pattern = np.where(np.arange(32) < 20, 0, world.PATTERNS.index("spotted"))
    shade = np.where(np.arange(32) < 26, 2, 0)
    v = world.render(tr._replace(pattern=pattern, shade=shade))
    r = metrics.probe_frames(v)
    np.testing.assert_array_equal(r.pattern, pattern)
    np.testing.assert_array_equal(r.shade, shade)
    ident = metrics.identity_consistency(r, ("shade", "pattern", "unprompted"))
    assert ident == {"shade": 26 / 32, "pattern": 20 / 32, "unprompted": 20 / 32}
    assert metrics.same_identity_at_the_ends(r, 8) == 0.0 and metrics.same_identity_at_the_ends(r, 20) == 1.0
    rep = metrics.shapes_report(v, [(0, 32)], [world.caption("orange", "circle", "large", "still", "grass")])
    assert rep["identity_unprompted"] == 20 / 32 and rep["identity_unprompted_ends"] == 0.0
    assert rep["fidelity_all"] == 1.0  # the caption says nothing of shade or pattern
    # subject consistency sees the drift too: the object's own-colour pixels and colour change
    steady = metrics.consistency(world.render(tr), metrics.object_descriptor)
    assert metrics.consistency(v, metrics.object_descriptor) < steady - 0.01
    with pytest.raises(ValueError, match="end_frames must be >= 1, got 0"):
        metrics.same_identity_at_the_ends(r, 0)


def _readings(pair_ids, found=None):
    """FrameReadings whose (shade, pattern) pair index is ``pair_ids`` (only those fields matter here)."""
    p = np.asarray(pair_ids)
    n = len(world.PATTERNS)
    found = np.ones(p.size, bool) if found is None else np.asarray(found)
    z = np.zeros(p.size, int)
    return metrics.FrameReadings(z, found, z, z, z, np.zeros((p.size, 2)), z, p // n, p % n, z)


def test_identity_agreement_tells_drift_from_flicker():
    """Closed forms: a constant identity agrees at every distance; one step from identity A to B at
    frame 32 of 64 agrees at distance d ≤ 32 in (64 − 2d) of the 64 − d pairs and at no pair
    d ≥ 32, so the [1, 8) bin is Σ(64 − 2d)/Σ(64 − d) over d = 1..7 = 392/420 and the drift
    ([16, 32) against ≥ 32) is Σ(64 − 2d)/Σ(64 − d) over d = 16..31; i.i.d. flicker around one
    identity agrees equally near and far, and flicker held for 6 frames at a time is flat from 16
    on: drift ≈ 0 in both, however low the agreement; frames without an object are left out; too
    short a video has no far bins; bad arguments are named."""
    const = metrics.identity_agreement(_readings(np.full(64, 5)))
    assert const == {"agreement_1": 1.0, "agreement_8": 1.0, "agreement_16": 1.0, "agreement_32": 1.0,
                     "agreement_64": None, "drift": 0.0}
    step = metrics.identity_agreement(_readings(np.repeat([3, 7], 32)))
    assert step["agreement_1"] == pytest.approx(392 / 420, abs=1e-12)
    d = np.arange(16, 32)  # the [16, 32) bin: (64 − 2d) agreeing of (64 − d)
    assert step["agreement_16"] == pytest.approx(np.sum(64 - 2 * d) / np.sum(64 - d), abs=1e-12)
    assert step["agreement_32"] == 0.0 and step["drift"] == pytest.approx(np.sum(64 - 2 * d) / np.sum(64 - d), abs=1e-12)
    rng = np.random.default_rng(0)
    flicker = np.where(rng.uniform(size=1000) < 0.3, rng.integers(0, 12, 1000), 5)
    f = metrics.identity_agreement(_readings(flicker), bins=(1, 8, 500), near=8, far=500)
    q = np.bincount(flicker) / flicker.size  # i.i.d. frames: two agree with probability Σ q_k² at any distance
    expected = float(np.sum(q**2))
    assert f["agreement_1"] == pytest.approx(expected, abs=0.01) and f["agreement_500"] == pytest.approx(expected, abs=0.01)
    assert abs(f["drift"]) < 0.02
    held = np.repeat(np.where(rng.uniform(size=200) < 0.5, rng.integers(0, 12, 200), 5), 6)  # 1200 frames
    h = metrics.identity_agreement(_readings(held), far=600)
    assert h["agreement_1"] > h["agreement_16"] + 0.1 and abs(h["drift"]) < 0.03  # near bins see it, drift does not
    gaps = metrics.identity_agreement(_readings(np.repeat([3, 7], 32), found=np.arange(64) < 32))
    assert gaps == {"agreement_1": 1.0, "agreement_8": 1.0, "agreement_16": 1.0, "agreement_32": None,
                    "agreement_64": None, "drift": None}
    assert metrics.identity_agreement(_readings(np.full(8, 2)))["agreement_8"] is None
    for kw, match in [(dict(bins=(0, 8)), "bins"), (dict(bins=(8, 8)), "bins"), (dict(bins=(1, 8.5)), "bins"),
                      (dict(near=8, far=8), "near and far"), (dict(near=0), "near and far"), (dict(far=32.5), "near and far")]:
        with pytest.raises(ValueError, match=match):
            metrics.identity_agreement(_readings(np.full(8, 2)), **kw)


def test_identity_agreement_split_by_prompt_matches_a_pair_by_pair_count():
    """``pairs="same"`` / ``"different"`` against a brute-force count over every pair (i < j), on
    random readings, gaps and labels; and the confound they exist for: when the identity follows the
    prompt and the prompts repeat (A, B, A, B over 64 frames), all pairs agree *more* at distance
    >= 32 than at [16, 32) (a negative "drift" with no drift at all), while same-prompt pairs agree
    everywhere and different-prompt pairs nowhere."""
    rng = np.random.default_rng(3)
    ids, found, groups = rng.integers(0, 4, 70), rng.uniform(size=70) < 0.85, rng.integers(0, 3, 70)
    bins = (1, 8, 16, 32, 64)
    for pairs in metrics.AGREEMENT_PAIRS:
        got = metrics.identity_agreement(_readings(ids, found), bins, groups=None if pairs == "all" else groups, pairs=pairs)
        edges = list(bins) + [70]
        for lo, hi in zip(edges, edges[1:]):
            hits = [ids[i] == ids[j] for i in range(70) for j in range(i + 1, 70)
                    if lo <= j - i < hi and found[i] and found[j]
                    and {"all": True, "same": groups[i] == groups[j], "different": groups[i] != groups[j]}[pairs]]
            assert got[f"agreement_{lo}"] == (pytest.approx(np.mean(hits), abs=1e-12) if hits else None), (pairs, lo)
        near, far = (np.mean([ids[i] == ids[j] for i in range(70) for j in range(i + 1, 70)
                              if lo <= j - i < hi and found[i] and found[j]
                              and {"all": True, "same": groups[i] == groups[j], "different": groups[i] != groups[j]}[pairs]])
                     for lo, hi in ((16, 32), (32, 70)))
        assert got["drift"] == pytest.approx(near - far, abs=1e-12), pairs
    abab = np.repeat([0, 1, 0, 1], 16)  # the prompt index per frame; the identity follows it
    every = metrics.identity_agreement(_readings(np.where(abab == 0, 3, 7)))
    assert every["drift"] < -0.1 and every["agreement_32"] > every["agreement_16"]  # -0.145
    same = metrics.identity_agreement(_readings(np.where(abab == 0, 3, 7)), groups=abab, pairs="same")
    other = metrics.identity_agreement(_readings(np.where(abab == 0, 3, 7)), groups=abab, pairs="different")
    assert same["agreement_32"] == same["agreement_16"] == 1.0 and same["drift"] == 0.0
    assert other["agreement_16"] == other["agreement_32"] == 0.0
    for kw, match in [(dict(pairs="near"), "pairs must be one of"), (dict(pairs="same"), "groups is needed"),
                      (dict(groups=np.zeros(8, int)), "only used with"),
                      (dict(pairs="same", groups=np.zeros(7, int)), "8 integer labels"),
                      (dict(pairs="different", groups=np.zeros(8)), "8 integer labels")]:
        with pytest.raises(ValueError, match=match):
            metrics.identity_agreement(_readings(np.full(8, 2)), **kw)


def test_identity_code_is_one_joint_reading_per_frame_and_light_is_read_without_an_object():
    rng = np.random.default_rng(0)
    f = 40
    shade, pattern, light = rng.integers(0, 3, f), rng.integers(0, 4, f), rng.integers(0, 4, f)
    found = rng.uniform(size=f) < 0.7
    z = np.zeros(f, int)
    r = metrics.FrameReadings(z, found, z, z, z, np.zeros((f, 2)), z, np.where(found, shade, -1), np.where(found, pattern, -1),
                              light)
    np.testing.assert_array_equal(metrics.identity_code(r), np.where(found, shade * 4 + pattern, -1))
    np.testing.assert_array_equal(metrics.identity_code(r, ("light",)), light)  # the scene's: read in every frame
    joint = metrics.identity_code(r, ("shade", "pattern", "light"))
    for i in range(f):  # equal codes exactly when all three readings are equal (brute force over pairs)
        for j in range(f):
            if found[i] and found[j]:
                same = (shade[i], pattern[i], light[i]) == (shade[j], pattern[j], light[j])
                assert (joint[i] == joint[j]) == same
    assert np.all(joint[~found] == -1) and np.all(joint[found] >= 0)
    old = r._replace(light=np.full(f, -1))  # a record made before the light was read
    assert np.all(metrics.identity_code(old, ("light",)) == -1)
    for bad in ((), ("colour",), ("light", "light")):
        with pytest.raises(ValueError, match="attributes must be distinct names among"):
            metrics.identity_code(r, bad)


def test_light_agreement_and_ends_follow_a_light_that_turns_once():
    """64 frames lit from the west, then 32 from the east, no object anywhere: the light alone is
    counted (closed form), the object's identity has no pair at all."""
    f, k = 96, 64
    z = np.zeros(f, int)
    light = np.where(np.arange(f) < k, 0, 1)
    r = metrics.FrameReadings(z, np.zeros(f, bool), z, z, z, np.zeros((f, 2)), z, -np.ones(f, int), -np.ones(f, int), light)
    agree = metrics.identity_agreement(r, attributes=("light",))

    def frac(lo, hi):  # pairs lo <= d < hi apart on the same side of the turn
        n = sum(f - d for d in range(lo, hi))
        same = sum(max(0, k - d) + max(0, f - k - d) for d in range(lo, hi))
        return same / n

    for lo, hi in zip(metrics.AGREEMENT_BINS, [*metrics.AGREEMENT_BINS[1:], f]):
        assert agree[f"agreement_{lo}"] == pytest.approx(frac(lo, hi), abs=1e-12)
    assert agree["drift"] == pytest.approx(frac(16, 32) - frac(32, f), abs=1e-12)
    assert metrics.same_identity_at_the_ends(r, 8, ("light",)) == 0.0
    assert metrics.same_identity_at_the_ends(r._replace(light=z), 8, ("light",)) == 1.0
    assert all(v is None for v in metrics.identity_agreement(r).values())  # no object: no (shade, pattern) pair
    assert metrics.identity_consistency(r, ("light",)) == {"light": k / f}
