"""``benchmarks/bench_gpu.py``: its tiny CPU path end to end, and its FLOP counter against XLA's cost analysis.

No time is asserted: the run's figures are checked for what they are made of (NFE, FLOPs, the
extrapolation's arithmetic), the FLOP counter against XLA's own count of every matmul the traced
forward executes (exact), and against XLA's whole-program count (which also counts elementwise ops).
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))

import bench_gpu as bg  # noqa: E402

from syncos_jax.backbones.cogvideox import CogVideoXConfig, model_abstract  # noqa: E402
from syncos_jax.chunking import ChunkLayout  # noqa: E402
from syncos_jax.samplers import syncos  # noqa: E402
from syncos_jax import schedules  # noqa: E402


def _forward_sds(cfg, batch, frames, h, w, text_len, per_frame):
    """The model's forward and abstract inputs (nothing allocated)."""
    _, graphdef, abstract = model_abstract(cfg.to_dict())
    x = jax.ShapeDtypeStruct((batch, frames, h, w, cfg.in_channels), jnp.float32)
    t = jax.ShapeDtypeStruct((batch, frames) if per_frame else (batch,), jnp.float32)
    text = jax.ShapeDtypeStruct((batch, text_len, cfg.text_embed_dim), jnp.float32)
    return (lambda s, x, t, c: nnx.merge(graphdef, s)(x, t, c)), (abstract, x, t, text)


def test_xla_matmul_oracle_is_two_m_n_k():
    """The oracle itself: XLA's cost of a matmul (and a batched one inside a nested jit, called twice) is 2·m·n·k."""
    a, b = jax.ShapeDtypeStruct((3, 5), jnp.float32), jax.ShapeDtypeStruct((5, 7), jnp.float32)
    assert bg.xla_matmul_flops(lambda a, b: a @ b, a, b) == 2 * 3 * 5 * 7
    inner = jax.jit(lambda u, v: jnp.einsum("bij,bjk->bik", u, v))
    u, v = jax.ShapeDtypeStruct((4, 3, 5), jnp.bfloat16), jax.ShapeDtypeStruct((4, 5, 6), jnp.bfloat16)
    assert bg.xla_matmul_flops(lambda u, v: inner(u, v) + inner(u, v), u, v) == 2 * (2 * 4 * 3 * 5 * 6)


TINY = bg.bench_size(True).cfg
OTHER = CogVideoXConfig(num_attention_heads=3, attention_head_dim=16, num_layers=1, text_embed_dim=24, time_embed_dim=40,
                        in_channels=8, out_channels=4)


@pytest.mark.parametrize("cfg,batch,frames,h,w,text_len,per_frame", [
    (TINY, 2, 5, 8, 12, 8, False),
    (TINY, 1, 3, 4, 6, 5, True),     # per-frame times: per-token adaLN rows
    (OTHER, 3, 2, 6, 4, 7, False),   # other widths, fewer output channels
])
def test_flops_counter_equals_xla_cost_of_every_matmul(cfg, batch, frames, h, w, text_len, per_frame):
    fn, args = _forward_sds(cfg, batch, frames, h, w, text_len, per_frame)
    ours = bg.cogvideox_flops(cfg, frames, h, w, text_len, batch, per_frame_time=per_frame)
    assert ours.total == bg.xla_matmul_flops(fn, *args)
    D, N = cfg.inner_dim, frames * (h // 2) * (w // 2)
    assert ours.attention == cfg.num_layers * 4 * batch * (N + text_len) ** 2 * D


def test_flops_rejects_bad_sizes():
    with pytest.raises(ValueError, match="h, w must be multiples of patch_size=2"):
        bg.cogvideox_flops(TINY, 5, 7, 12, 8, 2)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        bg.cogvideox_flops(TINY, 5, 8, 12, 8, 0)


@pytest.mark.parametrize("kind,peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H200", 989.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("TPU v4", 275.0), ("TPU v5 lite", 197.0), ("TPU v5", 459.0),
    ("TPU v5p", 459.0), ("TPU v6 lite", 918.0), ("cpu", None), ("NVIDIA GeForce RTX 4090", None),
])
def test_peak_table(kind, peak):
    assert bg.peak_tflops(kind) == peak


def test_attention_switch_is_scoped():
    original = jax.nn.dot_product_attention
    with bg.attention_implementation("xla"):
        patched = jax.nn.dot_product_attention
        assert patched.func is original and patched.keywords == {"implementation": "xla"}
    assert jax.nn.dot_product_attention is original
    with pytest.raises(RuntimeError), bg.attention_implementation("cudnn"):
        raise RuntimeError("inside")
    assert jax.nn.dot_product_attention is original
    assert bg.resolve_attention("auto", "gpu", jnp.bfloat16) == "cudnn"
    assert bg.resolve_attention("auto", "gpu", jnp.float32) == "xla"
    assert bg.resolve_attention("auto", "tpu", jnp.bfloat16) == "xla"
    assert bg.resolve_attention("cudnn", "cpu", jnp.float32) == "cudnn"
    with pytest.raises(ValueError, match="attention='flash'"):
        bg.resolve_attention("flash", "gpu", jnp.bfloat16)


