"""Chunk layout, take/fuse/fuse_subset and prompt assignment: properties over random layouts."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncos_jax.chunking import (
    ChunkLayout, assign_prompts, chunk_weights, fuse, fuse_subset, prompt_of_frame, segment_bounds, take,
)

WEIGHTS = ["uniform", "triangular", "gaussian"]


# The property tests draw a new layout (new shapes) per example: they call these compiled forms, one
# program per example, where eagerly each of take/fuse's few ops would compile on its own. The eager
# path is exercised by the fixed-layout tests below.
_take = jax.jit(take, static_argnums=0)
_fuse = jax.jit(fuse, static_argnums=(0, 2))
_fuse_subset = jax.jit(fuse_subset, static_argnums=(0, 3))


@st.composite
def layouts(draw):
    f = draw(st.integers(1, 9))
    F = draw(st.integers(f, 40))
    stride = draw(st.integers(1, f))
    return ChunkLayout(F, f, stride)


def _normal(shape, seed):
    """A float32 device array of N(0, 1) draws. Drawn with numpy: every hypothesis example has new
    shapes, and each eager ``jax.random.normal`` (or arithmetic) of a new shape compiles a program."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _video(layout, seed=0, trailing=(2, 3)):
    return _normal((layout.num_frames,) + trailing, seed)


def _loop_fuse(layout, chunks, weights):
    """Independent oracle: a per-chunk Python loop in float64."""
    w = chunk_weights(layout.chunk_frames, weights).astype(np.float64)
    chunks = np.asarray(chunks, np.float64)
    num = np.zeros((layout.num_frames,) + chunks.shape[2:])
    den = np.zeros(layout.num_frames)
    for i, s in enumerate(layout.starts):
        for k in range(layout.chunk_frames):
            num[s + k] += w[k] * chunks[i, k]
            den[s + k] += w[k]
    return num / den.reshape((-1,) + (1,) * (num.ndim - 1))


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_layout_invariants(layout):
    F, f, s = layout.num_frames, layout.chunk_frames, layout.stride
    assert layout.index.shape == (layout.num_chunks, f)
    assert layout.starts[0] == 0 and layout.starts[-1] == F - f  # end-aligned last window
    assert np.all(np.diff(layout.starts) >= 1) and np.all(np.diff(layout.starts)[:-1] == s)
    assert np.all(layout.coverage >= 1)  # every frame covered
    assert layout.coverage.sum() == layout.num_chunks * f


