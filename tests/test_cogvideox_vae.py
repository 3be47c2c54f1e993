"""CogVideoX VAE port: parity with diffusers' AutoencoderKLCogVideoX (float32, CPU), frame batching,
streaming, tiling, coverage of the real config, strict conversion."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from converters.common import ConversionError, convert  # noqa: E402
from converters.cogvideox_vae import RULES, convert_folder  # noqa: E402
from syncos_jax.backbones import cogvideox_vae as V  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(n):
    return dict(down_block_types=["CogVideoXDownBlock3D"] * n, up_block_types=["CogVideoXUpBlock3D"] * n)


# two tiny configs differing in depth (blocks, layers per block), channels, groups, eps and time compression
TINY_A = dict(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, norm_num_groups=4,
              temporal_compression_ratio=2, sample_height=16, sample_width=16, **_blocks(2))
TINY_B = dict(block_out_channels=[16, 24, 32], latent_channels=3, layers_per_block=2, norm_num_groups=8, norm_eps=1e-5,
              temporal_compression_ratio=4, sample_height=32, sample_width=32, scaling_factor=0.7, **_blocks(3))


def _reference(config, seed=0):
    torch.manual_seed(seed)
    ref = diffusers.AutoencoderKLCogVideoX(**config).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.2)  # GroupNorm scales and biases away from 1 and 0: every parameter matters
    return ref


_CACHE = {}


def _pair(name, tmp_path_factory):
    """(diffusers model, our model converted from its save_pretrained folder) for TINY_A / TINY_B."""
    if name not in _CACHE:
        ref = _reference({"A": TINY_A, "B": TINY_B}[name])
        root = tmp_path_factory.mktemp(f"vae_{name}")
        ref.save_pretrained(str(root / "vae"))
        ours, cfg = convert_folder(str(root))
        _CACHE[name] = (ref, ours, root)
    return _CACHE[name][:2]


def _ref_decode(ref, z):
    """z: [F, h, w, C] numpy → diffusers' vae.decode, as [F', H, W, 3] numpy."""
    with torch.no_grad():
        out = ref.decode(torch.from_numpy(np.ascontiguousarray(z.transpose(3, 0, 1, 2)))[None]).sample
    return out[0].permute(1, 2, 3, 0).numpy()


def _rel(o, r):
    assert o.shape == r.shape, (o.shape, r.shape)
    return float(np.abs(o - r).max() / np.abs(r).max())


def _latents(F, h, w, c, seed=0):
    return np.random.default_rng(seed).normal(size=(F, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("name,frames", [("A", 3), ("A", 4), ("A", 5), ("B", 3)])
def test_decode_parity_with_diffusers(name, frames, tmp_path_factory):
    """Odd frame counts (first batch of 3, diffusers' split first frame) and even ones, two depths."""
    ref, ours = _pair(name, tmp_path_factory)
    z = _latents(frames, 4, 4, ours.cfg.latent_channels, seed=frames)
    r = _ref_decode(ref, z)
    o = V.decode(ours, z)
    assert _rel(o, r) <= 1e-5
    levels = ours.cfg.temporal_levels if name == "B" else 1  # TINY_A has one upsampler (two blocks)
    first = 2 + frames % 2
    expect = (1 + (first - 1) * 2 ** levels if first % 2 else first * 2 ** levels) + (frames - first) * 2 ** levels
    assert o.shape == (expect, 4 * ours.cfg.spatial_scale, 4 * ours.cfg.spatial_scale, 3)


def test_decode_with_another_frame_batch_matches_diffusers(tmp_path_factory):
    """frame_batch is diffusers' num_latent_frames_batch_size, and the output (even its length) depends on it."""
    ref, ours = _pair("A", tmp_path_factory)
    z = _latents(6, 4, 4, 4, seed=7)  # batches 3 + 3 (diffusers' default: 2 + 2 + 2)
    ref.num_latent_frames_batch_size = 3
    try:
        r3 = _ref_decode(ref, z)
    finally:
        ref.num_latent_frames_batch_size = 2
    o3 = V.decode(ours, z, frame_batch=3)
    assert _rel(o3, r3) <= 1e-5
    # every odd batch keeps its first frame single in time: 2 x 5 frames, where 2 + 2 + 2 latent frames give 3 x 4
    assert o3.shape[0] == 10 and V.decode(ours, z).shape[0] == 12


def test_frame_batches_follow_diffusers_decode_loop():
    """The batch sizes diffusers' _decode feeds its decoder (recorded through a stub decoder)."""
    ref = diffusers.AutoencoderKLCogVideoX(**TINY_A).eval()
    seen = []

    def stub(z, conv_cache=None):
        seen.append(z.shape[2])
        return z, None

    ref.decoder.forward = stub
    for fb in (2, 3, 4):
        ref.num_latent_frames_batch_size = fb
        for F in range(1, 12):
            seen.clear()
            with torch.no_grad():
                ref.decode(torch.zeros(1, 4, F, 1, 1))
            ours = V.frame_batches(F, fb)
            assert [b - a for a, b in ours] == seen, (F, fb)
            assert ours[0][0] == 0 and ours[-1][1] == F and all(ours[k][1] == ours[k + 1][0] for k in range(len(ours) - 1))


def test_streaming_equals_one_call_decode_bit_for_bit(tmp_path_factory):
    """init_decode_cache + decode_step over diffusers' batches gives exactly decode's bits (the same compiled
    step; decode is that loop), and a longer video compiles nothing new: one program per batch shape."""
    _, ours = _pair("A", tmp_path_factory)
    z = _latents(5, 4, 4, 4, seed=11)
    whole = V.decode(ours, z)
    compiled = V._step_jit._cache_size()
    cache = V.init_decode_cache(ours, (4, 4))
    parts = []
    for a, b in V.frame_batches(5, 2):
        cache, frames = V.decode_step(ours, cache, z[a:b])
        parts.append(np.asarray(frames))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert bool(cache.started)
    long = V.decode(ours, _latents(13, 4, 4, 4, seed=12))
    assert long.shape[0] == 1 + 2 * 12 and V._step_jit._cache_size() == compiled
    streamed = list(V.iter_decode(ours, z))
    assert [len(s) for s in streamed] == [5, 4]
    np.testing.assert_array_equal(np.concatenate(streamed), whole)


def test_the_first_batch_pads_with_its_first_frame_not_with_the_cache(tmp_path_factory):
    """An even video's batches all have the same shape; the started flag, not the program, tells the first."""
    ref, ours = _pair("A", tmp_path_factory)
    z = _latents(4, 4, 4, 4, seed=5)
    cache = V.init_decode_cache(ours, (4, 4))
    garbage = V.DecodeCache(cache.started, jax.tree.map(lambda a: a + 100.0, cache.convs))
    _, first = V.decode_step(ours, garbage, z[:2])  # not started: the cache's contents are ignored
    np.testing.assert_array_equal(np.asarray(first), V.decode(ours, z)[:4])
    assert _rel(np.asarray(first), _ref_decode(ref, z[:2])) <= 1e-5


def test_decode_latents_scales_and_clips_like_the_pipeline(tmp_path_factory):
    ref, ours = _pair("B", tmp_path_factory)
    raw = 3.0 * _latents(3, 4, 4, 3, seed=3)
    r = np.clip(_ref_decode(ref, raw * np.float32(1 / ref.config.scaling_factor)), -1, 1)
    o = V.decode_latents(ours, raw)
    assert o.min() >= -1 and o.max() <= 1 and (np.abs(o) == 1).any()
    assert np.abs(o - r).max() <= 1e-5 * np.abs(V.decode(ours, raw / np.float32(ours.cfg.scaling_factor))).max()


def test_tiled_decode_matches_diffusers_tiled_decode(tmp_path_factory):
    """4x6 latents, tiles of 8x4 latent pixels (16x8 pixels; overlap 1/4 → width stride 3, blend 2): two tiles
    side by side, two frame batches, each tile with its own caches."""
    ref, ours = _pair("A", tmp_path_factory)
    z = _latents(4, 4, 6, 4, seed=9)
    ref.enable_tiling(tile_sample_min_height=16, tile_sample_min_width=8, tile_overlap_factor_height=0.25,
                      tile_overlap_factor_width=0.25)
    try:
        r = _ref_decode(ref, z)
    finally:
        ref.disable_tiling()
    tiling = V.Tiling(16, 8, 0.25, 0.25)
    o = V.decode(ours, z, tiling=tiling)
    assert _rel(o, r) <= 1e-5
    grid = V.tile_grid(ours.cfg, tiling, 4, 6)
    assert grid.rows == ((0, 4),) and grid.cols == ((0, 4), (3, 6)) and grid.blend == (4, 2)
    # the left tile is kept as decoded alone up to the blend; the right one starts blended
    left = V.decode(ours, z[:, :, :4])
    np.testing.assert_array_equal(o[:, :, :6], left[:, :, :6])
    assert np.abs(o[:, :, 6:8] - left[:, :, 6:8]).max() > 1e-3 * np.abs(o).max()
    # a latent that fits in one tile is decoded whole, as in diffusers
    small = _latents(2, 4, 4, 4, seed=1)
    np.testing.assert_array_equal(V.decode(ours, small, tiling=tiling), V.decode(ours, small))


@pytest.mark.parametrize("size,tiling", [((7, 9), (8, 8, 1 / 4, 1 / 4)), ((10, 6), (12, 8, 1 / 6, 1 / 5)),
                                         ((6, 6), (8, 12, 1 / 2, 1 / 3))])
def test_tile_grid_and_blending_follow_diffusers_tiled_decode(size, tiling):
    """The 2-D tile geometry, blend order (upper then left neighbour, both already blended) and crops, with a
    stub decoder whose output depends on the position inside its tile (so overlapping tiles disagree)."""
    ref = diffusers.AutoencoderKLCogVideoX(**TINY_A).eval()
    cfg = V.CogVideoXVAEConfig.from_hf_dict(dict(ref.config))

    def stub_np(z):  # [t, h, w, C] -> [t, 2h, 2w, 3]
        up = np.repeat(np.repeat(z[..., :3], 2, axis=1), 2, axis=2)
        y = np.arange(up.shape[1], dtype=np.float32)[None, :, None, None]
        x = np.arange(up.shape[2], dtype=np.float32)[None, None, :, None]
        return up * (1 + 0.1 * y) + 0.05 * x

    def stub(z, conv_cache=None):
        out = stub_np(z[0].permute(1, 2, 3, 0).numpy())
        return torch.from_numpy(out.transpose(3, 0, 1, 2).copy())[None], None

    ref.decoder.forward = stub
    ref.enable_tiling(*tiling)
    z = _latents(3, *size, 4, seed=size[0])
    r = _ref_decode(ref, z)
    grid = V.tile_grid(cfg, V.Tiling(*tiling), *size)
    assert len(grid.rows) > 1 and len(grid.cols) > 1
    tiles = [[stub_np(z[:, r0:r1, c0:c1]) for c0, c1 in grid.cols] for r0, r1 in grid.rows]
    o = V.blend_tiles(tiles, grid)
    assert o.shape == r.shape and np.abs(o - r).max() <= 1e-6 * np.abs(r).max()


@pytest.mark.parametrize("name", ["A", pytest.param("B", marks=pytest.mark.slow)])
def test_encode_parity_with_diffusers(name, tmp_path_factory):
    """17 frames: diffusers' encoder batches of 8 sample frames (9 + 8), caches carried, logvar clamped."""
    ref, ours = _pair(name, tmp_path_factory)
    x = np.random.default_rng(2).uniform(-1, 1, size=(17 if name == "A" else 9, 8, 8, 3)).astype(np.float32)
    with torch.no_grad():
        dist = ref.encode(torch.from_numpy(x.transpose(3, 0, 1, 2))[None]).latent_dist
    post = V.encode(ours, x)
    mean, logvar = (a[0].permute(1, 2, 3, 0).numpy() for a in (dist.mean, dist.logvar))
    assert _rel(post.mean, mean) <= 1e-5 and _rel(post.logvar, logvar) <= 1e-5


def test_real_config_coverage_without_allocating():
    """The CogVideoX-2B/5B VAE (diffusers' defaults): every key of a meta-device diffusers model maps one to one,
    shape by shape, onto the nnx.eval_shape state."""
    cfg = V.CogVideoXVAEConfig()
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLCogVideoX()
    assert V.CogVideoXVAEConfig.from_hf_dict(dict(ref.config)) == cfg
    shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    _, _, abstract = V.model_abstract(cfg.to_dict())
    fake = {k: np.lib.stride_tricks.as_strided(np.zeros((), np.float32), s, [0] * len(s)) for k, s in shapes.items()}
    state = convert(fake, RULES, abstract)  # strict: raises on any unmapped / missing / mis-shaped key
    assert len(jax.tree.leaves(state)) == len(shapes) > 400
    n = sum(int(np.prod(s)) for s in shapes.values())
    assert n == sum(int(np.prod(a.shape)) for a in jax.tree.leaves(state))
    assert 2.0e8 < n < 2.3e8  # the CogVideoX VAE: 215.6 M parameters
    assert shapes["decoder.up_blocks.0.upsamplers.0.conv.weight"] == (512, 512, 3, 3)


def test_save_load_round_trip_and_bfloat16(tmp_path, tmp_path_factory):
    ref, ours = _pair("A", tmp_path_factory)
    root = _CACHE["A"][2]
    dst = tmp_path / "dst"
    model, cfg = convert_folder(str(root / "vae"), str(dst))  # the vae folder itself works too
    meta = json.loads((dst / "config.json").read_text())
    assert meta["model"] == "cogvideox-vae" and sorted(os.listdir(dst)) == ["config.json", "params.safetensors"]
    loaded, cfg2 = V.load(str(dst))
    assert cfg2 == cfg == ours.cfg
    z = _latents(3, 4, 4, 4)
    np.testing.assert_array_equal(V.decode(loaded, z), V.decode(ours, z))
    bf, _ = convert_folder(str(root), str(tmp_path / "bf"), dtype="bfloat16")
    loaded_bf, _ = V.load(str(tmp_path / "bf"))
    assert {str(a.dtype) for a in jax.tree.leaves(nnx.state(loaded_bf))} == {"bfloat16"}
    o = V.decode(loaded_bf, z)  # computed in float32 from bfloat16 weights
    assert o.dtype == np.float32 and 0 < _rel(o, _ref_decode(ref, z)) < 0.1


@pytest.mark.parametrize("case", ["extra", "missing", "wrong_shape"])
def test_mismatched_checkpoints_raise_one_clear_error_and_write_nothing(tmp_path, case):
    from safetensors.numpy import load_file, save_file

    ref = _reference(TINY_A)
    ref.save_pretrained(str(tmp_path / "src" / "vae"))
    path = tmp_path / "src" / "vae" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(path))
    if case == "extra":  # a checkpoint with one more resnet in the decoder's first up block, and a quant conv
        for k in [k for k in sd if k.startswith("decoder.up_blocks.0.resnets.1.")]:
            sd[k.replace("resnets.1.", "resnets.2.")] = sd[k]
        sd["quant_conv.weight"] = np.zeros((6, 6, 1, 1, 1), np.float32)
        expect = r"unmapped source keys \(17\): \['decoder\.up_blocks\.0\.resnets\.2\..*\(no such parameter\).*'quant_conv\.weight'\]"
    elif case == "missing":  # an encoder key: the encoder is converted, never silently skipped
        del sd["encoder.down_blocks.0.resnets.0.norm1.weight"]
        del sd["decoder.norm_out.conv_y.conv.bias"]
        expect = (r"missing target parameters \(2\): \['decoder\.norm_out\.conv_y\.conv\.bias', "
                  r"'encoder\.down_blocks\.0\.resnets\.0\.norm1\.scale'\]")
    else:
        sd["decoder.conv_in.conv.weight"] = np.zeros((16, 4, 3, 3, 2), np.float32)
        sd["encoder.norm_out.bias"] = np.zeros(3, np.float32)
        expect = (r"mis-shaped \(2\): \['decoder\.conv_in\.conv\.weight \(16, 4, 3, 3, 2\) -> decoder\.conv_in\.conv\.kernel "
                  r"\(3, 3, 3, 4, 16\)', 'encoder\.norm_out\.bias \(3,\) -> encoder\.norm_out\.bias \(16,\)'\]")
    save_file(sd, str(path))
    dst = tmp_path / "dst"
    with pytest.raises(ConversionError, match=expect) as info:
        convert_folder(str(tmp_path / "src"), str(dst))
    assert str(info.value).count("checkpoint does not match") == 1
    assert not dst.exists() and sorted(os.listdir(tmp_path)) == ["src"]


