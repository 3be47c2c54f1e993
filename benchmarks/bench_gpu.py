"""CogVideoX-2B on one accelerator: a forward and a short SynCoS run at the paper's settings, random bf16 weights.

    python benchmarks/bench_gpu.py                         # GPU/TPU: the real 2B size (13×60×90 latents, 226 text tokens)
    python benchmarks/bench_gpu.py --steps 1 --plain-steps 2 --batches 2 8 22 --json bench_gpu.json
    python benchmarks/bench_gpu.py --tiny                  # a tiny config in seconds (the default with only a CPU)

**Measured.** (1) One jitted forward of ``CogVideoXTransformer`` per ``--batches`` size (default 2:
the classifier-free-guidance pair of one chunk, i.e. 2 NFE; SynCoS itself sends ``2N = 22`` chunks per
stage-1 call and ``2B = 8`` per stage-2 iteration: ``--batches 2 8 22`` times those too): compile time
(reported apart), then the median of ``--repeats`` calls after a warm-up call, each ended by
``block_until_ready``. (2) SynCoS steps of the paper's run (CogVideoX-2B grid, 50 DDIM steps, a 4×
video of ``4·13 = 52`` latent frames, stride 4 → N = 11 chunks, ``t_min = 800``, 20 AdamW iterations of
``lr = 0.5`` on ``B = 4`` chunks, guidance 6): ``--steps`` steps from the first grid step (above
``t_min``: stage 2 runs) and ``--plain-steps`` steps from the first grid step at or below ``t_min``
(stage 2 skipped), each one call of the compiled ``step``, after one warm-up call.

**Extrapolated.** The full 50-step run: (steps above ``t_min``) × (median stage-2 step) + (the others)
× (median plain step); and, as a cross-check, the run's closed-form NFE × the time per NFE of the
measured steps. Nothing of the full run is executed.

**Counted.** FLOPs are counted analytically (:func:`cogvideox_flops`: ``2·m·n·k`` for every matmul —
patch and text embedding, time MLP, adaLN linears, Q/K/V/out projections, ``QKᵀ`` and ``AV`` over the
joint ``[text; video]`` sequence, feed-forward, output projection). TFLOP/s = those FLOPs / the
median time; the fraction is of the device's approximate dense bf16 peak (:data:`PEAK_BF16_TFLOPS`,
``--peak-tflops`` overrides). The count is cross-checked against XLA: the sum of XLA's cost analysis
of every ``dot_general`` the traced forward executes (equal, up to XLA's float32 counters) and XLA's cost analysis of the
whole compiled forward (a little more: XLA also counts every elementwise op — LayerNorm, GELU,
softmax, modulation, residual adds, casts — as FLOPs; on GPU it counts a cuDNN attention custom call
as none). The SynCoS FLOPs count the backbone calls only (chunk fusion and the CSD kernel are < 0.1 %).

Precision: weights are drawn on the device directly in ``--dtype`` (no float32 copy); the sampler keeps
its latents in float32 and each backbone call casts its inputs to ``--dtype`` and its output back
(:func:`compute_dtype_def`). Attention: ``jax.nn.dot_product_attention`` defaults to the XLA
implementation, which materialises the ``S×S`` logits (S = 17 776 tokens: 76 GB in float32 per CFG
pair); ``--attention auto`` uses cuDNN's flash attention on a GPU in bf16/fp16
(:func:`attention_implementation`). Peak memory is ``memory_stats()['peak_bytes_in_use']`` (the
process's peak so far, GPU/TPU; ``n/a`` on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend import core as jex_core

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cogvideox import _median  # noqa: E402  (the sibling benchmark's median)

from syncos_jax import schedules as S  # noqa: E402
from syncos_jax.backbones.cogvideox import CogVideoXConfig, default_attention, model_abstract  # noqa: E402
from syncos_jax.backbones.protocol import DenoiserDef  # noqa: E402
from syncos_jax.chunking import ChunkLayout  # noqa: E402
from syncos_jax.guidance import calls_per_chunk  # noqa: E402
from syncos_jax.prompts import Conditioning  # noqa: E402
from syncos_jax.samplers import syncos  # noqa: E402
from syncos_jax.samplers.base import count_above, rebuild  # noqa: E402

__all__ = ["BenchSize", "CogVideoXFlops", "PAPER", "PEAK_BF16_TFLOPS", "attention_implementation", "bench_size",
           "cogvideox_flops", "compute_dtype_def", "device_peak_bytes", "extrapolate", "jaxpr_matmuls", "main",
           "peak_tflops", "random_params", "resolve_attention", "syncos_step_flops", "xla_matmul_flops"]

# Approximate dense (no sparsity) bf16 peaks in TFLOP/s, from the vendors' data sheets; first match of
# the pattern in ``device.device_kind`` (lower case) wins, so the more specific patterns come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h200", 989.0),        # H200 SXM: the H100 SXM's compute
    ("h100 pcie", 756.0),
    ("h100", 989.0),        # H100 SXM
    ("a100", 312.0),
    ("tpu v6 lite", 918.0), ("tpu v6e", 918.0),
    ("tpu v5 lite", 197.0), ("tpu v5e", 197.0),
    ("tpu v5p", 459.0), ("tpu v5", 459.0),
    ("tpu v4", 275.0),
)

# The paper's CogVideoX-2B run (App. B, Table 4; ALGORITHM.md §4): 50 DDIM steps, stride 4, a 4× video.
PAPER = {"num_steps": 50, "stride": 4, "video_chunks": 4,
         "options": {"t_min": 800, "iters": 20, "lr": 0.5, "guidance_scale": 6.0, "weight_decay": 0.0,
                     "decay_iter": 20, "decay_rate": 0.9, "eta": 0.0}}

DTYPES = {"bf16": jnp.bfloat16, "bfloat16": jnp.bfloat16, "fp32": jnp.float32, "float32": jnp.float32}


# ---------------------------------------------------------------------------------------------
# Sizes, FLOPs, peaks
# ---------------------------------------------------------------------------------------------


class BenchSize(NamedTuple):
    """What is benchmarked: the model config, one chunk's latent ``frames × height × width`` and the text length."""

    cfg: CogVideoXConfig
    frames: int
    height: int
    width: int
    text_len: int


