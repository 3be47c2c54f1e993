"""T5 v1.1 encoder port: parity with transformers (float32, CPU), the tokenizer, CogVideoX's prompt
encoding, coverage of the real XXL config, strict conversion, and a torch-free library."""

import io
import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from converters.common import ConversionError  # noqa: E402
from converters.t5 import RULES, convert_folder, convert_tensors  # noqa: E402
from syncos_jax.backbones import t5  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two tiny v1.1 configs that differ in depth, heads, widths and bucket layout (inner dim ≠ d_model in
# both); sequences of 30 tokens pass max_distance so every kind of bucket is used.
TINY = {
    "a": dict(vocab_size=48, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=3, relative_attention_num_buckets=8,
              relative_attention_max_distance=20, feed_forward_proj="gated-gelu"),
    "b": dict(vocab_size=40, d_model=24, d_kv=8, d_ff=40, num_layers=3, num_heads=2, relative_attention_num_buckets=12,
              relative_attention_max_distance=16, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-5),
    "relu": dict(vocab_size=40, d_model=12, d_kv=6, d_ff=20, num_layers=2, num_heads=2, relative_attention_num_buckets=8,
                 relative_attention_max_distance=12, feed_forward_proj="relu"),
}

# text_encoder/config.json of THUDM/CogVideoX-2b (T5 v1.1 XXL, encoder only)
COGVIDEOX_TEXT_ENCODER_CONFIG = {
    "_name_or_path": "google/t5-v1_1-xxl", "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 10240,
    "d_kv": 64, "d_model": 4096, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1,
    "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True,
    "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 24, "num_heads": 64,
    "num_layers": 24, "output_past": True, "pad_token_id": 0, "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2", "use_cache": True, "vocab_size": 32128,
}

CORPUS = ["a cat walks on the grass", "the dog sleeps on a red sofa", "a small blue ball rolls to the left",
          "two squares move across the frame", "the camera pans slowly over a city at night",
          "Hello, world! It's 3 o'clock.", "naïve café résumé", "a circle grows and shrinks", "the sun sets over the sea"]

TEXTS = ["a cat walks on the grass", "", "  two   squares  move ", "Hello, world! It's 3 o'clock.", "naïve CAFÉ zebra",
         "a </s> b", "x<extra_id_0>y <pad>", "the dog " * 20, "a " * 300]


def _reference(name: str, seed: int = 0, std: float = 0.3, **over):
    torch.manual_seed(seed)
    ref = transformers.T5EncoderModel(transformers.T5Config(**{**TINY[name], **over})).eval()
    with torch.no_grad():  # make every path matter: random norms, a visible position bias
        for k, p in ref.named_parameters():
            if "layer_norm" in k:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, std)
    return ref


def _padded_ids(vocab: int, lengths, L: int, seed: int):
    """ids [B, L] with random tokens (3…vocab-1) then </s> (1) then padding (0), and the mask."""
    g = np.random.default_rng(seed)
    ids, mask = np.zeros((len(lengths), L), np.int64), np.zeros((len(lengths), L), np.int64)
    for i, n in enumerate(lengths):
        ids[i, : n - 1] = g.integers(3, vocab, n - 1)
        ids[i, n - 1] = 1
        mask[i, :n] = 1
    return ids, mask


def _save_sentencepiece_folder(folder, **config):
    """A T5-style sentencepiece tokenizer (pad 0, </s> 1, <unk> 2) trained on CORPUS, as transformers loads it."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 20), model_writer=model, vocab_size=64,
                                   hard_vocab_limit=False, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", character_coverage=1.0,
                                   minloglevel=2)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "spiece.model"), "wb") as f:
        f.write(model.getvalue())
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "extra_ids": 100, "model_max_length": 226, "legacy": True, **config}, f)
    return folder


@pytest.fixture(scope="module")
def spm_folder(tmp_path_factory):
    return _save_sentencepiece_folder(str(tmp_path_factory.mktemp("tok") / "spm"))


def _hf_tokens(folder, texts, max_length):
    """transformers' (ids, mask, truncated) of texts."""
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    enc = tok(texts, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True)
    truncated = [len(ids) > max_length for ids in tok(texts, add_special_tokens=True).input_ids]
    return np.array(enc.input_ids), np.array(enc.attention_mask), np.array(truncated)


# ---------------------------------------------------------------------------------------------


