"""Saving and loading the toy model's weights (one safetensors file, config in its metadata).

The shipped EMA weights live next to this module (``toy_dit.safetensors``) and load with no
network: :func:`load_toy_model` builds the model's abstract shape with ``nnx.eval_shape`` (no
random init), checks that the file holds exactly its parameters with the same shapes, and fills
them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Optional

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

from syncos_jax.backbones.toy.model import ToyConfig, ToyVideoDiT

__all__ = ["DEFAULT_WEIGHTS", "load_toy_model", "read_toy_config", "save_toy_weights"]

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_dit.safetensors")


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def save_toy_weights(path: str, cfg: ToyConfig, params, extra: Optional[dict] = None) -> None:
    """Writes ``params`` (an nnx.State of the model's Params) and ``cfg`` to ``path``.

    ``extra`` (JSON-serialisable) is stored in the metadata too, e.g. the training step. The file
    is written to ``path + ".tmp"`` and renamed, so a killed save never leaves a broken file.
    """
    flat = {_key(p): np.asarray(v[...] if hasattr(v, "get_value") else v, np.float32) for p, v in nnx.to_flat_state(params)}
    meta = {"config": json.dumps(cfg.to_dict()), "format": "syncos_jax.toy/1"}
    if extra:
        meta["extra"] = json.dumps(extra)
    tmp = path + ".tmp"
    save_file(flat, tmp, metadata=meta)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist (no toy model weights there)")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not a toy model weights file")


def read_toy_config(path: str = DEFAULT_WEIGHTS) -> tuple[ToyConfig, dict]:
    """``(ToyConfig, extra metadata)`` of a weights file.

    Raises:
      FileNotFoundError: if there is no file at ``path``.
      ValueError: naming the file, if it is a folder, not a safetensors file (empty, truncated,
        text), or its metadata holds no valid toy-model config.
    """
    _check_file(path)
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for every malformed header
        raise ValueError(f"{path!r} is not a safetensors file ({' '.join(str(e).split())[:120]})") from None
    if "config" not in meta:
        raise ValueError(f"{path!r} is not a toy model weights file (no 'config' in its metadata)")
    try:
        fields = json.loads(meta["config"])
        extra = json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r}: its metadata is not valid JSON ({e.msg})") from None
    if not isinstance(fields, dict) or not isinstance(extra, dict):
        raise ValueError(f"{path!r}: its metadata 'config' and 'extra' must be JSON objects")
    fields.setdefault("local_mixing", False)  # files written before these options existed
    fields.setdefault("temporal_rope", False)
    fields.setdefault("frame_conditioning", False)
    fields.setdefault("word_frame_conditioning", False)
    fields.setdefault("pixel_head", 0)
    fields.setdefault("unet", 0)
    fields.setdefault("joint_attention", False)
    known = {f.name for f in dataclasses.fields(ToyConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{path!r}: unknown toy config keys {unknown[:10]}")
    try:
        return ToyConfig(**fields), extra
    except ValueError as e:
        raise ValueError(f"{path!r}: invalid toy config in its metadata: {e}") from None


def weights_sha256_16(path: str = DEFAULT_WEIGHTS) -> str:
    """The first 16 hex digits of the SHA-256 of the file at ``path``: how records name a weights
    file by its content, wherever it lies (a renamed copy has the same digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_toy_model(path: str = DEFAULT_WEIGHTS) -> ToyVideoDiT:
    """The toy model with the weights in ``path`` (the shipped ones by default).

    Raises:
      FileNotFoundError: if there is no file at ``path``.
      ValueError: naming the file — not a toy weights file (see :func:`read_toy_config`),
        truncated tensor data, missing, unexpected or mis-shaped parameters (listed), or
        parameters holding NaN or Inf (listed).
    """
    cfg, _ = read_toy_config(path)
    model = nnx.eval_shape(lambda: ToyVideoDiT(cfg, rngs=nnx.Rngs(0)))
    graphdef, abstract = nnx.split(model)
    try:
        tensors = load_file(path)
    except Exception as e:  # truncated or corrupt tensor data
        raise ValueError(f"{path!r}: its tensors cannot be read ({' '.join(str(e).split())[:120]})") from None
    wanted = {_key(p): v for p, v in nnx.to_flat_state(abstract)}
    missing = sorted(set(wanted) - set(tensors))
    unexpected = sorted(set(tensors) - set(wanted))
    misshaped = [f"{k}: file {tensors[k].shape}, model {wanted[k].shape}" for k in wanted if k in tensors and tensors[k].shape != tuple(wanted[k].shape)]
    if missing or unexpected or misshaped:
        raise ValueError(
            f"{path!r} does not match the toy model of its config: "
            f"missing {missing[:20]} ({len(missing)}), unexpected {unexpected[:20]} ({len(unexpected)}), "
            f"mis-shaped {misshaped[:20]} ({len(misshaped)})"
        )
    nonfinite = sorted(k for k, v in tensors.items() if v.dtype.kind in "fc" and not np.isfinite(v).all())
    if nonfinite:
        raise ValueError(f"{path!r} holds NaN or Inf in {len(nonfinite)} tensor(s): {nonfinite[:5]}")
    flat = nnx.to_flat_state(abstract)
    leaves = []
    for p, v in flat:
        leaves.append((p, v.replace(jnp.asarray(tensors[_key(p)], v.dtype))))
    state = nnx.from_flat_state(leaves)
    return nnx.merge(graphdef, state)