def bench_size(tiny: bool) -> BenchSize:
    """The real CogVideoX-2B (config defaults; 13×60×90 latents, 226 tokens), or a tiny one that runs in seconds on a CPU."""
    if not tiny:
        return BenchSize(CogVideoXConfig(), 13, 60, 90, 226)
    cfg = CogVideoXConfig(num_attention_heads=2, attention_head_dim=16, num_layers=1, text_embed_dim=32, time_embed_dim=16,
                          sample_frames=17, sample_height=8, sample_width=12, max_text_seq_length=8)
    return BenchSize(cfg, 5, 8, 12, 8)


class CogVideoXFlops(NamedTuple):
    """Matmul FLOPs (``2·m·n·k`` each) of one CogVideoX forward, by part; :attr:`total` sums them."""

    patch_embed: int
    text_proj: int
    time_embed: int
    adaln: int
    qkv: int
    attention: int
    attn_out: int
    ffn: int
    proj_out: int

    @property
    def total(self) -> int:
        """All the forward's matmul FLOPs."""
        return int(sum(self))


def cogvideox_flops(cfg: CogVideoXConfig, frames_latent: int, h: int, w: int, text_len: int, batch: int, *,
                    per_frame_time: bool = False) -> CogVideoXFlops:
    """Returns the matmul FLOPs of ``CogVideoXTransformer(x, t, text)`` for ``x: [batch, frames_latent, h, w, C]``.

    ``N = frames·(h/p)·(w/p)`` video tokens, ``S = N + text_len``, ``D`` the inner width, ``Dt`` the
    time-embedding width. Per forward: patch embedding ``2BN(p²C)D``, text projection ``2BL·D_text·D``,
    time MLP ``2R(D·Dt + Dt²)``, and per block Q/K/V ``3·2BSD²``, ``QKᵀ`` and ``AV`` ``2·2BS²D``, the
    output projection ``2BSD²``, the feed-forward ``2·2BS·D·4D``, and two adaLN linears ``Dt → 6D`` each
    applied to the video rows ``Rv`` and the text rows ``B``; the final adaLN ``Dt → 2D`` on ``Rv`` rows;
    the output projection ``2BN·D·p²C_out``. With one time per chunk ``R = Rv = B``; with per-frame times
    (``t: [B, F]``) ``R = B·F`` and ``Rv = B·N`` (the model modulates every video token with its frame's
    embedding). Elementwise ops are not counted (XLA's cost analysis counts them too; see the module doc).
    """
    c = cfg
    for name, v in (("frames_latent", frames_latent), ("h", h), ("w", w), ("text_len", text_len), ("batch", batch)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    p, D, Dt, B, L = c.patch_size, c.inner_dim, c.time_embed_dim, batch, text_len
    if h % p or w % p:
        raise ValueError(f"h, w must be multiples of patch_size={p}, got h={h}, w={w}")
    N = frames_latent * (h // p) * (w // p)
    Sq = N + L
    rows_t, rows_v = (B * frames_latent, B * N) if per_frame_time else (B, B)
    n = c.num_layers
    return CogVideoXFlops(
        patch_embed=2 * B * N * p * p * c.in_channels * D,
        text_proj=2 * B * L * c.text_embed_dim * D,
        time_embed=2 * rows_t * (D * Dt + Dt * Dt),
        adaln=n * 2 * (2 * rows_v * Dt * 6 * D + 2 * B * Dt * 6 * D) + 2 * rows_v * Dt * 2 * D,
        qkv=n * 3 * 2 * B * Sq * D * D,
        attention=n * 2 * 2 * B * Sq * Sq * D,
        attn_out=n * 2 * B * Sq * D * D,
        ffn=n * 2 * 2 * B * Sq * D * 4 * D,
        proj_out=2 * B * N * D * p * p * c.output_channels,
    )


def syncos_step_flops(size: BenchSize, layout: ChunkLayout, cfg: syncos.SynCoSConfig, stage2: bool) -> int:
    """Backbone FLOPs of one SynCoS step: the stage-1 call on ``N·c`` chunks, plus ``iters`` calls on
    ``B·c`` chunks when stage 2 runs (``c = 2`` with guidance)."""
    c = calls_per_chunk(cfg.guidance_scale)

    def call(batch):
        return cogvideox_flops(size.cfg, size.frames, size.height, size.width, size.text_len, batch).total

    total = call(layout.num_chunks * c) if 1 in cfg.stages else 0
    if stage2:
        total += cfg.iters * call(syncos.batch_chunks(cfg, layout) * c)
    return total


def peak_tflops(device_kind: str) -> Optional[float]:
    """The approximate dense bf16 peak (TFLOP/s) of a ``device_kind`` from :data:`PEAK_BF16_TFLOPS`, or ``None``."""
    kind = device_kind.lower()
    for pattern, value in PEAK_BF16_TFLOPS:
        if pattern in kind:
            return value
    return None


def device_peak_bytes(device=None) -> Optional[int]:
    """``memory_stats()['peak_bytes_in_use']`` of ``device`` (default: the first), or ``None`` where not reported (CPU)."""
    device = device or jax.devices()[0]
    stats = getattr(device, "memory_stats", lambda: None)()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


# ---------------------------------------------------------------------------------------------
# XLA's own count
# ---------------------------------------------------------------------------------------------


def _sub_jaxprs(value):
    items = value if isinstance(value, (list, tuple)) else (value,)
    for item in items:
        if isinstance(item, jex_core.ClosedJaxpr):
            yield item.jaxpr
        elif isinstance(item, jex_core.Jaxpr):
            yield item


def jaxpr_matmuls(fn, *args) -> list:
    """Every ``dot_general`` that ``fn(*args)`` executes, as ``(lhs aval, rhs aval, dimension_numbers, preferred dtype)``.

    Walks the traced jaxpr into every sub-jaxpr (``pjit``, ``custom_jvp``, loops), once per
    occurrence, so a function called twice counts twice. Nothing is compiled or allocated
    (``args`` may be ``jax.ShapeDtypeStruct``).
    """
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                lhs, rhs = (v.aval for v in eqn.invars)
                found.append((lhs, rhs, eqn.params["dimension_numbers"], eqn.params.get("preferred_element_type")))
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def xla_matmul_flops(fn, *args) -> int:
    """XLA's cost analysis (``flops``) of each ``dot_general`` in ``fn(*args)`` (:func:`jaxpr_matmuls`), summed.

    Each distinct dot is lowered alone and costed by XLA (``Lowered.cost_analysis``), so this is
    XLA's count of exactly the matmuls the program runs, free of the elementwise ops that XLA's
    whole-program count adds. XLA keeps its counters in float32: a dot's count is exact below
    ``2**24`` FLOPs and within a relative ``2**-24`` above (at the 2B size the sum is off by ~3e-8).
    """
    counts: dict = {}
    for lhs, rhs, dims, pref in jaxpr_matmuls(fn, *args):
        key = (lhs.shape, str(lhs.dtype), rhs.shape, str(rhs.dtype), str(dims), str(pref))
        if key not in counts:
            one = jax.jit(lambda a, b, d=dims, pt=pref: jax.lax.dot_general(a, b, d, preferred_element_type=pt))
            lowered = one.lower(jax.ShapeDtypeStruct(lhs.shape, lhs.dtype), jax.ShapeDtypeStruct(rhs.shape, rhs.dtype))
            counts[key] = [int(lowered.cost_analysis()["flops"]), 0]
        counts[key][1] += 1
    return int(sum(f * n for f, n in counts.values()))


def program_memory(compiled) -> Optional[dict]:
    """XLA's static memory plan of a compiled program (``memory_analysis``): argument, output, temporary and
    total bytes (aliased outputs counted once), or ``None`` where the backend does not report it."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    out = {k: int(getattr(m, f"{k}_size_in_bytes", 0)) for k in ("argument", "output", "temp", "alias")}
    out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def _xla_flops(compiled) -> Optional[float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


# ---------------------------------------------------------------------------------------------
# Model, weights, attention
# ---------------------------------------------------------------------------------------------


def resolve_attention(choice: str, platform: str, dtype) -> str:
    """``xla`` or ``cudnn`` for ``--attention choice``: ``auto`` is cuDNN's flash attention on a GPU in bf16/fp16, else XLA."""
    if choice not in ("auto", "xla", "cudnn"):
        raise ValueError(f"attention={choice!r}: expected auto, xla or cudnn")
    if choice != "auto":
        return choice
    return default_attention(dtype, platform) or "xla"


@contextlib.contextmanager
def attention_implementation(impl: str):
    """Within the block, ``jax.nn.dot_product_attention`` uses ``implementation=impl`` (``xla`` or ``cudnn``).

    The CogVideoX port calls ``jax.nn.dot_product_attention(q, k, v)``, whose default (jax 0.10) is
    the XLA implementation, which materialises the ``S×S`` logits. This benchmark-only switch holds
    while a program is traced (lowered); the compiled program keeps it. The original is restored on exit.
    """
    if impl not in ("xla", "cudnn"):
        raise ValueError(f"impl={impl!r}: expected xla or cudnn")
    original = jax.nn.dot_product_attention
    jax.nn.dot_product_attention = functools.partial(original, implementation=impl)
    try:
        yield
    finally:
        jax.nn.dot_product_attention = original


def random_params(abstract, key: jax.Array, dtype, *, bucket_elems: int = 2**27) -> Any:
    """A params ``nnx.State`` shaped like ``abstract`` (from :func:`model_abstract`), drawn on the device in ``dtype``.

    Kernels ``N(0, 1/fan_in)``, biases 0, LayerNorm scales 1 (activations stay O(1), so the forward is
    finite in bf16). One jitted program; the kernels are packed into buckets of at most
    ``bucket_elems`` numbers (a larger kernel is a bucket of its own), each one random draw directly in
    ``dtype``: few draws to compile, and the scratch is a bucket per draw (256 MiB in bf16), never a
    float32 copy of the model.
    """
    flat = list(nnx.to_flat_state(abstract))
    buckets: list = [[]]
    used = 0
    for i, (path, var) in enumerate(flat):
        if str(path[-1]) != "kernel":
            continue
        size = int(np.prod(var.shape))
        if buckets[-1] and used + size > bucket_elems:
            buckets.append([])
            used = 0
        buckets[-1].append(i)
        used += size

    @jax.jit
    def draw(key):
        out: list = [None] * len(flat)
        for b, members in enumerate(buckets):
            shapes = [tuple(flat[i][1].shape) for i in members]
            z = jax.random.normal(jax.random.fold_in(key, b), (sum(int(np.prod(s)) for s in shapes),), dtype)
            offset = 0
            for i, shape in zip(members, shapes):
                n = int(np.prod(shape))
                out[i] = z[offset:offset + n].reshape(shape) * jnp.asarray(int(np.prod(shape[:-1])) ** -0.5, dtype)
                offset += n
        for i, (path, var) in enumerate(flat):
            if out[i] is None:
                out[i] = (jnp.ones if str(path[-1]) == "scale" else jnp.zeros)(tuple(var.shape), dtype)
        return out

    arrays = draw(key)
    return nnx.from_flat_state([(path, var.replace(a)) for (path, var), a in zip(flat, arrays)])


def _apply_in(graphdef, dtype, params, x, t, cond):
    out = nnx.merge(graphdef, params)(x.astype(dtype), t, jnp.asarray(cond).astype(dtype))
    return out.astype(x.dtype)


def compute_dtype_def(graphdef, dtype, frames_per_chunk: int) -> DenoiserDef:
    """The CogVideoX denoiser computing in ``dtype``: inputs (latents, text) cast to it, the output cast back to ``x``'s dtype.

    (``cogvideox_denoiser`` feeds float32 latents to bf16 weights, and flax then promotes every
    matmul to float32.)
    """
    return DenoiserDef(prediction_type="v_prediction", frames_per_chunk=frames_per_chunk, per_frame_timesteps=True,
                       fn=functools.partial(_apply_in, graphdef, dtype))


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(msg, flush=True)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def _rate(flops: float, seconds: float, peak: Optional[float]) -> dict:
    tflops = flops / seconds / 1e12 if seconds > 0 else float("nan")
    return {"tflops_per_s": tflops, "fraction_of_peak": (tflops / peak) if peak else None}


def _fmt_rate(r: dict) -> str:
    frac = f"{100 * r['fraction_of_peak']:.1f} % of bf16 dense peak" if r["fraction_of_peak"] is not None else "unknown peak"
    return f"{r['tflops_per_s']:.3g} TFLOP/s ({frac})"


def _fmt_bytes(b: Optional[int]) -> str:
    return "n/a" if b is None else f"{b / 2**30:.2f} GiB"


def _fmt_program(m: Optional[dict]) -> str:
    if m is None:
        return "n/a"
    return (f"{_fmt_bytes(m['total'])} (arguments {_fmt_bytes(m['argument'])}, temporaries {_fmt_bytes(m['temp'])}, "
            f"outputs {_fmt_bytes(m['output'])})")


def measure_forward(size: BenchSize, defn: DenoiserDef, params, batch: int, repeats: int, attention: str, peak) -> dict:
    """Compile (timed apart) and time one jitted forward at ``batch``; FLOPs counted and XLA's count alongside."""
    cfg = size.cfg
    rng = np.random.default_rng(batch)
    x = jnp.asarray(rng.standard_normal((batch, size.frames, size.height, size.width, cfg.in_channels)), jnp.float32)
    t = jnp.full((batch,), 500, jnp.int32)
    text = jnp.asarray(rng.standard_normal((batch, size.text_len, cfg.text_embed_dim)), params_dtype(params))
    fwd = jax.jit(defn.apply)
    t0 = time.perf_counter()
    with attention_implementation(attention):
        lowered = fwd.lower(params, x, t, text)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    out, first_s = _timed(compiled, params, x, t, text)
    times = [_timed(compiled, params, x, t, text)[1] for _ in range(repeats)]
    flops = cogvideox_flops(cfg, size.frames, size.height, size.width, size.text_len, batch)
    med = _median(times)
    return {"batch": batch, "nfe_per_call": batch, "compile_s": compile_s, "first_call_s": first_s, "times_s": times,
            "median_s": med, "per_nfe_s": med / batch, "flops": flops.total, "flops_by_part": flops._asdict(),
            "xla_flops_compiled": _xla_flops(compiled), "program_memory": program_memory(compiled),
            "finite": bool(jnp.all(jnp.isfinite(out))), **_rate(flops.total, med, peak), "device_peak_bytes": device_peak_bytes()}


def params_dtype(params):
    """The dtype of the params' first leaf."""
    return jax.tree_util.tree_leaves(params)[0].dtype


def flops_check(size: BenchSize, defn: DenoiserDef, params, batch: int) -> dict:
    """The analytic count against XLA's cost of each matmul the traced forward runs (XLA attention, traced only)."""
    cfg = size.cfg
    x = jax.ShapeDtypeStruct((batch, size.frames, size.height, size.width, cfg.in_channels), jnp.float32)
    t = jax.ShapeDtypeStruct((batch,), jnp.int32)
    text = jax.ShapeDtypeStruct((batch, size.text_len, cfg.text_embed_dim), params_dtype(params))
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    with attention_implementation("xla"):
        xla = xla_matmul_flops(defn.apply, abstract, x, t, text)
    ours = cogvideox_flops(cfg, size.frames, size.height, size.width, size.text_len, batch).total
    rel = abs(ours - xla) / max(ours, 1)
    return {"batch": batch, "analytic": ours, "xla_matmuls": xla, "rel_diff": rel, "agree": rel <= 1e-6}


def extrapolate(num_steps: int, stage2_steps: int, stage2_step_s: Optional[float], plain_step_s: Optional[float],
                expected_nfe: int, per_nfe_s: Optional[float], plain_nfe: int) -> dict:
    """The full run's time from the measured medians: ``stage2_steps·t₂ + (num_steps − stage2_steps)·t₁``.

    A missing plain-step time is estimated as ``plain_nfe × per_nfe_s`` (and said so); the NFE-based
    figure ``expected_nfe × per_nfe_s`` is returned alongside.
    """
    plain_steps = num_steps - stage2_steps
    plain_from = "measured"
    if plain_step_s is None and per_nfe_s is not None:
        plain_step_s, plain_from = plain_nfe * per_nfe_s, "estimated: plain-step NFE × time per NFE"
    if (stage2_steps and stage2_step_s is None) or (plain_steps and plain_step_s is None):
        total = None
    else:
        total = stage2_steps * (stage2_step_s or 0.0) + plain_steps * (plain_step_s or 0.0)
    return {"num_steps": num_steps, "stage2_steps": stage2_steps, "plain_steps": plain_steps,
            "stage2_step_s": stage2_step_s, "plain_step_s": plain_step_s, "plain_step_from": plain_from,
            "total_s": total, "expected_nfe": expected_nfe,
            "total_from_nfe_s": expected_nfe * per_nfe_s if per_nfe_s is not None else None}


def measure_syncos(size: BenchSize, defn: DenoiserDef, params, steps: int, plain_steps: int, attention: str, peak,
                   seed: int = 0) -> dict:
    """Times SynCoS steps of the paper's 4× run (see the module doc); returns the measured steps and the extrapolation."""
    cfg_m = size.cfg
    layout = ChunkLayout(PAPER["video_chunks"] * size.frames, size.frames, PAPER["stride"])
    schedule = S.cogvideox_2b(PAPER["num_steps"])
    dt = params_dtype(params)
    keys = jax.random.split(jax.random.key(seed), 3)
    P = PAPER["video_chunks"]  # one event per chunk's worth of frames
    cond = Conditioning(jax.random.normal(keys[0], (P, size.text_len, cfg_m.text_embed_dim), dt),
                        jax.random.normal(keys[1], (1, size.text_len, cfg_m.text_embed_dim), dt))
    sampler = syncos.build(defn, schedule, layout, cond, frame_shape=(size.height, size.width, cfg_m.in_channels),
                           **PAPER["options"])
    cfg = syncos.make_config(**PAPER["options"])
    step = jax.jit(lambda context, prm, state: rebuild(sampler.spec, context).step(state, prm))
    state0 = sampler.init(keys[2])
    _say(f"  SynCoS: F = {layout.num_frames} latent frames, N = {layout.num_chunks} chunks, B = {syncos.batch_chunks(cfg, layout)}, "
         f"{schedule.num_steps} steps, t_min = {cfg.t_min}, iters = {cfg.iters}; compiling one step ...")
    t0 = time.perf_counter()
    with attention_implementation(attention):
        lowered = step.lower(sampler.context, params, state0)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    _say(f"  compiled in {compile_s:.1f} s")
    ts = np.asarray(schedule.timesteps)
    first_plain = int(np.argmax(ts <= cfg.t_min)) if (ts <= cfg.t_min).any() else None
    records = []

    def run_from(k, n, timed=True):
        state = state0._replace(step=jnp.asarray(k, jnp.int32))
        for _ in range(n):
            t_model = int(ts[int(state.step)])
            (state, info), sec = _timed(compiled, sampler.context, params, state)
            rec = {"step": int(state.step) - 1, "t": t_model, "stage2": bool(info.stage2_ran), "nfe": int(info.nfe),
                   "seconds": sec, "finite": bool(jnp.all(jnp.isfinite(state.x)))}
            if timed:
                rec["flops"] = syncos_step_flops(size, layout, cfg, rec["stage2"])
                rec.update(_rate(rec["flops"], sec, peak))
                records.append(rec)
                _say(f"  step {rec['step']} (t = {t_model}, {'stage 2' if rec['stage2'] else 'plain'}): {sec:.3g} s, "
                     f"{rec['nfe']} NFE, {sec / rec['nfe']:.3g} s/NFE, {_fmt_rate(rec)}")
            else:
                _say(f"  warm-up step {rec['step']} (t = {t_model}): {sec:.3g} s (excluded)")
            if int(state.step) >= schedule.num_steps:
                break

    warm_k = first_plain if first_plain is not None else 0
    run_from(warm_k, 1, timed=False)
    if plain_steps and first_plain is not None:
        run_from(first_plain, plain_steps)
    if steps:
        run_from(0, steps)
    s2 = [r["seconds"] for r in records if r["stage2"]]
    pl = [r["seconds"] for r in records if not r["stage2"]]
    measured_nfe = sum(r["nfe"] for r in records)
    per_nfe = sum(r["seconds"] for r in records) / measured_nfe if measured_nfe else None
    stage2_steps = count_above(schedule.timesteps, cfg.t_min)
    extra = extrapolate(schedule.num_steps, stage2_steps, _median(s2) if s2 else None, _median(pl) if pl else None,
                        sampler.expected_nfe, per_nfe, layout.num_chunks * calls_per_chunk(cfg.guidance_scale))
    return {"layout": {"num_frames": layout.num_frames, "chunk_frames": layout.chunk_frames, "stride": layout.stride,
                       "num_chunks": layout.num_chunks},
            "settings": {**PAPER["options"], "num_steps": schedule.num_steps, "batch_chunks": syncos.batch_chunks(cfg, layout)},
            "compile_s": compile_s, "program_memory": program_memory(compiled), "steps": records, "per_nfe_s": per_nfe,
            "extrapolated": extra, "device_peak_bytes": device_peak_bytes()}


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Runs the benchmark; prints the report and returns it as a dict (also written to ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=None,
                    help="a tiny config (default: on when JAX sees only a CPU)")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--batches", type=int, nargs="+", default=[2],
                    help="forward batch sizes (2: one CFG pair; SynCoS sends 2N = 22 and 2B = 8)")
    ap.add_argument("--repeats", type=int, default=5, help="timed forward calls per batch (median)")
    ap.add_argument("--steps", type=int, default=1, help="SynCoS steps timed from step 0 (stage 2 runs there)")
    ap.add_argument("--plain-steps", type=int, default=2, help="SynCoS steps timed from the first step at or below t_min")
    ap.add_argument("--attention", default="auto", choices=("auto", "xla", "cudnn"))
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak, TFLOP/s (overrides the table)")
    ap.add_argument("--skip-syncos", action="store_true", help="time the forward only")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("repeats", "steps", "plain_steps"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if any(b < 1 for b in args.batches) or args.repeats < 1:
        ap.error(f"--batches must be positive and --repeats >= 1, got {args.batches} and {args.repeats}")

    device = jax.devices()[0]
    tiny = device.platform == "cpu" if args.tiny is None else args.tiny
    dtype = DTYPES[args.dtype]
    attention = resolve_attention(args.attention, device.platform, dtype)
    peak = args.peak_tflops if args.peak_tflops is not None else peak_tflops(device.device_kind)
    size = bench_size(tiny)
    report: dict = {"device": str(device), "device_kind": device.device_kind, "platform": device.platform,
                    "jax": jax.__version__, "tiny": tiny, "dtype": jnp.dtype(dtype).name, "attention": attention,
                    "peak_tflops": peak, "peak_from": "--peak-tflops" if args.peak_tflops is not None else "table",
                    "config": size.cfg.to_dict(),
                    "latent": {"frames": size.frames, "height": size.height, "width": size.width,
                               "channels": size.cfg.in_channels, "text_len": size.text_len}}
    _say(f"CogVideoX{' (tiny config)' if tiny else '-2B'} on {device.device_kind} ({device.platform}), {report['dtype']}, "
         f"attention {attention}, peak {'unknown' if peak is None else f'{peak:g} TFLOP/s bf16 dense'}")
    _say(f"latent chunk {size.frames}×{size.height}×{size.width}×{size.cfg.in_channels}, {size.text_len} text tokens, "
         f"{size.cfg.num_layers} layers × {size.cfg.inner_dim} wide")

    if attention == "xla" and not tiny:
        tokens = size.frames * (size.height // size.cfg.patch_size) * (size.width // size.cfg.patch_size) + size.text_len
        logits = 2 * size.cfg.num_attention_heads * tokens**2 * 4  # float32 logits of one CFG pair
        _say(f"WARNING: XLA attention materialises the S×S logits: {logits / 2**30:.0f} GiB per CFG pair (S = {tokens}); "
             f"SynCoS's calls of 2N and 2B chunks will not fit (use --attention cudnn on a GPU, or --skip-syncos)")
    _say("drawing random weights on the device ...")
    t0 = time.perf_counter()
    _, graphdef, abstract = model_abstract(size.cfg.to_dict())
    params = jax.block_until_ready(random_params(abstract, jax.random.key(args.seed, impl="rbg"), dtype))
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    report["params"] = n_params
    report["init_s"] = time.perf_counter() - t0
    report["device_peak_bytes_after_init"] = device_peak_bytes()
    _say(f"random weights: {n_params / 1e9:.3f} B parameters in {report['dtype']} ({report['init_s']:.1f} s), "
         f"device peak {_fmt_bytes(report['device_peak_bytes_after_init'])}")
    defn = compute_dtype_def(graphdef, dtype, size.frames)

    check = flops_check(size, defn, params, args.batches[0])
    report["flops_check"] = check
    _say(f"FLOPs per forward at batch {check['batch']}: analytic {check['analytic']}, XLA's cost of each matmul summed "
         f"{check['xla_matmuls']} (relative difference {check['rel_diff']:.1e}: "
         f"{'agree' if check['agree'] else 'DISAGREE'}; XLA keeps float32 counters)")

    report["forward"] = []
    for batch in args.batches:
        _say(f"forward, batch {batch}: compiling ...")
        r = measure_forward(size, defn, params, batch, args.repeats, attention, peak)
        report["forward"].append(r)
        xla = r["xla_flops_compiled"]
        _say(f"  compile {r['compile_s']:.1f} s, first call {r['first_call_s']:.3g} s, median {r['median_s']:.4g} s "
             f"over {args.repeats} (measured), {r['per_nfe_s']:.4g} s per NFE")
        _say(f"  {r['flops']:.4g} FLOP (analytic matmuls); XLA's cost analysis of the compiled forward: "
             + ("n/a" if xla is None else f"{xla:.4g} ({xla / r['flops']:.3f}× analytic: XLA adds elementwise ops"
                + ("; cuDNN attention counts 0" if attention == "cudnn" else "") + ")"))
        _say(f"  {_fmt_rate(r)}; output finite: {r['finite']}")
        _say(f"  memory: XLA's plan of this program {_fmt_program(r['program_memory'])}; "
             f"device peak of the process so far {_fmt_bytes(r['device_peak_bytes'])}")

    if not args.skip_syncos and (args.steps or args.plain_steps):
        _say("SynCoS at the paper's settings (a 4× video):")
        s = measure_syncos(size, defn, params, args.steps, args.plain_steps, attention, peak, args.seed)
        report["syncos"] = s
        e = s["extrapolated"]
        if s["per_nfe_s"] is not None:
            _say(f"  measured: time per NFE {s['per_nfe_s']:.4g} s over {sum(r['nfe'] for r in s['steps'])} NFE")
        _say(f"  memory: XLA's plan of the step {_fmt_program(s['program_memory'])}; "
             f"device peak of the process so far {_fmt_bytes(s['device_peak_bytes'])}")
        if e["total_s"] is not None:
            _say(f"  EXTRAPOLATED full run ({e['num_steps']} steps: {e['stage2_steps']} with stage 2 × {e['stage2_step_s']:.4g} s "
                 f"+ {e['plain_steps']} plain × {e['plain_step_s']:.4g} s [{e['plain_step_from']}]): "
                 f"{e['total_s']:.1f} s = {e['total_s'] / 60:.2f} min")
        if e["total_from_nfe_s"] is not None:
            _say(f"  EXTRAPOLATED from NFE: {e['expected_nfe']} NFE × {s['per_nfe_s']:.4g} s = {e['total_from_nfe_s']:.1f} s "
                 f"= {e['total_from_nfe_s'] / 60:.2f} min")
    report["device_peak_bytes"] = device_peak_bytes()
    _say(f"device peak memory of the process: {_fmt_bytes(report['device_peak_bytes'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=str)
        _say(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