def test_relative_position_bucket_matches_transformers():
    rel = torch.arange(-700, 701)[None, :]
    for buckets, distance in [(32, 128), (8, 20), (12, 16), (16, 64), (32, 64), (64, 256)]:
        for bidirectional in (True, False):
            ref = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
                rel, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance).numpy()
            ours = t5.relative_position_bucket(rel.numpy(), bidirectional=bidirectional, num_buckets=buckets,
                                               max_distance=distance)
            np.testing.assert_array_equal(ours, ref, err_msg=f"{buckets} buckets, max distance {distance}")
            assert ours.dtype == np.int32 and ours.min() >= 0 and ours.max() == buckets - 1


@pytest.mark.parametrize("name,shards", [("a", "2KB"), ("b", None), ("relu", None)])
def test_parity_with_transformers_through_convert_folder(tmp_path, name, shards):
    """Padded batches through a folder written by save_pretrained (sharded with an index for "a"), with and
    without the attention mask: within 1e-5 of max |transformers| in float32."""
    ref = _reference(name)
    ref.save_pretrained(tmp_path / "src", safe_serialization=True, **({"max_shard_size": shards} if shards else {}))
    if shards:
        assert (tmp_path / "src" / "model.safetensors.index.json").exists()
    model, cfg = convert_folder(str(tmp_path / "src"))
    assert cfg == t5.T5Config(**TINY[name])
    ids, mask = _padded_ids(cfg.vocab_size, [30, 7, 1, 19], 30, seed=len(name))
    for use_mask in (True, False):
        with torch.no_grad():
            r = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask) if use_mask else None).last_hidden_state.numpy()
        o = np.asarray(model(jnp.asarray(ids, jnp.int32), jnp.asarray(mask) if use_mask else None))
        assert o.shape == r.shape == (4, 30, cfg.d_model) and o.dtype == np.float32
        rel = np.abs(o - r).max() / np.abs(r).max()
        assert rel <= 1e-5, f"{name}, mask={use_mask}: {rel:.2e}"
    # the mask matters (a check that the comparison above can fail)
    assert not np.allclose(np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))[1:],
                           np.asarray(model(jnp.asarray(ids), None))[1:], atol=1e-3)


