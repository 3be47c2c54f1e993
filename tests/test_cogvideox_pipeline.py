"""The pure-JAX CogVideoX pipeline end to end: `syncos convert cogvideox` of a diffusers folder with all
three parts (transformer, T5 text encoder + tokenizer, VAE), then `syncos generate --backbone cogvideox`
prompt → T5 → SynCoS → VAE → mp4, in a subprocess where `import torch` fails.

Tiny random weights made here with diffusers and transformers (the oracles); the parts fit together:
the T5's d_model is the transformer's text_embed_dim, the VAE's latent channels its in_channels, and
both compress time by 4 (9 sample frames ↔ 3 latent frames).
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
                   text_embed_dim=8, num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
                   max_text_seq_length=24, use_rotary_positional_embeddings=False)
T5 = dict(vocab_size=64, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_heads=2, relative_attention_num_buckets=8,
          relative_attention_max_distance=16, feed_forward_proj="gated-gelu")
VAE = dict(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 3,
           up_block_types=("CogVideoXUpBlock3D",) * 3, block_out_channels=(8, 8, 8), latent_channels=4,
           layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4, sample_height=16, sample_width=16)
CORPUS = ["a cat walks on the grass", "a cat sleeps on a red sofa", "the dog runs to the left", "a small blue ball rolls"]

# Runs its argv lists through syncos_jax.cli.main with torch, diffusers and transformers unimportable,
# and prints the exit codes and every attempt to import them.
NO_TORCH = """
import importlib.abc, json, sys
attempts = []
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "diffusers", "transformers"):
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
from syncos_jax import cli
codes = [cli.main(argv) for argv in json.loads(sys.argv[1])]
print("RESULT", json.dumps({"codes": codes, "attempts": attempts,
                            "loaded": sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)}))
"""


def _randomise(model, std):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)  # every parameter matters (diffusers zero-initialises some)
    return model.eval()


def _sentencepiece_tokenizer(folder):
    """A T5-style sentencepiece tokenizer (pad 0, </s> 1, <unk> 2) of 64 pieces, as transformers loads it."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 30), model_writer=model, vocab_size=64,
                                   hard_vocab_limit=False, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", character_coverage=1.0,
                                   minloglevel=2)
    os.makedirs(folder)
    with open(os.path.join(folder, "spiece.model"), "wb") as f:
        f.write(model.getvalue())
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "extra_ids": 0, "model_max_length": 226, "legacy": True}, f)


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    """A diffusers CogVideoX folder with tiny random parts: transformer/, text_encoder/, tokenizer/, vae/.
    Returns (folder, the three torch models)."""
    root = tmp_path_factory.mktemp("cogvideox_src")
    torch.manual_seed(0)
    transformer = _randomise(diffusers.CogVideoXTransformer3DModel(**TRANSFORMER), 0.2)
    transformer.save_pretrained(root / "transformer")
    text_encoder = _randomise(transformers.T5EncoderModel(transformers.T5Config(**T5)), 0.3)
    text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    _sentencepiece_tokenizer(str(root / "tokenizer"))
    vae = _randomise(diffusers.AutoencoderKLCogVideoX(**VAE), 0.2)
    vae.save_pretrained(root / "vae")
    return root, (transformer, text_encoder, vae)


def _run_without_torch(argvs, timeout=600):
    run = subprocess.run([sys.executable, "-c", NO_TORCH, json.dumps(argvs)], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1"})
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-2000:] + run.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):]), run


