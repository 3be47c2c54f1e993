"""Resumable sampling: save any sampler's state with orbax after any step, restore it in another process.

States are saved under ``directory/<step>/`` by an ``orbax.checkpoint.CheckpointManager``:
orbax writes into a temporary directory and renames it when complete, so a save killed half-way
leaves the previous checkpoint usable (the unfinished one is never listed). A restored state run
through the same compiled loop (:func:`syncos_jax.samplers.base.run`) gives latents
bit-identical to an uninterrupted run, because steps derive their keys with ``fold_in(key, step)``.

Any NamedTuple state with an int ``step`` field works, with no table of types: :func:`restore_state`
restores into the structure of a template state (``like``: its type, fields, shapes and dtypes),
e.g. ``jax.eval_shape(sampler.init, key, params)`` (FIFO's ``init`` needs the params)::

    save_state(folder, state)
    state = restore_state(folder, like=jax.eval_shape(sampler.init, key, params))
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["latest_step", "restore_state", "save_state"]


def _manager(directory: str, max_to_keep: Optional[int] = None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=("state", "meta"))


def _to_tree(state: NamedTuple) -> tuple[dict, dict]:
    tree, meta = {}, {"type": type(state).__name__, "keys": {}}
    for name, value in state._asdict().items():
        if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            meta["keys"][name] = str(jax.random.key_impl(value))
            value = jax.random.key_data(value)
        tree[name] = np.asarray(value)
    return tree, meta


def save_state(directory: str, state: NamedTuple, *, max_to_keep: Optional[int] = None) -> int:
    """Saves ``state`` under ``directory/<step>`` (atomically). Returns the step it was saved as.

    Args:
      directory: the checkpoint directory (created if needed).
      state: any sampler's state: a NamedTuple of arrays with an int ``step`` field (single or batched).
      max_to_keep: keep only this many most recent checkpoints (``None``: all).
    """
    if not (isinstance(state, tuple) and hasattr(state, "_fields") and "step" in state._fields):
        raise TypeError(f"cannot checkpoint a {type(state).__name__}; expected a NamedTuple state with a 'step' field.")
    tree, meta = _to_tree(state)
    step = int(np.reshape(tree["step"], (-1,))[0])
    with _manager(directory, max_to_keep) as mngr:
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)), force=True)
        mngr.wait_until_finished()
    return step


def latest_step(directory: str) -> Optional[int]:
    """Returns the most recent complete checkpoint's step in ``directory``, or ``None``."""
    if not os.path.isdir(directory):
        return None
    with _manager(directory) as mngr:
        return mngr.latest_step()


def restore_state(directory: str, like: Any, step: Optional[int] = None) -> Any:
    """Returns the sampler state saved in ``directory`` (the latest complete one, or ``step``).

    Args:
      directory: the checkpoint directory.
      like: a state of the same sampler (concrete or abstract, e.g. ``jax.eval_shape(sampler.init, key, params)``):
        its type, fields, shapes and dtypes are the structure restored into.
      step: which checkpoint (default: the latest complete one).

    Raises:
      FileNotFoundError: no directory or no complete checkpoint.
      ValueError: the checkpoint holds a state of another type, or with other fields, shapes or dtypes than ``like``.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoint directory at {directory!r}.")
    with _manager(directory) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{directory!r} holds no complete checkpoint.")
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    cls = type(like)
    if meta["type"] != cls.__name__ or set(restored) != set(cls._fields):
        raise ValueError(f"{directory!r} step {step} holds a {meta['type']} with fields {sorted(restored)}, "
                         f"not a {cls.__name__} with fields {sorted(cls._fields)}.")
    fields = {}
    for name in cls._fields:
        value = jnp.asarray(restored[name])
        if name in meta["keys"]:
            value = jax.random.wrap_key_data(value, impl=meta["keys"][name])
        want = getattr(like, name)
        want_dtype = want.dtype if hasattr(want, "dtype") else np.asarray(want).dtype
        if (tuple(jnp.shape(want)), want_dtype) != (tuple(value.shape), value.dtype):
            raise ValueError(f"{directory!r} step {step}: field {name!r} is {value.dtype}{list(value.shape)}, "
                             f"but the state restored into has {want_dtype}{list(jnp.shape(want))}.")
        fields[name] = value
    return cls(**fields)