def test_tokenizer_parity_sentencepiece_and_tokenizer_json(spm_folder, tmp_path):
    """spiece.model (sentencepiece) and tokenizer.json (tokenizers) give transformers' ids and mask, with the
    empty text, special tokens written in a text, and texts longer than max_length."""
    ours = t5.T5Tokenizer(spm_folder)
    assert ours.backend == "sentencepiece" and (ours.pad_id, ours.eos_id) == (0, 1)
    saved = str(tmp_path / "fast")
    transformers.AutoTokenizer.from_pretrained(spm_folder, local_files_only=True).save_pretrained(saved)
    fast = t5.T5Tokenizer(saved)
    assert fast.backend == "tokenizers"
    # tokenizer_config.json as transformers >= 4.34 writes it: the added tokens listed with their ids
    listed = {"0": "<pad>", "1": "</s>", "2": "<unk>", **{str(163 - i): f"<extra_id_{i}>" for i in range(100)}}
    listed_folder = _save_sentencepiece_folder(str(tmp_path / "listed"), added_tokens_decoder={
        i: {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
        for i, c in listed.items()})
    listed_tok = t5.T5Tokenizer(listed_folder)
    assert listed_tok._specials["<extra_id_0>"] == ours._specials["<extra_id_0>"] == 163
    for max_length in (16, 226):
        ids, mask, truncated = _hf_tokens(spm_folder, TEXTS, max_length)
        np.testing.assert_array_equal(_hf_tokens(listed_folder, TEXTS, max_length)[0], ids)
        np.testing.assert_array_equal(listed_tok(TEXTS, max_length).ids, ids)
        assert truncated.sum() == (3 if max_length == 16 else 1)
        for tok in (ours, fast):
            got = tok(TEXTS, max_length)
            np.testing.assert_array_equal(got.ids, ids, err_msg=f"{tok.backend}, max_length {max_length}")
            np.testing.assert_array_equal(got.mask, mask)
            np.testing.assert_array_equal(got.truncated, truncated)
            assert got.ids.dtype == np.int32 and got.mask.dtype == np.int32
    assert ids[1, 0] == 1 and mask[1].sum() == 1  # the empty text is </s> then padding
    assert mask[-1].all() and ids[-1, -1] == 1  # a truncated text keeps </s>


def test_encode_prompts_is_the_cogvideox_pipeline(tmp_path, spm_folder):
    """convert_folder on a diffusers-style root (text_encoder/ + tokenizer/), load, encode: equals diffusers'
    CogVideoXPipeline._get_t5_prompt_embeds (226 tokens, no attention mask) run with transformers."""
    pytest.importorskip("diffusers")
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline

    # the tokenizer's 64 pieces (plain text never yields the extra ids); the XXL bucket layout at 226 tokens;
    # smaller weights keep 226-token float32 rounding (transformers' own error vs float64: 2e-6) under the bound
    ref = _reference("b", std=0.15, vocab_size=64, relative_attention_num_buckets=32, relative_attention_max_distance=128)
    root = tmp_path / "cogvideox"
    ref.save_pretrained(root / "text_encoder", safe_serialization=True)
    _save_sentencepiece_folder(str(root / "tokenizer"))
    dst = tmp_path / "dst" / "text_encoder"
    convert_folder(str(root), str(dst))
    assert sorted(os.listdir(dst)) == ["config.json", "model.safetensors", "tokenizer"]
    assert sorted(os.listdir(dst / "tokenizer")) == ["spiece.model", "tokenizer_config.json"]
    assert json.loads((dst / "config.json").read_text())["model"] == "t5-encoder"
    convert_folder(str(root / "text_encoder"), str(tmp_path / "dst2"))  # the encoder folder itself: ../tokenizer is found
    assert sorted(os.listdir(tmp_path / "dst2" / "tokenizer")) == ["spiece.model", "tokenizer_config.json"]
    encoder = t5.load(str(dst))
    texts = ["a cat walks on the grass", "", "the dog sleeps on a red sofa " * 40]
    pipe = types.SimpleNamespace(tokenizer=transformers.AutoTokenizer.from_pretrained(root / "tokenizer"), text_encoder=ref,
                                 _execution_device=torch.device("cpu"))
    with torch.no_grad():
        r = CogVideoXPipeline._get_t5_prompt_embeds(pipe, texts, device=torch.device("cpu"), dtype=torch.float32).numpy()
    with pytest.warns(UserWarning, match="1 prompt.*truncated"):
        o = encoder.encode(texts)
    assert o.shape == r.shape == (3, 226, 24) and o.dtype == np.float32
    assert np.abs(o - r).max() / np.abs(r).max() <= 1e-5
    # the mask would change the result: the pipeline's choice is the one reproduced
    masked = encoder.encode(texts[:2], use_attention_mask=True)
    assert not np.allclose(masked[0], o[0], atol=1e-3)


def test_one_compile_per_batch_shape(tmp_path, spm_folder, monkeypatch):
    ref = _reference("b", vocab_size=64)
    ref.save_pretrained(tmp_path / "src", safe_serialization=True)
    convert_folder(str(tmp_path / "src"), str(tmp_path / "dst"), tokenizer=spm_folder)
    encoder = t5.load(str(tmp_path / "dst"))
    traces = []
    call = t5.T5Encoder.__call__
    monkeypatch.setattr(t5.T5Encoder, "__call__", lambda self, ids, mask=None: traces.append(ids.shape) or call(self, ids, mask))
    first = encoder.encode(["a cat", "a dog", "the sun", "a ball", "two squares"], batch_size=2)
    second = encoder.encode(["the sea", "a city", "red sofa", "", "a circle grows"], batch_size=2)
    assert traces == [(2, 226)]  # 5 prompts in 3 batches of 2, twice: traced once
    alone = encoder.encode(["a dog"])[0]  # another batch size: another program, the same numbers up to rounding
    assert np.abs(alone - first[1]).max() <= 1e-5 * np.abs(first[1]).max()
    assert not np.allclose(first, second)


def test_encode_prompts_checks_its_arguments(spm_folder):
    cfg = t5.T5Config(**{**TINY["relu"], "vocab_size": 8})
    model, tok = t5.T5Encoder(cfg, rngs=nnx.Rngs(0)), t5.T5Tokenizer(spm_folder)
    with pytest.raises(ValueError, match="vocab_size 8: tokenizer and encoder do not belong together"):
        t5.encode_prompts(["a cat walks"], model, tok)
    with pytest.raises(ValueError, match="got one string"):
        t5.encode_prompts("a cat", model, tok)
    with pytest.raises(ValueError, match="at least one prompt"):
        t5.encode_prompts([], model, tok)


def test_bfloat16_policy(tmp_path, spm_folder):
    """bfloat16 weights (converted, saved, loaded) keep their dtype and are as accurate as transformers run in
    bfloat16: both against transformers in float32 with the same bfloat16-rounded weights."""
    ref = _reference("a", std=0.15)
    ref.save_pretrained(tmp_path / "src", safe_serialization=True)
    model, _ = convert_folder(str(tmp_path / "src"), str(tmp_path / "dst"), dtype="bfloat16", tokenizer=spm_folder)
    assert {str(a.dtype) for a in jax.tree.leaves(nnx.state(model))} == {"bfloat16"}
    encoder = t5.load(str(tmp_path / "dst"))
    assert {str(a.dtype) for a in jax.tree.leaves(nnx.state(encoder.model))} == {"bfloat16"}
    ids, _ = _padded_ids(48, [12, 5], 12, seed=3)
    o = np.asarray(encoder.model(jnp.asarray(ids)))
    assert o.dtype == np.float32
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.to(torch.bfloat16).float())
        r = ref(torch.from_numpy(ids)).last_hidden_state.numpy()
        r_bf16 = ref.to(torch.bfloat16)(torch.from_numpy(ids)).last_hidden_state.float().numpy()
    scale = np.abs(r).max()
    ours, theirs = np.abs(o - r).max() / scale, np.abs(r_bf16 - r).max() / scale
    assert ours <= 2e-2 and ours <= 1.5 * theirs, (ours, theirs)


