"""PyTorch/diffusers checkpoints → Flax state: reading, rule tables, strict coverage, dtype policy.

* :func:`read_safetensors` reads a single ``*.safetensors`` file or a sharded checkpoint (a folder
  with ``*.safetensors.index.json``) with ``safetensors.numpy`` — torch is never imported.
* A model's conversion is a declarative table of :class:`Rule` (source-key regex → target path
  template + transform). :func:`convert` applies it against the target's **abstract** state
  (``nnx.eval_shape``; nothing is randomly initialised) and is strict: every source key maps to
  exactly one target, every target is filled, shapes agree — otherwise one
  :class:`ConversionError` lists the unmapped, missing and mis-shaped keys (first 20 of each,
  with counts).
* The dtype policy (``float32`` or ``bfloat16``, via ml_dtypes) is applied during the copy.
* Nothing here mutates its inputs: :func:`convert` returns a new nnx.State and leaves the
  caller's abstract state as it was.

Saving and loading the converted state is the model's business, not the conversion's: each
backbone owns its weights folder (e.g. :func:`syncos_jax.backbones.cogvideox.save_weights` and
:func:`~syncos_jax.backbones.cogvideox.load`). ``converters`` imports the backbones, never the
reverse.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Iterable, NamedTuple, Optional

import ml_dtypes
import numpy as np
from flax import nnx

__all__ = [
    "ConversionError",
    "DTYPES",
    "Rule",
    "TRANSFORMS",
    "convert",
    "flat_abstract",
    "read_safetensors",
]

DTYPES = {"float32": np.float32, "fp32": np.float32, "bfloat16": ml_dtypes.bfloat16, "bf16": ml_dtypes.bfloat16}

TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "linear": lambda a: a.T,  # torch [out, in] → flax [in, out]
    "conv2d": lambda a: a.transpose(2, 3, 1, 0),  # [out, in, kh, kw] → [kh, kw, in, out]
    "conv3d": lambda a: a.transpose(2, 3, 4, 1, 0),  # [out, in, kt, kh, kw] → [kt, kh, kw, in, out]
    "norm": lambda a: a,  # LayerNorm/GroupNorm weight → scale (the renaming is in the rule's target)
}


class Rule(NamedTuple):
    """``pattern`` (a regex matched against the whole source key) → ``target`` (a template with
    ``{1}``, ``{2}``, … for the pattern's groups; dots separate path parts) + ``transform`` (a key
    of :data:`TRANSFORMS`)."""

    pattern: str
    target: str
    transform: str = "identity"


class ConversionError(ValueError):
    """A checkpoint that does not match the target model (the message lists every kind of offender)."""


def _shard_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no safetensors file or folder at {path!r}")
    index = sorted(f for f in os.listdir(path) if f.endswith(".safetensors.index.json"))
    if len(index) > 1:
        raise ConversionError(f"{path!r} holds several index files {index}; point at one checkpoint")
    if index:
        with open(os.path.join(path, index[0])) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{os.path.join(path, index[0])!r} has no 'weight_map'")
        return [os.path.join(path, s) for s in sorted(set(weight_map.values()))]
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if len(files) != 1:
        raise ConversionError(f"{path!r} holds {len(files)} .safetensors files and no index json; expected one or an index")
    return [os.path.join(path, files[0])]


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of a safetensors checkpoint (one file, or a folder with one file or an index json).

    Raises:
      ConversionError: for a truncated or corrupt file (naming it), a missing shard, or a key
        present in two shards.
    """
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for f in _shard_files(path):
        if not os.path.exists(f):
            raise ConversionError(f"shard {f!r} named by the index is missing")
        try:
            tensors = load_file(f)
        except Exception as e:  # safetensors raises SafetensorError / OSError for truncated files
            raise ConversionError(f"cannot read {f!r} (truncated or not a safetensors file): {e}") from None
        dup = sorted(set(tensors) & set(out))
        if dup:
            raise ConversionError(f"keys {dup[:20]} appear in more than one shard")
        out.update(tensors)
    return out


def _key(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


def flat_abstract(abstract_state) -> dict[str, Any]:
    """``{"a.b.0.kernel": ShapeDtypeStruct-like variable}`` of an (abstract) nnx.State (not modified)."""
    return {_key(p): v for p, v in nnx.to_flat_state(abstract_state)}


def _listing(name: str, items: list[str]) -> str:
    return f"{name} ({len(items)}): {items[:20]}{' …' if len(items) > 20 else ''}"


def convert(source: dict[str, np.ndarray], rules: Iterable[Rule], abstract_state, *, dtype: str = "float32",
            progress: Optional[Callable[[int, int], None]] = None):
    """A new nnx.State shaped like ``abstract_state`` (from ``nnx.eval_shape``), filled from ``source`` by ``rules``.

    Returns the filled nnx.State (numpy arrays of ``dtype``, possibly views of ``source``'s: nothing
    is copied that need not be); ``abstract_state`` and ``source`` are not modified. Raises
    :class:`ConversionError` listing unmapped source keys, target parameters left unfilled, targets
    filled twice, and mis-shaped tensors. ``progress(done, total)`` is called after each source
    tensor.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of {sorted(DTYPES)}")
    np_dtype = DTYPES[dtype]
    compiled = [(re.compile(r.pattern + r"\Z"), r) for r in rules]
    targets = flat_abstract(abstract_state)
    filled: dict[str, np.ndarray] = {}
    unmapped, misshaped, doubled, not_float = [], [], [], []
    for i, name in enumerate(sorted(source)):
        if progress is not None:
            progress(i + 1, len(source))
        hit = None
        for rx, rule in compiled:
            m = rx.match(name)
            if m:
                hit = (m, rule)
                break
        if hit is None:
            unmapped.append(name)
            continue
        m, rule = hit
        target = rule.target.format(None, *m.groups())
        if target not in targets:
            unmapped.append(f"{name} -> {target} (no such parameter)")
            continue
        if target in filled:
            doubled.append(f"{name} -> {target}")
            continue
        array = source[name]
        if not np.issubdtype(np.asarray(array).dtype, np.floating) and array.dtype != ml_dtypes.bfloat16:
            not_float.append(f"{name}: {array.dtype}")
            continue
        value = TRANSFORMS[rule.transform](np.asarray(array))
        want = tuple(targets[target].shape)
        if value.shape != want:
            misshaped.append(f"{name} {tuple(array.shape)} -> {target} {want}")
            continue
        filled[target] = value
    missing = sorted(set(targets) - set(filled) - {t.split(" -> ")[-1] for t in doubled})
    if unmapped or missing or misshaped or doubled or not_float:
        parts = [_listing("unmapped source keys", unmapped), _listing("missing target parameters", missing),
                 _listing("mis-shaped", misshaped)]
        if doubled:
            parts.append(_listing("mapped twice", doubled))
        if not_float:
            parts.append(_listing("not floating point", not_float))
        raise ConversionError(f"checkpoint does not match the model ({len(source)} source tensors, {len(targets)} "
                              f"target parameters): " + "; ".join(parts))
    leaves = []
    for path, var in nnx.to_flat_state(abstract_state):
        leaves.append((path, var.replace(np.asarray(filled[_key(path)], dtype=np_dtype))))
    return nnx.from_flat_state(leaves)
