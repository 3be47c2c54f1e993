"""The shapes world: renderer determinism, captions vs ground truth, probes exact on renders, tokenizer."""

import numpy as np
import pytest

from syncos_jax import metrics
from syncos_jax.backbones.toy import world
from syncos_jax.backbones.toy.tokenizer import BOS, PAD, VOCABULARY, Tokenizer


def test_render_is_deterministic_given_the_seed():
    a = world.sample_batch(7, 4)
    b = world.sample_batch(7, 4)
    c = world.sample_batch(8, 4)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].shape == (4, 8, 32, 32, 3) and a[1].dtype == np.float32
    assert a[1].min() >= -1.0 and a[1].max() <= 1.0
    assert not np.array_equal(a[1], c[1])


def test_factor_counts_match_the_issue():
    assert len(world.COLOURS) >= 6 and len(world.SHAPES) >= 3 and len(world.SIZES) >= 2
    assert len(world.MOTIONS) >= 5 and len(world.BACKGROUNDS) >= 4


@pytest.mark.parametrize("seed", range(5))
def test_caption_agrees_with_ground_truth(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        text, tr = world.random_track(rng, 8, event_probability=0.5)
        c = world.parse_caption(text)
        assert world.caption(c.colour, c.shape, c.size, c.motion, c.background, c.then) == text
        assert set(tr.colour) == {world.COLOUR_NAMES.index(c.colour)}
        assert set(tr.shape) == {world.SHAPES.index(c.shape)}
        assert set(tr.size) == {world.SIZE_NAMES.index(c.size)}
        assert tr.background[0] == world.BACKGROUND_NAMES.index(c.background)
        if c.then:
            k = int(np.argmax(tr.background != tr.background[0]))
            assert 2 <= k <= 6 and set(tr.background[k:]) == {world.BACKGROUND_NAMES.index(c.then)}
        else:
            assert set(tr.background) == {world.BACKGROUND_NAMES.index(c.background)}
        # the whole motion happens without a bounce: exactly speed px per frame in the caption's direction
        step = np.diff(tr.centre, axis=0)
        np.testing.assert_allclose(step, np.broadcast_to(np.array(world.MOTIONS[c.motion]) * world.MOTION_SPEED, step.shape), atol=1e-12)
        hw = world.SIZES[c.size]
        assert tr.centre.min() >= hw and tr.centre.max() <= world.IMAGE_SIZE - hw


def test_pixels_show_the_object_where_the_track_says():
    tr = world.track_from_caption("a large red square stays still on snow", 3, np.random.default_rng(0), shade="dark",
                                  pattern="capped")
    frames = world.render(tr)
    cx, cy = tr.centre[0]
    dark_red = 2 * world.SHADES["dark"] * np.array(world.COLOURS["red"]) - 1
    np.testing.assert_allclose(frames[0, int(cy + 3), int(cx)], dark_red, atol=1e-6)  # below the centre: own colour
    np.testing.assert_allclose(frames[0, int(cy - 3), int(cx)], 2 * np.array(world.INK) - 1, atol=1e-6)  # above: ink
    snowish = frames[0, 0, 0]
    assert np.linalg.norm((snowish + 1) / 2 - np.array(world.BACKGROUNDS["snow"])) < 0.15


@pytest.mark.parametrize("pattern", world.PATTERNS)
def test_each_pattern_paints_its_region_and_each_shade_scales_the_colour(pattern):
    """Closed forms on a large square centred on a pixel corner (pixel centres at ±0.5, ±1.5, …)."""
    tr = world.track_from_caption("a large blue square stays still on grass", 1, np.random.default_rng(0), shade="mid",
                                  pattern=pattern)._replace(centre=np.array([[16.0, 16.0]]))
    img = (world.render(tr)[0] + 1) / 2
    ink = np.all(np.abs(img - np.array(world.INK)) < 1e-6, axis=-1)
    own = np.all(np.abs(img - world.SHADES["mid"] * np.array(world.COLOURS["blue"])) < 1e-6, axis=-1)
    assert ink.sum() + own.sum() == 16 * 16  # the large square: 16 × 16 pixel centres within ±8
    expected = {"plain": 0, "capped": 16 * 8, "halved": 16 * 8, "spotted": int(world.pattern_mask("spotted", (16.0, 16.0), 8).sum())}
    assert ink.sum() == expected[pattern]
    if pattern == "capped":
        assert ink[8:16, 8:24].all() and not ink[16:].any()
    if pattern == "halved":
        assert ink[8:24, 8:16].all() and not ink[:, 16:].any()
    for a, b in [("dark", "mid"), ("mid", "bright"), ("dark", "bright")]:
        ca, cb = (world.object_colour(c, s) for c, s in (("blue", a), ("blue", b)))
        np.testing.assert_allclose(ca / world.SHADES[a], cb / world.SHADES[b], atol=1e-12)


@pytest.mark.parametrize("light", world.LIGHT_NAMES)
def test_the_light_is_a_linear_ramp_of_the_background_toward_its_side(light):
    """Closed form: a lit background minus the unlit field is LIGHT_AMPLITUDE · (d · u) in every
    channel where nothing clips (31/32 · LIGHT_AMPLITUDE at the lit edge's pixel centres, zero on
    average); the object's pixels are not lit; the probe reads the light through pixel noise; an
    unknown light names the argument."""
    tr = world.track_from_caption("a small red circle stays still on grass", 1, np.random.default_rng(0),
                                  light=light)._replace(centre=np.array([[16.0, 16.0]]))
    img = (world.render(tr)[0].astype(np.float64) + 1) / 2
    unlit = world.background_field("grass", tr.phase)  # lit grass never clips: 0.09 <= every channel <= 0.69
    delta = img - unlit
    obj = world.object_masks(tr)[0]
    ramp = world.light_field(light)
    np.testing.assert_allclose(delta[~obj], np.repeat(ramp[~obj][:, None], 3, axis=1), atol=1e-6)
    d = np.asarray(world.LIGHTS[light])
    u = (np.arange(32) + 0.5 - 16) / 16  # pixel centres in half-widths
    edge = (ramp[:, 0] if d[0] < 0 else ramp[:, -1]) if d[0] else (ramp[0] if d[1] < 0 else ramp[-1])
    np.testing.assert_allclose(edge, world.LIGHT_AMPLITUDE * abs(u[0]), atol=1e-12)  # the lit edge, every pixel along it
    assert abs(ramp.mean()) < 1e-12 and ramp.max() == pytest.approx(world.LIGHT_AMPLITUDE * abs(u[0]))
    for bg in world.BACKGROUND_NAMES:  # the fitted slope: LIGHT_AMPLITUDE · d, bent a little by texture and clipping
        v = metrics.light_vector(world.render(tr._replace(background=np.array([world.BACKGROUND_NAMES.index(bg)]))))
        assert v.shape == (1, 2) and np.abs(v[0] - world.LIGHT_AMPLITUDE * d).max() < 0.2 * world.LIGHT_AMPLITUDE, bg
    flat = metrics.light_vector(2.0 * np.broadcast_to(unlit, (1, 32, 32, 3)) - 1.0)  # no light: a slope near 0
    assert np.abs(flat).max() < 0.1 * world.LIGHT_AMPLITUDE
    with pytest.raises(ValueError, match=r"frames must be \[F, H, W, 3\]"):
        metrics.light_vector(np.zeros((32, 32, 3)))
    noisy = world.render(tr) + np.random.default_rng(1).normal(0.0, 0.2, (1, 32, 32, 3)).astype(np.float32)
    assert metrics.probe_frames(noisy).light[0] == world.LIGHT_NAMES.index(light)
    with pytest.raises(ValueError, match="unknown light 'dusk'"):
        world.light_field("dusk")


def test_unprompted_identity_is_drawn_uniformly_and_never_captioned():
    rng = np.random.default_rng(3)
    shades, patterns, lights = np.zeros(3, int), np.zeros(4, int), np.zeros(4, int)
    for _ in range(1200):
        text, tr = world.random_track(rng, 2, event_probability=0.0)
        assert len(set(tr.shade)) == 1 and len(set(tr.pattern)) == 1 and len(set(tr.light)) == 1
        shades[tr.shade[0]] += 1
        patterns[tr.pattern[0]] += 1
        lights[tr.light[0]] += 1
        assert not set(text.split()) & (set(world.SHADE_NAMES) | set(world.PATTERNS) | set(world.LIGHT_NAMES))
    # multinomial counts: 1200/3 ± 4.5 sd and 1200/4 ± 4.5 sd
    assert np.all(np.abs(shades - 400) < 4.5 * np.sqrt(1200 * (1 / 3) * (2 / 3)))
    assert np.all(np.abs(patterns - 300) < 4.5 * np.sqrt(1200 * 0.25 * 0.75))
    assert np.all(np.abs(lights - 300) < 4.5 * np.sqrt(1200 * 0.25 * 0.75))
    with pytest.raises(ValueError, match="unknown light 'dusk'"):
        world.track_from_caption("a large blue square stays still on grass", 2, rng, light="dusk")
    with pytest.raises(ValueError, match="unknown shade 'pale'"):
        world.track_from_caption("a large blue square stays still on grass", 2, rng, shade="pale")
    with pytest.raises(ValueError, match="unknown pattern 'stripes'"):
        world.pattern_mask("stripes", (16, 16), 5)


def test_a_long_track_keeps_its_identity_across_events():
    events = [world.Event(9, "right", "grass"), world.Event(9, "up", "snow", colour="blue"), world.Event(9, "still", "night"),
              world.Event(9, "left", "sand", colour="yellow")]
    for seed in range(6):
        tr = world.long_track("red", "triangle", "large", events, seed=seed)
        assert len(set(tr.shade)) == 1 and len(set(tr.pattern)) == 1 and len(set(tr.light)) == 1
        r = metrics.probe_frames(world.render(tr))
        np.testing.assert_array_equal(r.shade, tr.shade)
        np.testing.assert_array_equal(r.pattern, tr.pattern)
        np.testing.assert_array_equal(r.light, tr.light)  # through the four backgrounds, night and snow clipping
        assert metrics.identity_consistency(r, ("shade", "pattern", "light", "unprompted")) == {
            "shade": 1.0, "pattern": 1.0, "light": 1.0, "unprompted": 1.0}
    given = world.long_track("red", "triangle", "large", events, shade="bright", pattern="spotted", light="north")
    assert set(given.shade) == {2} and set(given.pattern) == {3} and set(given.light) == {world.LIGHT_NAMES.index("north")}


@pytest.mark.parametrize("seed", range(3))
def test_long_windows_are_captioned_truthfully_and_carry_the_track(seed):
    rng = np.random.default_rng(seed)
    starts = []
    for _ in range(40):
        text, tr = world.random_long_window(rng, 8)
        c = world.parse_caption(text)
        assert tr.num_frames == 8 and len(set(tr.shade)) == 1 and len(set(tr.pattern)) == 1
        assert set(tr.motion) == {world.MOTION_NAMES.index(c.motion)}
        step = np.diff(tr.centre, axis=0)  # no bounce inside the window
        np.testing.assert_allclose(step, np.broadcast_to(np.array(world.MOTIONS[c.motion]) * world.MOTION_SPEED, step.shape), atol=1e-9)
        assert tr.background[0] == world.BACKGROUND_NAMES.index(c.background)
        assert tr.background[-1] == world.BACKGROUND_NAMES.index(c.then or c.background)
        assert len(np.flatnonzero(np.diff(tr.background))) <= 1
        r = metrics.probe_frames(world.render(tr))
        for k in ("colour", "shape", "size", "background", "shade", "pattern"):
            np.testing.assert_array_equal(getattr(r, k), getattr(tr, k))
        hw = world.SIZES[c.size]
        starts.append(tr.centre[0] - hw)
    # unlike fresh clips (which start where the caption's motion has room), windows start anywhere, walls included
    assert np.min(starts) < 1.0


def test_bad_captions_and_factors_raise():
    with pytest.raises(ValueError, match="does not parse.*SIZE COLOUR SHAPE"):
        world.parse_caption("a red circle moves left on snow")
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        world.shape_mask("hexagon", (16, 16), 4)
    with pytest.raises(ValueError, match="unknown background 'lava'"):
        world.long_track("red", "circle", "small", [world.Event(4, "left", "lava")])
    with pytest.raises(ValueError, match="events is empty"):
        world.long_track("red", "circle", "small", [])


def test_long_track_bounces_and_changes_events():
    events = [world.Event(12, "right", "grass"), world.Event(10, "left", "snow", colour="blue"), world.Event(6, "still", "night")]
    tr = world.long_track("red", "circle", "large", events, start=(20.0, 16.0))
    assert tr.num_frames == 28
    hw = world.SIZES["large"]
    assert tr.centre.min() >= hw and tr.centre.max() <= world.IMAGE_SIZE - hw
    dx = np.diff(tr.centre[:12, 0])
    assert (dx > 0).any() and (dx < 0).any(), "moving right for 12 frames from x=20 must bounce off the wall"
    assert np.all(np.abs(dx) <= world.MOTION_SPEED + 1e-12) and np.sum(np.abs(dx) == world.MOTION_SPEED) >= len(dx) - 1
    assert list(tr.colour[[0, 11, 12, 27]]) == [0, 0, 1, 1]
    assert list(tr.background[[11, 12, 21, 22]]) == [0, 1, 1, 3]
    np.testing.assert_array_equal(np.diff(tr.centre[22:], axis=0), 0.0)
    readings = metrics.read_segments(world.render(tr), [(0, 12), (12, 22), (22, 28)])
    assert [r.background for r in readings] == ["grass", "snow", "night"]
    assert [r.colour for r in readings] == ["red", "blue", "blue"]
    assert readings[2].motion == "still"


@pytest.mark.parametrize("seed", range(4))
def test_probes_are_exact_on_renders(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(50):
        _, tr = world.random_track(rng, 8, event_probability=0.3)
        r = metrics.probe_frames(world.render(tr))
        assert r.found.all()
        np.testing.assert_array_equal(r.background, tr.background)
        np.testing.assert_array_equal(r.colour, tr.colour)
        np.testing.assert_array_equal(r.shape, tr.shape)
        np.testing.assert_array_equal(r.size, tr.size)
        np.testing.assert_array_equal(r.shade, tr.shade)
        np.testing.assert_array_equal(r.pattern, tr.pattern)
        np.testing.assert_array_equal(r.light, tr.light)
        assert metrics.motion_direction(r.centre) == tr.motion[0]
        assert np.abs(r.centre - tr.centre).max() <= 1.0


def test_object_shade_scale_is_the_shade_factor_on_renders_and_continuous_between():
    """On renders the scale is the shade's factor (world.SHADES) to float precision; an object
    repainted at a scale between two shades reads that scale; no object gives NaN; bad input
    names the argument."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        _, tr = world.random_track(rng, 4, event_probability=0.0)
        colour = world.COLOUR_NAMES[tr.colour[0]]
        want = world.SHADES[world.SHADE_NAMES[tr.shade[0]]]
        np.testing.assert_allclose(metrics.object_shade_scale(world.render(tr), colour), want, atol=1e-6)
    _, tr = world.random_track(rng, 2, event_probability=0.0)
    tr = tr._replace(pattern=np.zeros_like(tr.pattern), shade=np.full_like(tr.shade, world.SHADE_NAMES.index("bright")))
    frames = (world.render(tr) + 1.0) / 2.0
    mask = world.object_masks(tr)
    frames[mask] *= 0.9  # between mid (0.79) and bright (1.0)
    colour = world.COLOUR_NAMES[tr.colour[0]]
    np.testing.assert_allclose(metrics.object_shade_scale(2.0 * frames - 1.0, colour), 0.9, atol=1e-6)
    empty = np.broadcast_to(2.0 * np.asarray(world.BACKGROUNDS["snow"]) - 1.0, (1, 32, 32, 3))  # flat: nothing found
    assert np.isnan(metrics.object_shade_scale(empty, colour)).all()
    with pytest.raises(ValueError, match="colour must be one of"):
        metrics.object_shade_scale(world.render(tr), "mauve")
    with pytest.raises(ValueError, match="frames must be"):
        metrics.object_shade_scale(world.render(tr)[0], colour)


def test_object_masks_are_the_pixels_painted_in_the_objects_colour_or_ink():
    """Oracle: the pixels of a render that hold the object's colour at its shade, or the ink
    (no background reaches either: the palettes are far apart)."""
    rng = np.random.default_rng(7)
    tracks = [world.random_track(rng, 8, event_probability=0.5)[1] for _ in range(20)]
    tracks += [world.random_long_window(rng, 8)[1] for _ in range(10)]
    for tr in tracks:
        masks, frames = world.object_masks(tr), (world.render(tr) + 1.0) / 2.0
        assert masks.shape == (8, 32, 32) and masks.dtype == bool
        for k in range(8):
            colour = world.object_colour(world.COLOUR_NAMES[tr.colour[k]], world.SHADE_NAMES[tr.shade[k]])
            painted = (np.abs(frames[k] - colour).max(-1) < 1e-6) | (np.abs(frames[k] - world.INK).max(-1) < 1e-6)
            np.testing.assert_array_equal(masks[k], painted)
            assert masks[k].sum() >= 40  # the smallest shape (a small triangle) covers ~60 px


@pytest.mark.parametrize("shape", world.SHAPES)
def test_shape_probe_reads_ragged_objects_by_their_form(shape):
    """A generated object is rarely pixel-perfect: with a spur of two pixels on one side (which
    widens its bounding box) and a few boundary pixels missing, each shape still reads as itself."""
    rng = np.random.default_rng(3)
    tr = world.track_from_caption(f"a large red {shape} stays still on grass", 1, rng)
    img = world.render(tr)[0]
    inside = np.argwhere(world.shape_mask(shape, tr.centre[0], world.SIZES["large"]))
    cy = int(np.median(inside[:, 0]))
    right = inside[inside[:, 0] == cy, 1].max()
    red = 2 * np.array(world.COLOURS["red"]) - 1
    grass = 2 * np.array(world.BACKGROUNDS["grass"]) - 1
    img[cy, right + 1 : right + 3] = red  # a spur to the right of the object
    for y, x in inside[rng.choice(len(inside), 6, replace=False)]:
        if abs(y - cy) > 2:  # keep the object connected
            img[y, x] = grass
    r = metrics.probe_frames(img[None])
    assert world.SHAPES[int(r.shape[0])] == shape and world.SIZE_NAMES[int(r.size[0])] == "large"


def test_motion_direction_reads_tracks():
    t = np.arange(8.0)[:, None]
    assert world.MOTION_NAMES[metrics.motion_direction(np.hstack([10 + 1.5 * t, 0 * t + 5]))] == "right"
    assert world.MOTION_NAMES[metrics.motion_direction(np.hstack([0 * t + 5, 20 - 1.5 * t]))] == "up"
    assert world.MOTION_NAMES[metrics.motion_direction(np.hstack([5 + 0.1 * t, 5 + 0 * t]))] == "still"
    nan = np.full((8, 2), np.nan)
    assert world.MOTION_NAMES[metrics.motion_direction(nan)] == "still"


def test_probe_rejects_bad_shapes_and_segments():
    with pytest.raises(ValueError, match=r"\[F, H, W, 3\]"):
        metrics.probe_frames(np.zeros((8, 32, 32)))
    with pytest.raises(ValueError, match="segment \\(4, 9\\)"):
        metrics.read_segments(np.zeros((8, 32, 32, 3)), [(4, 9)])


def test_tokenizer_round_trip_and_errors():
    tok = Tokenizer(16)
    ids = tok("a small red circle moves left on snow then grass")
    assert ids.shape == (16,) and ids[0] == BOS and ids[11] == PAD
    assert tok.decode(ids) == "a small red circle moves left on snow then grass"
    assert list(tok("")) == [BOS] + [PAD] * 15
    assert tok(["a", "on"]).shape == (2, 16)
    with pytest.raises(ValueError, match="unknown word 'dragon'.*vocabulary is: a on then moves stays small large red"):
        tok("a small red dragon")
    with pytest.raises(ValueError, match="unknown word '<pad>'"):
        tok("<pad>")
    with pytest.raises(ValueError, match="16 words; at most 15 fit"):
        tok(" ".join(["a"] * 16))
    assert len(set(VOCABULARY)) == len(VOCABULARY)
