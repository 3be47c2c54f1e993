"""Saving and loading the toy model's weights (one safetensors file, config in its metadata).

The shipped EMA weights live next to this module (``toy_dit.safetensors``) and load with no
network: :func:`load_toy_model` builds the model's abstract shape with ``nnx.eval_shape`` (no
random init), checks that the file holds exactly its parameters with the same shapes, and fills
them.
"""

from __future__ import annotations

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


def read_toy_config(path: str = DEFAULT_WEIGHTS) -> tuple[ToyConfig, dict]:
    """``(ToyConfig, extra metadata)`` of a weights file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"toy model weights not found at {path!r}")
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path!r} is not a toy model weights file (no 'config' in its metadata)")
    fields = json.loads(meta["config"])
    fields.setdefault("local_mixing", False)  # files written before these options existed
    fields.setdefault("temporal_rope", False)
    fields.setdefault("frame_conditioning", False)
    fields.setdefault("word_frame_conditioning", False)
    return ToyConfig(**fields), json.loads(meta.get("extra", "{}"))


def load_toy_model(path: str = DEFAULT_WEIGHTS) -> ToyVideoDiT:
    """The toy model with the weights in ``path`` (the shipped ones by default).

    Raises:
      ValueError: listing missing, unexpected and mis-shaped parameters if the file does not
        match the model its config describes.
    """
    cfg, _ = read_toy_config(path)
    model = nnx.eval_shape(lambda: ToyVideoDiT(cfg, rngs=nnx.Rngs(0)))
    graphdef, abstract = nnx.split(model)
    tensors = load_file(path)
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
    flat = nnx.to_flat_state(abstract)
    leaves = []
    for p, v in flat:
        leaves.append((p, v.replace(jnp.asarray(tensors[_key(p)], v.dtype))))
    state = nnx.from_flat_state(leaves)
    return nnx.merge(graphdef, state)
