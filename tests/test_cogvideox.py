"""CogVideoX port: parity with diffusers (float32, CPU), coverage of the real 2B config, strict converters."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from converters.common import ConversionError, convert, read_safetensors  # noqa: E402
from converters.cogvideox import RULES, convert_folder  # noqa: E402
from syncos_jax.backbones.cogvideox import CogVideoXConfig, load, model_abstract, rotary_pos_embed_3d  # noqa: E402

TINY = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16, text_embed_dim=8,
            num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2, max_text_seq_length=8)


def _reference(rotary: bool, seed: int = 0, **over):
    torch.manual_seed(seed)
    ref = diffusers.CogVideoXTransformer3DModel(**{**TINY, "use_rotary_positional_embeddings": rotary, **over}).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.2)  # diffusers zero-initialises some layers; make every path matter
    return ref


def _ours(ref):
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    _, graphdef, abstract = model_abstract(dict(ref.config))
    return nnx.merge(graphdef, convert(sd, RULES, abstract))


def _diffusers_rope(F, H, W, cfg):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    p = cfg["patch_size"]
    gh, gw = H // p, W // p
    crops = get_resize_crop_region_for_grid((gh, gw), cfg["sample_width"] // p, cfg["sample_height"] // p)
    return get_3d_rotary_pos_embed(cfg["attention_head_dim"], crops, (gh, gw), F)


def _run_both(ref, ours, x, t, text, rotary):
    """x: [B, F, C, H, W] torch (diffusers layout). Returns (ours, reference) in diffusers layout."""
    F, H, W = x.shape[1], x.shape[3], x.shape[4]
    rope = _diffusers_rope(F, H, W, dict(ref.config)) if rotary else None
    with torch.no_grad():
        r = ref(x, text, t, image_rotary_emb=rope).sample.numpy()
    o = ours(jnp.asarray(x.numpy().transpose(0, 1, 3, 4, 2)), jnp.asarray(t.numpy()), jnp.asarray(text.numpy()))
    return np.asarray(o).transpose(0, 1, 4, 2, 3), r


@pytest.mark.parametrize("rotary", [False, True], ids=["2b-sincos", "5b-rotary"])
@pytest.mark.parametrize("frames", [3, 2], ids=["odd", "even"])
def test_parity_with_diffusers(rotary, frames):
    ref = _reference(rotary)
    ours = _ours(ref)
    g = torch.Generator().manual_seed(frames)
    for t in ([0, 999], [10, 500], [731, 731]):
        x = torch.randn(2, frames, 4, 8, 6, generator=g)  # a latent size that differs from sample_*: tables recomputed
        text = torch.randn(2, 8, 8, generator=g)
        o, r = _run_both(ref, ours, x, torch.tensor(t), text, rotary)
        assert o.shape == r.shape
        assert np.abs(o - r).max() / np.abs(r).max() <= 1e-5


def test_rotary_table_matches_diffusers():
    for F, gh, gw in [(3, 4, 3), (13, 30, 45), (2, 5, 5)]:
        cos, sin = _diffusers_rope(F, gh * 2, gw * 2, {**TINY, "attention_head_dim": 64, "sample_width": 90, "sample_height": 60})
        c2, s2 = rotary_pos_embed_3d(64, gh, gw, F, 30, 45)
        np.testing.assert_allclose(c2, cos.numpy(), atol=2e-6)
        np.testing.assert_allclose(s2, sin.numpy(), atol=2e-6)


def test_sincos_table_matches_diffusers_buffer():
    ref = _reference(False, sample_width=12, sample_height=8, sample_frames=13)
    buf = ref.patch_embed.pos_embedding.numpy()[0, TINY["max_text_seq_length"]:]
    ours = _ours(ref)
    table, rotary = ours.positions(4, 8, 12)
    assert rotary is None
    np.testing.assert_allclose(np.asarray(table), buf, atol=1e-6)


def test_per_frame_timesteps_equal_give_the_scalar_output():
    ours = _ours(_reference(False))
    x = jax.random.normal(jax.random.key(0), (2, 3, 8, 8, 4))
    text = jax.random.normal(jax.random.key(1), (2, 8, 8))
    scalar = ours(x, jnp.array([40, 800]), text)
    per_frame = ours(x, jnp.array([[40] * 3, [800] * 3]), text)
    np.testing.assert_allclose(np.asarray(per_frame), np.asarray(scalar), rtol=0, atol=1e-6)
    other = ours(x, jnp.array([[40, 40, 900], [800] * 3]), text)
    assert not np.allclose(np.asarray(other[0]), np.asarray(scalar[0]), atol=1e-4)


def test_real_2b_config_coverage_without_allocating():
    """nnx.eval_shape of the port and a meta-device diffusers model map one to one over all 736 parameters."""
    cfg = CogVideoXConfig()
    with torch.device("meta"):
        ref = diffusers.CogVideoXTransformer3DModel(**cfg.to_dict())
    shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items() if k != "patch_embed.pos_embedding"}
    assert len(shapes) == 736
    _, _, abstract = model_abstract(cfg.to_dict())
    fake = {k: np.lib.stride_tricks.as_strided(np.zeros((), np.float32), s, [0] * len(s)) for k, s in shapes.items()}
    state = convert(fake, RULES, abstract)  # strict: raises on any unmapped / missing / mis-shaped key
    assert len(jax.tree.leaves(state)) == 736
    n = sum(int(np.prod(s)) for s in shapes.values())
    assert 1.6e9 < n < 1.8e9  # CogVideoX-2B: 1.69 B parameters


def _save_diffusers_folder(ref, folder, shards=1):
    """A diffusers-format folder: transformer/config.json + safetensors (sharded with an index json if shards > 1)."""
    from safetensors.numpy import save_file

    tdir = os.path.join(folder, "transformer")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "config.json"), "w") as f:
        json.dump({"_class_name": "CogVideoXTransformer3DModel", **dict(ref.config)}, f, default=list)
    sd = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    if shards == 1:
        save_file(sd, os.path.join(tdir, "diffusion_pytorch_model.safetensors"))
        return tdir
    keys = sorted(sd)
    weight_map = {}
    for s in range(shards):
        name = f"diffusion_pytorch_model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[s::shards]}
        save_file(part, os.path.join(tdir, name))
        weight_map.update({k: name for k in part})
    with open(os.path.join(tdir, "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return tdir


def test_convert_sharded_folder_save_and_load(tmp_path):
    ref = _reference(True)
    _save_diffusers_folder(ref, str(tmp_path / "src"), shards=3)
    dst = str(tmp_path / "dst")
    model, cfg = convert_folder(str(tmp_path / "src"), dst)
    assert cfg.use_rotary_positional_embeddings
    loaded, cfg2 = load(dst)
    assert cfg2 == cfg
    x = torch.randn(2, 2, 4, 8, 8)
    text = torch.randn(2, 8, 8)
    o, r = _run_both(ref, loaded, x, torch.tensor([5, 600]), text, True)
    assert np.abs(o - r).max() / np.abs(r).max() <= 1e-5


def test_bfloat16_policy(tmp_path):
    ref = _reference(False)
    _save_diffusers_folder(ref, str(tmp_path / "src"))
    model, _ = convert_folder(str(tmp_path / "src"), str(tmp_path / "dst"), dtype="bfloat16")
    leaves = jax.tree.leaves(nnx.state(model))
    assert {str(a.dtype) for a in leaves} == {"bfloat16"}
    loaded, _ = load(str(tmp_path / "dst"))
    assert {str(a.dtype) for a in jax.tree.leaves(nnx.state(loaded))} == {"bfloat16"}
    # bf16 weights compute in bf16 (no matmul promoted to float32 by the float32 latents), output back in float32
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 8, 8, 4)), jnp.float32)
    text = jnp.asarray(np.random.default_rng(1).normal(size=(1, 8, 8)), jnp.float32)
    t = jnp.array([500])
    jaxpr = jax.make_jaxpr(lambda x: loaded(x, t, text))(x)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert dots and {str(v.aval.dtype) for e in dots for v in e.invars} == {"bfloat16"}
    out = loaded(x, t, text)
    assert out.dtype == jnp.float32
    f32, _ = convert_folder(str(tmp_path / "src"))
    ref = f32(x, t, text)
    assert float(jnp.abs(out - ref).max() / jnp.abs(ref).max()) <= 5e-2  # bf16 rounding, not another function


def test_attention_implementation_is_chosen_and_scoped():
    """set_attention reaches every layer (static: cuDNN cannot compile on a CPU, XLA's equals the default);
    default_attention picks cuDNN only on a GPU with half-precision weights."""
    from syncos_jax.backbones.cogvideox import default_attention, set_attention

    model = _ours(_reference(False))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 8, 8, 4)), jnp.float32)
    text, t = jnp.ones((1, 8, 8)), jnp.array([500])
    default = model(x, t, text)
    assert jnp.array_equal(set_attention(model, "xla")(x, t, text), default)
    set_attention(model, "cudnn")
    assert {b.attn1.implementation for b in model.transformer_blocks} == {"cudnn"}
    if jax.default_backend() == "cpu":
        with pytest.raises(RuntimeError, match="cuDNN"):  # the setting reached the attention call
            model(x, t, text)
    with pytest.raises(ValueError, match="implementation must be one of"):
        set_attention(model, "flash")
    assert default_attention(jnp.bfloat16, "gpu") == "cudnn" and default_attention(jnp.float16, "gpu") == "cudnn"
    assert default_attention(jnp.float32, "gpu") is None and default_attention(jnp.bfloat16, "tpu") is None
    assert default_attention(jnp.bfloat16, "cpu") is None
    assert default_attention(jnp.bfloat16, "gpu", "7.0") is None and default_attention(jnp.bfloat16, "gpu", "9.0") == "cudnn"
    assert default_attention(jnp.bfloat16, "gpu", None) is None  # no CUDA compute capability (e.g. ROCm)
    assert default_attention(jnp.bfloat16, "gpu", "9.0", head_dim=12) is None


@pytest.mark.parametrize("case", ["extra_layer", "missing_tensor", "wrong_shape"])
def test_mismatched_checkpoints_raise_one_clear_error_and_write_nothing(tmp_path, case):
    ref = _reference(False)
    tdir = _save_diffusers_folder(ref, str(tmp_path / "src"))
    from safetensors.numpy import load_file, save_file

    path = os.path.join(tdir, "diffusion_pytorch_model.safetensors")
    sd = load_file(path)
    if case == "extra_layer":  # a checkpoint of a config with one layer more
        for k in [k for k in sd if k.startswith("transformer_blocks.1.")]:
            sd[k.replace("transformer_blocks.1.", "transformer_blocks.2.")] = sd[k]
        expect = r"unmapped source keys \(24\): \['transformer_blocks\.2\..* -> .*\(no such parameter\)"
    elif case == "missing_tensor":
        del sd["transformer_blocks.0.attn1.to_k.weight"]
        expect = r"missing target parameters \(1\): \['transformer_blocks\.0\.attn1\.to_k\.kernel'\]"
    else:
        sd["proj_out.bias"] = np.zeros(3, np.float32)
        expect = r"mis-shaped \(1\): \['proj_out\.bias \(3,\) -> proj_out\.bias \(16,\)'\]"
    save_file(sd, path)
    dst = tmp_path / "dst"
    with pytest.raises(ConversionError, match=expect):
        convert_folder(str(tmp_path / "src"), str(dst))
    assert not dst.exists() and sorted(os.listdir(tmp_path)) == ["src"]


def test_truncated_safetensors_raises_and_writes_nothing(tmp_path):
    tdir = _save_diffusers_folder(_reference(False), str(tmp_path / "src"))
    path = os.path.join(tdir, "diffusion_pytorch_model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated or not a safetensors file"):
        convert_folder(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()
    with pytest.raises(ConversionError, match="truncated"):
        read_safetensors(path)


def test_unsupported_configs_are_named():
    with pytest.raises(NotImplementedError, match="patch_size_t=2"):
        CogVideoXConfig(patch_size_t=2)
    with pytest.raises(ValueError, match=r"unknown CogVideoX config keys \['bogus'\]"):
        CogVideoXConfig.from_diffusers({"bogus": 1})


def test_syncos_convert_and_generate_end_to_end(tmp_path, capsys):
    """A tiny CogVideoX converted with `syncos convert`, then SynCoS through `syncos generate` with random
    text embeddings: writes the latents and says that no video was decoded."""
    from syncos_jax import cli
    from syncos_jax.prompts import join_prompt

    ref = _reference(False)
    _save_diffusers_folder(ref, str(tmp_path / "src"))
    dst = tmp_path / "dst"
    assert cli.main(["convert", "cogvideox", str(tmp_path / "src"), str(dst), "--no-progress"]) == 0
    assert "converted" in capsys.readouterr().out
    # converting again into the non-empty destination is refused
    assert cli.main(["convert", "cogvideox", str(tmp_path / "src"), str(dst), "--no-progress"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err

    scenario = tmp_path / "s.yaml"
    scenario.write_text("global_prompt: a cat\nlocal_prompts: [walks on grass, sleeps on a sofa]\n")
    texts = [""] + [join_prompt("a cat", p) for p in ("walks on grass", "sleeps on a sofa")]
    emb = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "emb.npz", texts=np.array(texts), embeddings=emb)
    out = tmp_path / "out"
    rc = cli.main(["generate", str(scenario), "--backbone", "cogvideox", "--weights", str(dst), "--text-embeddings",
                   str(tmp_path / "emb.npz"), "--frames", "6", "--steps", "3", "--set", "iters=2", "--set", "dynamic_cfg=true",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["latents.npy", "run.json"]
    lat = np.load(out / "latents.npy")
    assert lat.shape == (6, 8, 8, 4) and np.isfinite(lat).all()
    record = json.loads((out / "run.json").read_text())
    assert record["backbone"]["name"] == "cogvideox" and record["settings"]["num_chunks"] == 4
    assert record["settings"]["options"] == {"iters": 2, "dynamic_cfg": True}
    assert "no video was decoded" in record["note"] and "no video was decoded" in capsys.readouterr().out
    # a prompt without an embedding is named, and nothing is written
    scenario.write_text("global_prompt: a dog\nlocal_prompts: [runs]\n")
    rc = cli.main(["generate", str(scenario), "--backbone", "cogvideox", "--weights", str(dst), "--text-embeddings",
                   str(tmp_path / "emb.npz"), "--frames", "6", "--out", str(tmp_path / "o2")])
    assert rc == 2 and not (tmp_path / "o2").exists()
    assert "field 'local_prompts[0]': no text embedding for 'a dog runs'" in capsys.readouterr().err


def test_syncos_convert_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    from syncos_jax import cli

    tdir = _save_diffusers_folder(_reference(False), str(tmp_path / "src"))
    os.remove(os.path.join(tdir, "diffusion_pytorch_model.safetensors"))
    rc = cli.main(["convert", "cogvideox", str(tmp_path / "src"), str(tmp_path / "dst"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "holds 0 .safetensors files" in err
    assert not (tmp_path / "dst").exists()


def test_encode_t5_helper_with_a_tiny_local_t5(tmp_path):
    """experiments/encode_t5.py with a tiny random T5 and a word-level tokenizer saved locally."""
    import sys

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
    import encode_t5

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", "a", "cat", "walks", "on", "grass"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    folder = tmp_path / "t5"
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=8, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(folder)
    scenario = tmp_path / "s.yaml"
    scenario.write_text("global_prompt: a cat\nlocal_prompts: [walks on grass]\n")
    assert encode_t5.main([str(scenario), "--t5", str(folder), "--out", str(tmp_path / "e.npz"), "--max-length", "12"]) == 0
    from syncos_jax.backbones.cogvideox import load_text_embeddings

    emb = load_text_embeddings(str(tmp_path / "e.npz"))
    assert sorted(emb) == ["", "a cat walks on grass"]
    assert emb["a cat walks on grass"].shape == (12, 16)
    assert not np.allclose(emb[""], emb["a cat walks on grass"])


@pytest.mark.slow
def test_real_2b_config_parity_slow():
    """The real CogVideoX-2B config with random weights (about 7 GiB in diffusers), converted, on a 4×8×8
    latent with 226 text tokens: within 1e-4 relative of diffusers in float32."""
    import gc

    cfg = CogVideoXConfig()
    torch.manual_seed(0)
    ref = diffusers.CogVideoXTransformer3DModel(**cfg.to_dict()).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 16, 8, 8, generator=g)
    text = torch.randn(1, 226, 4096, generator=g)
    t = torch.tensor([500])
    with torch.no_grad():
        r = ref(x, text, t).sample.numpy()
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    _, graphdef, abstract = model_abstract(cfg.to_dict())
    state = convert(sd, RULES, abstract)
    del sd, ref
    gc.collect()
    state = jax.device_put(state)
    gc.collect()
    fwd = jax.jit(lambda s, x, t, c: nnx.merge(graphdef, s)(x, t, c))
    o = fwd(state, jnp.asarray(x.numpy().transpose(0, 1, 3, 4, 2)), jnp.asarray(t.numpy()), jnp.asarray(text.numpy()))
    o = np.asarray(o).transpose(0, 1, 4, 2, 3)
    rel = np.abs(o - r).max() / np.abs(r).max()
    print(f"real CogVideoX-2B config, 4x8x8 latent, 226 tokens: max|ours - diffusers| / max|diffusers| = {rel:.2e}")
    assert rel <= 1e-4