@settings(max_examples=40, deadline=None)
@given(layouts(), st.sampled_from(WEIGHTS))
def test_fuse_take_is_identity(layout, weights):
    x = _video(layout)
    np.testing.assert_allclose(_fuse(layout, _take(layout, x), weights), x, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(layouts(), st.sampled_from(WEIGHTS), st.floats(-3, 3), st.floats(-3, 3))
def test_fuse_is_linear_and_matches_loop(layout, weights, a, b):
    shape = (layout.num_chunks, layout.chunk_frames, 2, 3)
    y1, y2 = _normal(shape, 1), _normal(shape, 2)
    lhs = _fuse(layout, jnp.asarray(a * np.asarray(y1) + b * np.asarray(y2)), weights)
    rhs = a * np.asarray(_fuse(layout, y1, weights)) + b * np.asarray(_fuse(layout, y2, weights))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_fuse(layout, y1, weights), _loop_fuse(layout, y1, weights), rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(layouts(), st.sampled_from(WEIGHTS), st.floats(-10, 10))
def test_fuse_of_equal_chunks_is_that_constant(layout, weights, c):
    chunks = jnp.asarray(np.full((layout.num_chunks, layout.chunk_frames, 2), c, np.float32))
    np.testing.assert_allclose(_fuse(layout, chunks, weights), np.full((layout.num_frames, 2), c), rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(layouts(), st.sampled_from(WEIGHTS), st.data())
def test_fuse_subset_uncovered_frames_are_zero(layout, weights, data):
    B = data.draw(st.integers(1, layout.num_chunks))
    ids = np.asarray(data.draw(st.permutations(range(layout.num_chunks)))[:B], np.int32)
    chunks = _normal((B, layout.chunk_frames, 2), 3)
    out = np.asarray(_fuse_subset(layout, chunks, jnp.asarray(ids), weights))
    covered = np.zeros(layout.num_frames, bool)
    covered[layout.index[ids].ravel()] = True
    assert np.all(np.isfinite(out))
    assert np.all(out[~covered] == 0.0)
    # On covered frames it is the weighted average of the minibatch (oracle: a loop over the subset).
    w = chunk_weights(layout.chunk_frames, weights).astype(np.float64)
    num = np.zeros((layout.num_frames, 2))
    den = np.zeros(layout.num_frames)
    for j, i in enumerate(ids):
        num[layout.index[i]] += w[:, None] * np.asarray(chunks[j], np.float64)
        den[layout.index[i]] += w
    np.testing.assert_allclose(out[covered], num[covered] / den[covered, None], rtol=1e-5, atol=1e-6)


def test_fuse_subset_of_all_chunks_equals_fuse():
    layout = ChunkLayout(23, 6, 4)
    y = jax.random.normal(jax.random.key(4), (layout.num_chunks, 6, 3))
    perm = jnp.asarray(np.random.default_rng(0).permutation(layout.num_chunks))
    np.testing.assert_allclose(fuse_subset(layout, y[perm], perm), fuse(layout, y), rtol=1e-6, atol=1e-6)


def test_jit_and_vmap_over_a_batch():
    layout = ChunkLayout(17, 5, 2)
    xs = jax.random.normal(jax.random.key(5), (3, 17, 2, 2, 1))
    batched_take = jax.jit(jax.vmap(lambda x: take(layout, x)))
    chunks = batched_take(xs)
    chex.assert_shape(chunks, (3, layout.num_chunks, 5, 2, 2, 1))
    fused = jax.jit(jax.vmap(lambda c: fuse(layout, c, "triangular")))(chunks)
    np.testing.assert_allclose(fused, xs, rtol=1e-5, atol=1e-6)
    ids = jnp.array([[0, 3], [1, 2], [4, 5]])
    sub = jax.jit(jax.vmap(lambda c, i: fuse_subset(layout, c[i], i)))(chunks, ids)
    chex.assert_shape(sub, xs.shape)


def test_layout_examples():
    lay = ChunkLayout(20, 8, 4)
    np.testing.assert_array_equal(lay.starts, [0, 4, 8, 12])
    lay = ChunkLayout(21, 8, 4)
    np.testing.assert_array_equal(lay.starts, [0, 4, 8, 12, 13])
    assert ChunkLayout(8, 8, 3).num_chunks == 1
    assert hash(ChunkLayout(21, 8, 4)) == hash(ChunkLayout(21, 8, 4)) and ChunkLayout(21, 8, 4) != lay.__class__(21, 8, 3)


def test_weights():
    np.testing.assert_array_equal(chunk_weights(5, "triangular"), [1, 2, 3, 2, 1])
    np.testing.assert_array_equal(chunk_weights(4, "triangular"), [1, 2, 2, 1])
    g = chunk_weights(6, "gaussian")
    np.testing.assert_allclose(g, g[::-1])
    assert g[2] > g[1] > g[0] > 0
    np.testing.assert_array_equal(chunk_weights(3, [1.0, 2.0, 1.0]), [1, 2, 1])


def test_assign_prompts():
    # F = 16, two prompts split at frame 8; chunk centre = start + (f - 1) // 2.
    lay = ChunkLayout(16, 4, 2)  # starts 0,2,...,12; centres 1,3,5,7,9,11,13
    np.testing.assert_array_equal(assign_prompts(lay, 2), [0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(assign_prompts(lay, 1), np.zeros(lay.num_chunks))
    lay = ChunkLayout(12, 4, 4)  # centres 1, 5, 9; segments of 4
    np.testing.assert_array_equal(assign_prompts(lay, 3), [0, 1, 2])
    assert assign_prompts(ChunkLayout(40, 8, 4), 4).max() == 3


@pytest.mark.parametrize(
    "args,match",
    [
        ((4, 8, 2), "num_frames=4 is smaller than chunk_frames=8"),
        ((16, 8, 0), "stride=0 must be between 1 and chunk_frames=8"),
        ((16, 8, 9), "stride=9 must be between 1 and chunk_frames=8"),
        ((16, 0, 1), "chunk_frames=0"),
    ],
)
def test_layout_errors(args, match):
    with pytest.raises(ValueError, match=match):
        ChunkLayout(*args)


def test_shape_errors():
    lay = ChunkLayout(16, 8, 4)
    with pytest.raises(ValueError, match=r"x has shape \(15, 2\), expected \[F=16"):
        take(lay, jnp.zeros((15, 2)))
    with pytest.raises(ValueError, match=r"chunks has shape \(2, 8, 2\), expected \[3, f=8"):
        fuse(lay, jnp.zeros((2, 8, 2)))
    with pytest.raises(ValueError, match=r"chunks has shape \(2, 7, 2\), expected \[2, f=8"):
        fuse_subset(lay, jnp.zeros((2, 7, 2)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match="fusion_weights='cosine'"):
        fuse(lay, jnp.zeros((3, 8, 2)), "cosine")
    with pytest.raises(ValueError, match="fusion_weights must be 8 finite positive"):
        fuse(lay, jnp.zeros((3, 8, 2)), np.zeros(8))
    with pytest.raises(ValueError, match="num_prompts=0"):
        assign_prompts(lay, 0)


# --- which prompt owns a frame: one rule for chunks, FIFO's output frames and the probes' segments ---


def test_prompt_of_frame_is_the_equal_split_rule():
    for F in range(1, 41):
        c = np.arange(F)
        for P in range(1, F + 1):
            got = prompt_of_frame(c, segment_bounds(F, P))
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, (c * P) // F, err_msg=f"F={F} P={P}")
    assert isinstance(prompt_of_frame(5, segment_bounds(10, 3)), np.int32)


def test_prompt_of_frame_under_jit_on_traced_frames_clips_out_of_range():
    # one program for every (F, P): the bounds are static, the frames traced (FIFO's output index)
    pairs = [(F, P) for F in range(1, 41) for P in range(1, F + 1)]
    frames = np.arange(-3, 44, dtype=np.int32)

    @jax.jit
    def owners(c):
        return jnp.stack([prompt_of_frame(c, segment_bounds(F, P)) for F, P in pairs])

    got = owners(jnp.asarray(frames))
    assert isinstance(got, jax.Array) and got.dtype == jnp.int32
    for row, (F, P) in zip(np.asarray(got), pairs):
        np.testing.assert_array_equal(row, np.clip((frames * P) // F, 0, P - 1), err_msg=f"F={F} P={P}")
    scalar = jax.jit(lambda i: prompt_of_frame(i, ((0, 8), (8, 24), (24, 32))))
    assert [int(scalar(jnp.int32(i))) for i in (-5, 0, 7, 8, 23, 24, 31, 32, 99)] == [0, 0, 0, 1, 1, 2, 2, 2, 2]


def test_segment_bounds_from_counts():
    assert segment_bounds(32, (8, 16, 8)) == ((0, 8), (8, 24), (24, 32))
    assert segment_bounds(3, [1, 1, 1]) == ((0, 1), (1, 2), (2, 3))
    assert segment_bounds(5, np.array([5])) == ((0, 5),)
    assert segment_bounds(10, 3) == ((0, 4), (4, 7), (7, 10))  # the equal split of (c·P) // F
    c = np.arange(32)
    np.testing.assert_array_equal(prompt_of_frame(c, segment_bounds(32, (8, 16, 8))), np.repeat([0, 1, 2], [8, 16, 8]))


@pytest.mark.parametrize(
    "frames,prompts,match",
    [
        (32, (8, 16, 6), r"add up to 30 frames, but num_frames=32"),
        (32, (8, 0, 24), r"positive ints"),
        (32, (8, True, 23), r"positive ints"),
        (32, (8.0, 24), r"positive ints"),
        (32, (), r"non-empty sequence"),
        (32, 0, r"num_prompts=0"),
        (0, 2, r"num_frames=0"),
    ],
)
def test_segment_bounds_errors(frames, prompts, match):
    with pytest.raises(ValueError, match=match):
        segment_bounds(frames, prompts)


def test_prompt_of_frame_errors():
    with pytest.raises(ValueError, match="cover \\[0, F\\) contiguously"):
        prompt_of_frame(0, ((0, 4), (5, 8)))
    with pytest.raises(ValueError, match="contiguously"):
        prompt_of_frame(0, ((1, 4), (4, 8)))
    with pytest.raises(ValueError, match="non-empty sequence of \\(start, end\\) int pairs"):
        prompt_of_frame(0, (0, 4))
    with pytest.raises(TypeError, match="frame must hold ints"):
        prompt_of_frame(np.array([0.5]), ((0, 4),))
    with pytest.raises(TypeError, match="frame must hold ints"):
        prompt_of_frame(jnp.array([0.5]), ((0, 4),))
    with pytest.raises(TypeError, match="bounds must be static"):
        jax.jit(lambda b: prompt_of_frame(0, b))(jnp.array([[0, 4]]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(1, 8), st.data())
def test_assign_prompts_with_counts_takes_the_prompt_of_each_centre(counts, f, data):
    F = sum(counts)
    f = min(f, F)
    layout = ChunkLayout(F, f, data.draw(st.integers(1, f)))
    owner = np.repeat(np.arange(len(counts)), counts)  # frame -> its event, independently of the bounds
    centre = layout.starts + (f - 1) // 2
    got = assign_prompts(layout, segment_bounds(F, counts))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, owner[centre])
    # the int form is the equal split's bounds form
    P = data.draw(st.integers(1, F))
    np.testing.assert_array_equal(assign_prompts(layout, P), assign_prompts(layout, segment_bounds(F, P)))
    np.testing.assert_array_equal(assign_prompts(layout, P), (centre * P) // F)


def test_assign_prompts_bounds_must_cover_the_layout():
    with pytest.raises(ValueError, match="bounds cover 24 frames, but ChunkLayout\\(num_frames=32"):
        assign_prompts(ChunkLayout(32, 8, 4), ((0, 8), (8, 24)))


def test_chunking_never_imports_prompts():
    import ast
    import inspect

    import syncos_jax.chunking as chunking

    tree = ast.parse(inspect.getsource(chunking))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert not [m for m in names if "prompts" in m.split(".")], names