def test_real_xxl_config_coverage_without_allocating():
    """The CogVideoX text encoder's config and a meta-device transformers model map key by key and shape by
    shape onto nnx.eval_shape of the port: all 220 tensors (the tied embedding alias included), 4.76 B parameters."""
    cfg = t5.T5Config.from_hf_dict(COGVIDEOX_TEXT_ENCODER_CONFIG)
    assert cfg == t5.COGVIDEOX_T5
    with torch.device("meta"):
        ref = transformers.T5EncoderModel(transformers.T5Config(**COGVIDEOX_TEXT_ENCODER_CONFIG))
    shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert len(shapes) == 220
    _, _, abstract = t5.model_abstract(cfg)
    zero = np.zeros((), np.float32)
    fake = {k: np.lib.stride_tricks.as_strided(zero, s, [0] * len(s)) for k, s in shapes.items()}
    fake["encoder.embed_tokens.weight"] = fake["shared.weight"]  # tied: the same table
    state = convert_tensors(fake, abstract)  # strict: raises on any unmapped / missing / mis-shaped key
    leaves = jax.tree.leaves(state)
    assert len(leaves) == 219
    n = sum(int(np.prod(s)) for k, s in shapes.items() if k != "encoder.embed_tokens.weight")
    assert n == sum(a.size for a in leaves) == 4_762_310_656
    flat = {".".join(map(str, p)): v for p, v in nnx.to_flat_state(abstract)}
    assert flat["blocks.23.ff.wi_1.kernel"].shape == (4096, 10240) and flat["blocks.0.attention.o.kernel"].shape == (4096, 4096)
    assert flat["relative_attention_bias.embedding"].shape == (32, 64)


@pytest.mark.parametrize("case", ["extra", "missing", "misshaped", "tied_differs"])
def test_mismatched_checkpoints_raise_one_error_and_write_nothing(tmp_path, spm_folder, case):
    from safetensors.numpy import load_file, save_file

    _reference("a").save_pretrained(tmp_path / "src", safe_serialization=True)
    path = str(tmp_path / "src" / "model.safetensors")
    sd = load_file(path)
    if case == "extra":  # a second bias table: transformers keeps one, in block 0
        sd["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"] = sd[
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        expect = r"unmapped source keys \(1\): \['encoder\.block\.1\.layer\.0\.SelfAttention\.relative_attention_bias\.weight"
    elif case == "missing":
        del sd["encoder.block.1.layer.1.DenseReluDense.wi_1.weight"]
        expect = r"missing target parameters \(1\): \['blocks\.1\.ff\.wi_1\.kernel'\]"
    elif case == "misshaped":
        sd["encoder.final_layer_norm.weight"] = np.ones(15, np.float32)
        expect = r"mis-shaped \(1\): \['encoder\.final_layer_norm\.weight \(15,\) -> final_norm\.scale \(16,\)'\]"
    else:
        sd["encoder.embed_tokens.weight"] = sd["shared.weight"] + 1.0
        expect = r"tied duplicate differs: encoder\.embed_tokens\.weight \(48, 16\) float32 is not equal to shared\.weight"
    save_file(sd, path)
    dst = tmp_path / "dst"
    with pytest.raises(ConversionError, match=expect) as info:
        convert_folder(str(tmp_path / "src"), str(dst), tokenizer=spm_folder)
    assert str(info.value).count("ConversionError") == 0
    assert not dst.exists() and sorted(os.listdir(tmp_path)) == ["src"]


def test_tied_alias_alone_or_equal_is_accepted():
    ref = _reference("relu")
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}  # holds shared.weight and the alias, equal
    _, graphdef, abstract = t5.model_abstract(t5.T5Config(**TINY["relu"]))
    both = nnx.merge(graphdef, convert_tensors(sd, abstract))
    alias_only = {k: v for k, v in sd.items() if k != "shared.weight"}
    only = nnx.merge(graphdef, convert_tensors(alias_only, abstract))
    np.testing.assert_array_equal(only.shared.embedding[...], sd["shared.weight"])
    np.testing.assert_array_equal(both.shared.embedding[...], sd["shared.weight"])
    assert "encoder.embed_tokens.weight" in sd and len(alias_only) == len(sd) - 1


