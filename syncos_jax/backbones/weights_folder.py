"""Converted-weights folders, written atomically and read strictly.

Every converted model (the CogVideoX transformer, its T5 encoder, its VAE) lives in a folder
``DST`` holding ``config.json`` — ``{"model": NAME, "config": {...}, **extra}`` — next to its
arrays. This module is the one place that writes and checks such folders; each backbone module
names its own ``model`` field, file layout and config class:

* :func:`atomic_folder` — write into a temporary sibling of ``DST``, renamed at the end, so a
  failed save writes nothing to ``DST``;
* :func:`write_config` / :func:`read_config` — the ``config.json`` contract;
* :func:`save_safetensors` / :func:`load_safetensors` — a flat ``{"a.b.0.kernel": array}`` file;
* :func:`strict_state` — the arrays as a new ``nnx.State`` shaped like the model's abstract state,
  after checking that they are exactly its parameters, with its shapes, all finite.

It never imports torch, nor ``converters``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "atomic_folder",
    "check_extra",
    "flat_key",
    "load_safetensors",
    "read_config",
    "read_json_object",
    "save_safetensors",
    "strict_state",
    "write_config",
]


def flat_key(path: Iterable[Any]) -> str:
    """``"a.b.0.kernel"`` of an nnx state path ``("a", "b", 0, "kernel")``."""
    return ".".join(str(p) for p in path)


@contextlib.contextmanager
def atomic_folder(dst: str) -> Iterator[str]:
    """Yields an empty temporary folder next to ``dst``; if the block succeeds it becomes ``dst``,
    if it raises the temporary folder is removed, and so are the parent folders this call created,
    so ``dst`` and its surroundings are left as they were.

    Raises:
      FileExistsError: if ``dst`` exists and is not an empty folder (checked before anything is written).
    """
    dst = os.path.abspath(dst)
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise FileExistsError(f"{dst!r} exists and is not empty")
    parent = os.path.dirname(dst)
    created = []  # the parent folders this call makes, deepest first: removed again on failure
    p = parent
    while not os.path.isdir(p):
        created.append(p)
        p = os.path.dirname(p)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.tmp-", dir=parent)
        yield tmp
        if os.path.isdir(dst):
            os.rmdir(dst)
        os.replace(tmp, dst)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            try:
                os.rmdir(folder)  # only while empty
            except FileNotFoundError:
                continue
            except OSError:
                break
        raise


def check_extra(extra: Optional[Mapping]) -> dict:
    """``extra`` as a dict; raises ValueError if it sets ``model`` or ``config`` (config.json's own fields)."""
    extra = dict(extra or {})
    clash = sorted({"model", "config"} & set(extra))
    if clash:
        raise ValueError(f"extra must not set {clash}: config.json holds them already")
    return extra


def write_config(folder: str, model: str, config: dict, extra: Optional[Mapping] = None) -> None:
    """Writes ``FOLDER/config.json`` = ``{"model": model, "config": config, **extra}``."""
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model": model, "config": config, **check_extra(extra)}, f, indent=2)


def read_json_object(path: str) -> dict:
    """The JSON object in ``path``; raises ``ValueError`` naming the file if it is not valid JSON or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r} is not valid JSON ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path!r} must hold a JSON object, got {type(data).__name__}")
    return data


def read_config(dst: str, model: str, parse: Callable[[dict], Any], *, what: str) -> tuple[Any, dict]:
    """``(parse(meta["config"]), meta)`` of ``DST/config.json`` written by :func:`write_config`.

    Args:
      dst: the converted folder.
      model: the ``model`` field it must hold.
      parse: builds the config object from the ``config`` dict (raising TypeError or ValueError).
      what: the folder's kind in words, for the error message (e.g. ``"CogVideoX VAE"``).

    Raises:
      FileNotFoundError: if ``DST/config.json`` does not exist.
      ValueError: naming the file, if it is not a JSON object, holds another model, or ``parse`` rejects its config.
    """
    path = os.path.join(os.path.abspath(dst), "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{dst!r} is not a converted {what} folder (no config.json; see `syncos convert cogvideox`)")
    meta = read_json_object(path)
    if meta.get("model") != model:
        raise ValueError(f"{dst!r} holds a {str(meta.get('model'))[:40]!r} checkpoint, not {model}")
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path!r}: 'config' must be a JSON object")
    try:
        return parse(meta["config"]), meta
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path!r}: {e}") from None


def save_safetensors(path: str, state, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes the leaves of ``state`` (an nnx.State) to the safetensors file ``path``, keyed by :func:`flat_key`."""
    from safetensors.numpy import save_file

    arrays = {flat_key(p): np.ascontiguousarray(np.asarray(v[...])) for p, v in nnx.to_flat_state(state)}
    save_file(arrays, path, metadata=dict(metadata) if metadata else None)


def load_safetensors(dst: str, filename: str) -> dict[str, np.ndarray]:
    """``{key: array}`` of ``DST/filename``.

    Raises:
      FileNotFoundError: if the file is missing.
      ValueError: naming the file, if it is truncated or not a safetensors file.
    """
    from safetensors.numpy import load_file

    path = os.path.join(os.path.abspath(dst), filename)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{dst!r} has no {filename}")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises SafetensorError / OSError for a damaged file
        raise ValueError(f"cannot read {path!r} (truncated or not a safetensors file): {e}") from None


def strict_state(dst: str, arrays: Mapping[str, Any], abstract) -> Any:
    """A new nnx.State shaped like ``abstract`` holding ``arrays`` (``{flat_key: array}``).

    ``abstract`` (e.g. from a backbone's ``model_abstract``) is not modified. The arrays keep the
    dtype they were saved in. Strict: ``arrays`` must hold exactly the parameters of ``abstract``,
    with its shapes, all finite.

    Raises:
      ValueError: naming ``dst``, listing missing, unexpected and mis-shaped parameters, or those
        holding NaN or Inf.
    """
    flat = nnx.to_flat_state(abstract)
    wanted = {flat_key(p): v for p, v in flat}
    missing = sorted(set(wanted) - set(arrays))
    unexpected = sorted(set(arrays) - set(wanted))
    misshaped = [f"{k}: saved {tuple(np.shape(arrays[k]))}, model {tuple(v.shape)}" for k, v in wanted.items()
                 if k in arrays and tuple(np.shape(arrays[k])) != tuple(v.shape)]
    if missing or unexpected or misshaped:
        raise ValueError(f"{dst!r} does not match the model of its config: missing {missing[:20]} ({len(missing)}), "
                         f"unexpected {unexpected[:20]} ({len(unexpected)}), mis-shaped {misshaped[:20]} ({len(misshaped)})")
    nonfinite = sorted(k for k, a in arrays.items() if not np.isfinite(np.asarray(a, np.float32)).all())
    if nonfinite:
        raise ValueError(f"{dst!r} holds NaN or Inf in {len(nonfinite)} tensor(s): {nonfinite[:5]}")
    return nnx.from_flat_state([(p, v.replace(jnp.asarray(arrays[flat_key(p)]))) for p, v in flat])