def test_random_params_are_drawn_in_dtype():
    """Buckets of at most 3000 numbers (the 4096-number feed-forward kernels are buckets of their own); the tiny run uses one."""
    _, _, abstract = model_abstract(TINY.to_dict())
    params = bg.random_params(abstract, jax.random.key(0, impl="rbg"), jnp.bfloat16, bucket_elems=3000)
    kernels = {}
    for (path, var), (apath, avar) in zip(nnx.to_flat_state(params), nnx.to_flat_state(abstract)):
        a, name = np.asarray(var.get_value(), np.float32), str(path[-1])
        assert path == apath and var.get_value().shape == avar.shape and var.get_value().dtype == jnp.bfloat16, path
        if name == "scale":
            assert np.all(a == 1), path
        elif name == "bias":
            assert np.all(a == 0), path
        else:
            assert abs(a.std() * np.sqrt(np.prod(a.shape[:-1])) - 1) < 0.15 and abs(a.mean()) < 0.1, path
            kernels[".".join(map(str, path))] = a
    attn = "transformer_blocks.0.attn1"
    assert not np.array_equal(kernels[f"{attn}.to_q.kernel"], kernels[f"{attn}.to_k.kernel"])  # distinct draws


def test_extrapolation_arithmetic():
    e = bg.extrapolate(50, 10, 4.0, 0.5, 2700, 0.02, 22)
    assert e["total_s"] == 10 * 4.0 + 40 * 0.5 and e["plain_step_from"] == "measured"
    assert e["total_from_nfe_s"] == pytest.approx(2700 * 0.02)
    e = bg.extrapolate(50, 10, 4.0, None, 2700, 0.02, 22)  # no plain step measured: from its NFE
    assert e["plain_step_s"] == pytest.approx(22 * 0.02) and e["plain_step_from"].startswith("estimated")
    assert bg.extrapolate(50, 10, None, 0.5, 2700, 0.02, 22)["total_s"] is None


def test_tiny_cpu_run(tmp_path):
    """The tiny path end to end: forward and SynCoS figures are made of the right NFE and FLOPs."""
    path = tmp_path / "bench.json"
    report = bg.main(["--tiny", "--repeats", "1", "--steps", "1", "--plain-steps", "1", "--json", str(path)])
    with open(path) as f:
        saved = json.load(f)
    assert saved["tiny"] and saved["dtype"] == "bfloat16" and saved["attention"] == "xla"
    size = bg.bench_size(True)
    # FLOPs: the analytic count is XLA's count of the matmuls; XLA's whole-program count adds the elementwise ops
    # (LayerNorm, GELU, softmax, modulation, residual adds, bf16 casts), 22 % at this width (D = 32), 1.5 % at 2B.
    check = saved["flops_check"]
    analytic = bg.cogvideox_flops(size.cfg, size.frames, size.height, size.width, size.text_len, 2).total
    assert check["analytic"] == check["xla_matmuls"] == analytic and check["agree"]
    fwd = saved["forward"][0]
    assert fwd["batch"] == 2 and fwd["flops"] == analytic and fwd["finite"]
    assert analytic < fwd["xla_flops_compiled"] < 1.4 * analytic
    assert fwd["tflops_per_s"] == pytest.approx(analytic / fwd["median_s"] / 1e12)
    assert saved["peak_tflops"] is None and fwd["fraction_of_peak"] is None  # "unknown peak" on a CPU
    assert saved["device_peak_bytes"] is None and fwd["program_memory"]["total"] > 0
    # SynCoS: a 4× video of 5-frame chunks, stride 4 → N = 5 chunks, B = 4, guidance 6 (2 calls per chunk)
    s = saved["syncos"]
    layout = ChunkLayout(20, 5, 4)
    assert s["layout"]["num_chunks"] == layout.num_chunks == 5 and s["settings"]["batch_chunks"] == 4
    plain, stage2 = s["steps"]
    assert (plain["step"], plain["t"], plain["stage2"], plain["nfe"]) == (10, 799, False, 2 * 5)
    assert (stage2["step"], stage2["t"], stage2["stage2"], stage2["nfe"]) == (0, 999, True, 2 * 5 + 20 * 2 * 4)
    assert plain["finite"] and stage2["finite"]

    def call(b):
        return bg.cogvideox_flops(size.cfg, 5, 8, 12, 8, b).total

    assert plain["flops"] == call(10) and stage2["flops"] == call(10) + 20 * call(8)
    total_nfe = plain["nfe"] + stage2["nfe"]
    assert s["per_nfe_s"] == pytest.approx((plain["seconds"] + stage2["seconds"]) / total_nfe)
    e = s["extrapolated"]
    cfg = syncos.make_config(**bg.PAPER["options"])
    assert e["expected_nfe"] == syncos.expected_nfe(cfg, schedules.cogvideox_2b(50), layout) == 50 * 10 + 10 * 20 * 8
    assert (e["stage2_steps"], e["plain_steps"]) == (10, 40)
    assert e["total_s"] == pytest.approx(10 * stage2["seconds"] + 40 * plain["seconds"])
    assert e["total_from_nfe_s"] == pytest.approx(e["expected_nfe"] * s["per_nfe_s"])
    assert report["syncos"]["extrapolated"]["total_s"] == e["total_s"]


@pytest.mark.slow
def test_flops_counter_at_the_real_2b_size():
    """At 2B, 13×60×90, 226 tokens, batch 2 (traced, never compiled): the count is XLA's count of the
    matmuls up to XLA's float32 counters (measured 3.3e-8), and within 2 % below XLA's whole-program
    count (measured 1.5 %: elementwise ops)."""
    cfg = CogVideoXConfig()
    fn, args = _forward_sds(cfg, 2, 13, 60, 90, 226, False)
    ours = bg.cogvideox_flops(cfg, 13, 60, 90, 226, 2).total
    assert ours == pytest.approx(bg.xla_matmul_flops(fn, *args), rel=1e-6, abs=0)
    whole = jax.jit(fn).lower(*args).cost_analysis()["flops"]
    assert 0 < 1 - ours / whole < 0.02