def test_configs_are_checked():
    with pytest.raises(ValueError, match=r"feed_forward_proj='gated-swish'.*activation 'swish' is not supported"):
        t5.T5Config(feed_forward_proj="gated-swish")
    with pytest.raises(ValueError, match=r"model_type='umt5' is not supported"):
        t5.T5Config.from_hf_dict({"model_type": "umt5"})
    with pytest.raises(ValueError, match="is_gated_act=False contradicts feed_forward_proj='gated-gelu'"):
        t5.T5Config.from_hf_dict({"feed_forward_proj": "gated-gelu", "is_gated_act": False})
    with pytest.raises(ValueError, match="T5Config.num_heads must be a positive int, got 0"):
        t5.T5Config.from_hf_dict({"num_heads": 0})
    assert t5.T5Config.from_hf_dict({"num_decoder_layers": 3, "decoder_start_token_id": 0}) == t5.T5Config()
    assert t5.T5Config(feed_forward_proj="gated-gelu").activation == "gelu_new"
    assert t5.T5Config(feed_forward_proj="gelu").activation == "gelu"


def test_convert_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no text_encoder/config.json"):
        convert_folder(str(tmp_path))
    _reference("a").save_pretrained(tmp_path / "enc", safe_serialization=True)
    with pytest.raises(FileNotFoundError, match="no T5 tokenizer"):
        convert_folder(str(tmp_path / "enc"), str(tmp_path / "dst"))
    cfg = json.loads((tmp_path / "enc" / "config.json").read_text())
    (tmp_path / "enc" / "config.json").write_text(json.dumps({**cfg, "feed_forward_proj": "gated-foo"}))
    with pytest.raises(ConversionError, match=r"config\.json.*'foo' is not supported"):
        convert_folder(str(tmp_path / "enc"))
    assert not (tmp_path / "dst").exists()


def test_library_never_imports_torch_transformers_or_tokenizer_packages():
    code = ("import sys; import syncos_jax.backbones.t5, converters.t5; "
            "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'sentencepiece', 'tokenizers') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_rules_cover_each_target_kind():
    """Every rule is used by a tiny gated and a tiny plain config (no dead rules)."""
    import re

    used = set()
    for name in ("a", "relu"):
        for k in _reference(name).state_dict():
            used |= {r.pattern for r in RULES if re.fullmatch(r.pattern, k)}
    assert used == {r.pattern for r in RULES}


@pytest.mark.slow
def test_xxl_widths_parity_slow():
    """The CogVideoX T5 v1.1 XXL config cut to 2 of its 24 blocks (0.52 B random parameters, about 2 GiB per
    side in float32), two prompts of 226 tokens: within 1e-5 relative of transformers, with and without the mask."""
    import gc

    config = {**COGVIDEOX_TEXT_ENCODER_CONFIG, "num_layers": 2}
    torch.manual_seed(0)
    ref = transformers.T5EncoderModel(transformers.T5Config(**config)).eval()
    ids, mask = _padded_ids(32128, [226, 37], 226, seed=0)
    with torch.no_grad():
        refs = [ref(torch.from_numpy(ids), attention_mask=m).last_hidden_state.numpy() for m in (torch.from_numpy(mask), None)]
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    _, graphdef, abstract = t5.model_abstract(config)
    state = jax.device_put(convert_tensors(sd, abstract))
    del sd, ref
    gc.collect()
    for r, m in zip(refs, (jnp.asarray(mask), None)):
        o = np.asarray(t5._forward(graphdef, state, jnp.asarray(ids, jnp.int32), m))
        rel = np.abs(o - r).max() / np.abs(r).max()
        print(f"XXL widths, 2 blocks, 226 tokens, mask={m is not None}: max|ours - transformers| / max|transformers| = {rel:.2e}")
        assert rel <= 1e-5