def test_bad_configs_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown CogVideoX VAE config keys \['bogus'\]"):
        V.CogVideoXVAEConfig.from_hf_dict({"bogus": 1})
    with pytest.raises(ValueError, match="not divisible by norm_num_groups=32"):
        V.CogVideoXVAEConfig(block_out_channels=(16, 48, 64, 64))
    with pytest.raises(NotImplementedError, match="use_quant_conv"):
        V.CogVideoXVAEConfig.from_hf_dict({"use_quant_conv": True})
    cfg = V.CogVideoXVAEConfig.from_hf_dict({"_class_name": "AutoencoderKLCogVideoX", "force_upcast": True,
                                             "temporal_compression_ratio": 4.0, "block_out_channels": [128, 256, 256, 512]})
    assert cfg == V.CogVideoXVAEConfig() and V.CogVideoXVAEConfig.from_hf_dict(cfg.to_dict()) == cfg
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"norm_num_groups": 5}))
    with pytest.raises(ConversionError, match="config.json.*not divisible by norm_num_groups=5"):
        convert_folder(str(tmp_path), str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()


def test_bad_inputs_are_named(tmp_path_factory):
    _, ours = _pair("A", tmp_path_factory)
    with pytest.raises(ValueError, match=r"z must be \[F, h, w, 4\].*got shape \(2, 4, 4, 3\)"):
        V.decode(ours, np.zeros((2, 4, 4, 3), np.float32))
    cache = V.init_decode_cache(ours, (4, 4))
    with pytest.raises(ValueError, match=r"latent size \(4, 6\), the cache was made for \(4, 4\)"):
        V.decode_step(ours, cache, np.zeros((2, 4, 6, 4), np.float32))
    with pytest.raises(ValueError, match="frame_batch must be >= 1, got 0"):
        V.iter_decode(ours, np.zeros((2, 4, 4, 4), np.float32), frame_batch=0)  # checked at the call, not at next()
    with pytest.raises(ValueError, match="tiles of 0x4"):
        V.decode(ours, np.zeros((2, 6, 6, 4), np.float32), tiling=V.Tiling(1, 8))


def test_importing_the_vae_modules_never_imports_torch():
    code = ("import sys; import syncos_jax.backbones.cogvideox_vae, converters.cogvideox_vae; "
            "print('torch' in sys.modules, 'diffusers' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "False"]


@pytest.mark.slow
@pytest.mark.parametrize("name,frames", [("A", 1), ("A", 13), ("B", 2), ("B", 5), ("B", 7)])
def test_decode_parity_more_frame_counts(name, frames, tmp_path_factory):
    ref, ours = _pair(name, tmp_path_factory)
    z = _latents(frames, 4, 6, ours.cfg.latent_channels, seed=frames)
    assert _rel(V.decode(ours, z), _ref_decode(ref, z)) <= 1e-5


@pytest.mark.slow
def test_tiled_decode_matches_diffusers_on_the_deeper_config(tmp_path_factory):
    """TINY_B (4 pixels per latent pixel), odd frame count, unequal tile sizes and overlaps."""
    ref, ours = _pair("B", tmp_path_factory)
    z = _latents(5, 7, 9, 3, seed=4)
    ref.enable_tiling(tile_sample_min_height=16, tile_sample_min_width=20, tile_overlap_factor_height=1 / 4,
                      tile_overlap_factor_width=1 / 5)
    try:
        r = _ref_decode(ref, z)
    finally:
        ref.disable_tiling()
    assert _rel(V.decode(ours, z, tiling=V.Tiling(16, 20, 1 / 4, 1 / 5)), r) <= 1e-5