def test_convert_and_generate_without_torch(diffusers_folder, tmp_path):
    """convert (all three parts) then generate, torch unimportable: an mp4 of 9 frames whose pixels are
    diffusers' VAE decode of the saved latents, and prompts encoded as CogVideoX's pipeline encodes them."""
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline

    from syncos_jax.prompts import join_prompt

    src, (_, text_encoder, vae) = diffusers_folder
    dst, out, out_emb = tmp_path / "dst", tmp_path / "out", tmp_path / "out_emb"
    scenario = tmp_path / "s.yaml"
    long_event = "sleeps on a red sofa " + "and the dog runs to the left " * 4  # > 24 tokens: truncated
    scenario.write_text(f"global_prompt: a cat\nlocal_prompts: [walks on the grass, {long_event.strip()}]\n")
    sample = ["--frames", "3", "--latent-size", "4x4", "--steps", "3", "--set", "iters=2", "--sampler", "syncos",
              "--no-progress"]
    # the same run with precomputed embeddings: the oracle's (transformers' T5 through diffusers' pipeline function)
    texts = [""] + [join_prompt("a cat", p) for p in ("walks on the grass", long_event.strip())]
    pipe = type("Pipe", (), {})()
    pipe.tokenizer = transformers.AutoTokenizer.from_pretrained(src / "tokenizer", local_files_only=True)
    pipe.text_encoder, pipe._execution_device = text_encoder, torch.device("cpu")
    with torch.no_grad():
        emb = CogVideoXPipeline._get_t5_prompt_embeds(pipe, texts, max_sequence_length=TRANSFORMER["max_text_seq_length"],
                                                      device=torch.device("cpu"), dtype=torch.float32).numpy()
    np.savez(tmp_path / "emb.npz", texts=np.array(texts), embeddings=emb)

    result, run = _run_without_torch([
        ["convert", "cogvideox", str(src), str(dst), "--no-progress"],
        ["generate", str(scenario), "--backbone", "cogvideox", "--weights", str(dst), "--out", str(out), *sample],
        ["generate", str(scenario), "--backbone", "cogvideox", "--weights", str(dst), "--text-embeddings",
         str(tmp_path / "emb.npz"), "--out", str(out_emb), *sample],
    ])
    assert result["codes"] == [0, 0, 0], run.stderr[-3000:]
    assert result["attempts"] == [] and result["loaded"] == []  # torch was never even looked for
    assert "text encoder (2 layers) -> text_encoder/" in run.stdout and "VAE -> vae/" in run.stdout
    assert sorted(os.listdir(dst)) == ["config.json", "params", "text_encoder", "vae"]
    assert sorted(os.listdir(out)) == ["contact_sheet.png", "latents.npy", "run.json", "video.gif", "video.mp4"]
    assert os.path.getsize(out / "video.mp4") > 0
    record = json.loads((out / "run.json").read_text())
    assert record["backbone"]["name"] == "cogvideox" and "note" not in record
    assert record["backbone"]["truncated_prompts"] == [texts[2]]  # the T5 cut it to max_text_seq_length
    # precomputed embeddings are taken as they are (documented): nothing was encoded, nothing is listed
    assert "truncated_prompts" not in json.loads((out_emb / "run.json").read_text())["backbone"]

    # T5 wiring: the latents equal those sampled from the oracle's embeddings, up to float rounding
    lat, lat_emb = np.load(out / "latents.npy"), np.load(out_emb / "latents.npy")
    assert lat.shape == (3, 4, 4, 4) and np.isfinite(lat).all()
    assert np.abs(lat - lat_emb).max() <= 1e-4 * np.abs(lat_emb).max()

    # VAE wiring: the video's frames are diffusers' decode of the latents (scaling factor, clipping, layout)
    import imageio.v2 as imageio

    frames = np.stack(imageio.mimread(str(out / "video.gif")))[:, ::4, ::4, :3].astype(np.float32)  # the gif is 4× upscaled
    assert frames.shape == (9, 16, 16, 3)  # 3 latent frames → 9 frames; 4×4 latents → 16×16 pixels
    with torch.no_grad():
        z = torch.from_numpy(lat).permute(3, 0, 1, 2)[None] / vae.config.scaling_factor
        ref = vae.decode(z).sample[0].permute(1, 2, 3, 0).clamp(-1, 1).numpy()
    ref_u8 = np.round((ref + 1) * 127.5)
    assert np.abs(frames - ref_u8).max() <= 1.0  # the gif stores uint8: one level of rounding


