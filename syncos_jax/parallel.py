"""Meshes and chunk-axis sharding.

The chunk axis is the natural parallel axis (ARCHITECTURE.md, Scale): a sampler given ``mesh=``
constrains every batch of chunks it sends to the backbone (including the ``2N`` CFG pair) to be
split over the mesh's ``data`` axis; ``fuse`` then becomes a cross-device sum, inserted by XLA.
Results do not depend on the device count beyond float rounding. Multi-host runs initialise
``jax.distributed`` first (:func:`initialize_distributed`) and build the mesh over all devices.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

__all__ = ["DATA_AXIS", "initialize_distributed", "make_mesh", "shard_batch"]


def make_mesh(num_devices: Optional[int] = None, axis_name: str = DATA_AXIS) -> Mesh:
    """Returns a 1-D mesh over the first ``num_devices`` devices (all by default), axis ``data``."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={num_devices} must be between 1 and the {len(devices)} available devices.")
    return Mesh(np.asarray(devices[:n]), (axis_name,))


def shard_batch(tree: Any, mesh: Optional[Mesh], axis_name: str = DATA_AXIS) -> Any:
    """Returns ``tree`` with every leaf's leading (chunk) axis constrained to the mesh's ``data`` axis.

    Identity when ``mesh`` is ``None``. Use inside ``jax.jit``.
    """
    if mesh is None:
        return tree

    def constrain(a):
        if getattr(a, "ndim", 0) == 0:
            return a
        spec = PartitionSpec(axis_name, *([None] * (a.ndim - 1)))
        return jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(constrain, tree)


def initialize_distributed(**kwargs) -> None:
    """Initialises the multi-host JAX runtime (``jax.distributed.initialize``) once; a no-op if already done."""
    if jax.distributed.is_initialized():
        return
    jax.distributed.initialize(**kwargs)