def test_generate_checks_the_parts_before_sampling(diffusers_folder, tmp_path, capsys):
    """A transformer-only folder needs --text-embeddings (named); a --vae that is a diffusers folder, or whose
    latent channels differ from the transformer's, is named before sampling, and nothing is written."""
    from converters.cogvideox import convert_pipeline
    from syncos_jax import cli

    src, _ = diffusers_folder
    only = tmp_path / "only"
    assert cli.main(["convert", "cogvideox", str(src / "transformer"), str(only), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "has no text_encoder/ or vae/" in said and "--text-embeddings" in said
    assert sorted(os.listdir(only)) == ["config.json", "params"]
    scenario = tmp_path / "s.yaml"
    scenario.write_text("global_prompt: a cat\nlocal_prompts: [walks]\n")
    base = ["generate", str(scenario), "--backbone", "cogvideox", "--frames", "3", "--no-progress"]

    assert cli.main([*base, "--weights", str(only), "--out", str(tmp_path / "o1")]) == 2
    assert "--text-embeddings:" in capsys.readouterr().err and not (tmp_path / "o1").exists()

    full = tmp_path / "full"
    convert_pipeline(str(src), str(full))
    assert cli.main([*base, "--weights", str(full), "--vae", str(src / "vae"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "--vae:" in err and "convert it" in err and not (tmp_path / "o2").exists()

    other = tmp_path / "other_vae_src"
    torch.manual_seed(1)
    _randomise(diffusers.AutoencoderKLCogVideoX(**{**VAE, "latent_channels": 3}), 0.2).save_pretrained(other / "vae")
    from converters.cogvideox_vae import convert_folder

    convert_folder(str(other), str(tmp_path / "vae3"))
    assert cli.main([*base, "--weights", str(full), "--vae", str(tmp_path / "vae3"), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "--vae:" in err and "latent_channels 3 is not the transformer's in_channels 4" in err
    assert not (tmp_path / "o3").exists()


def test_convert_pipeline_writes_nothing_when_a_part_fails(diffusers_folder, tmp_path, capsys):
    """A bad VAE tensor (converted last) fails the whole conversion, in one line, and DST is not created;
    parts that do not fit together, or a text encoder without its tokenizer, fail before any tensor is read."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from syncos_jax import cli

    src, _ = diffusers_folder
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    path = bad / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    name = sorted(k for k in tensors if k.endswith("conv_in.conv.weight"))[0]
    tensors[name] = tensors[name][:1]
    save_file(tensors, str(path))
    rc = cli.main(["convert", "cogvideox", str(bad), str(tmp_path / "dst"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and name.replace(".weight", "") in err
    assert not (tmp_path / "dst").exists() and os.listdir(tmp_path) == ["bad"]

    from converters import cogvideox

    read = []
    original = cogvideox.read_safetensors
    cogvideox.read_safetensors = lambda folder: read.append(folder) or original(folder)
    try:
        config = json.loads((src / "vae" / "config.json").read_text())
        (bad / "vae" / "config.json").write_text(json.dumps({**config, "latent_channels": 3}))
        assert cli.main(["convert", "cogvideox", str(bad), str(tmp_path / "dst"), "--no-progress"]) == 2
        assert "latent_channels 3 is not the transformer's in_channels 4" in capsys.readouterr().err
        shutil.rmtree(bad / "tokenizer")
        assert cli.main(["convert", "cogvideox", str(bad), str(tmp_path / "dst"), "--no-progress"]) == 2
        assert "no T5 tokenizer" in capsys.readouterr().err
    finally:
        cogvideox.read_safetensors = original
    assert read == [] and os.listdir(tmp_path) == ["bad"]  # refused from the configs alone, nothing written


def test_a_damaged_converted_text_encoder_is_named_before_sampling(diffusers_folder, tmp_path, capsys):
    from converters.cogvideox import convert_pipeline
    from syncos_jax import cli

    src, _ = diffusers_folder
    dst = tmp_path / "dst"
    convert_pipeline(str(src), str(dst))
    weights = dst / "text_encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    scenario = tmp_path / "s.yaml"
    scenario.write_text("global_prompt: a cat\nlocal_prompts: [walks]\n")
    rc = cli.main(["generate", str(scenario), "--backbone", "cogvideox", "--weights", str(dst), "--frames", "3",
                   "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and err.startswith("error: --weights: its text encoder")
    assert "truncated or not a safetensors file" in err and not (tmp_path / "out").exists()
