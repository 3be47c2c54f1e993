"""Meshes, chunk-axis sharding and multi-host runs.

The chunk axis is the natural parallel axis (ARCHITECTURE.md, Scale): a sampler given ``mesh=``
constrains every batch of chunks it sends to the backbone (including the ``2N`` CFG pair) to be
split over the mesh's ``data`` axis; ``fuse`` then becomes a cross-device sum, inserted by XLA.
Results do not depend on the device count beyond float rounding.

Multi-host (multi-controller JAX): every host runs the *same* script, one process per host.
Each process calls :func:`initialize_distributed` before anything touches a device, builds the
mesh over all (global) devices with :func:`make_mesh`, and makes the same calls with the same
arguments and keys: JAX compiles one SPMD program and each process runs its devices' share.
Inputs built by every process alike (keys, schedules, conditioning, params) enter the compiled
program as replicated values; the results are global arrays, read on the host with
:func:`to_host` (a collective: every process calls it)::

    initialize_distributed()                 # TPU pods, SLURM, Open MPI: all auto-detected
    # or: initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=rank)
    mesh = make_mesh()                        # all jax.devices(), over every process
    result = sample(syncos.build(defn, schedule, layout, cond, mesh=mesh), params, key)
    video = to_host(result.latents)           # numpy, the same on every process
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

__all__ = ["DATA_AXIS", "initialize_distributed", "make_mesh", "set_cpu_devices", "shard_batch", "to_host"]


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


def set_cpu_devices(num_devices: int) -> None:
    """Makes the CPU backend expose ``num_devices`` devices (``jax_num_cpu_devices``), for testing
    meshes and multi-process runs without accelerators.

    Must run before JAX initialises its backends (before the first ``jax.devices()`` or array);
    a multi-process CPU run calls it before :func:`initialize_distributed`. Cross-process CPU
    collectives use gloo (JAX's default ``jax_cpu_collectives_implementation``).

    Raises:
      ValueError: if ``num_devices`` is not a positive int.
      RuntimeError: if the backends are already initialised (JAX's own message, naming the option).
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) or num_devices < 1:
        raise ValueError(f"num_devices={num_devices!r} must be a positive int (CPU devices in this process).")
    jax.config.update("jax_num_cpu_devices", int(num_devices))  # first: it refuses once the backends exist
    jax.config.update("jax_platforms", "cpu")


def initialize_distributed(
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    *,
    local_device_ids: Optional[Union[int, Sequence[int]]] = None,
    **kwargs,
) -> None:
    """Initialises the multi-host JAX runtime (``jax.distributed.initialize``) once; a no-op if already done.

    Call it first, in every process (one per host), before anything touches a device. On Cloud
    TPU, SLURM and Open MPI every argument may be omitted: JAX detects them from the environment
    (``JAX_COORDINATOR_ADDRESS`` also works). Elsewhere pass them all:

    Args:
      coordinator_address: ``"HOST:PORT"`` of process 0, reachable from every process.
      num_processes: the number of processes (hosts) in the job.
      process_id: this process's rank, ``0 ≤ process_id < num_processes``.
      local_device_ids: the local accelerators this process owns (default: all it sees).
      **kwargs: further arguments of ``jax.distributed.initialize`` (e.g. ``initialization_timeout``).

    Raises:
      ValueError: for a ``process_id`` outside ``[0, num_processes)`` or a malformed address,
        before contacting anyone.
    """
    if jax.distributed.is_initialized():
        return
    if coordinator_address is not None and (":" not in coordinator_address or not coordinator_address.rsplit(":", 1)[1].isdigit()):
        raise ValueError(f"coordinator_address={coordinator_address!r} must be 'HOST:PORT' (process 0's address and a free port).")
    if num_processes is not None and process_id is not None and not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"process_id={process_id} must be between 0 and num_processes - 1 = {int(num_processes) - 1}.")
    given = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id,
                 local_device_ids=local_device_ids)
    jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None}, **kwargs)


def to_host(tree: Any) -> Any:
    """Returns ``tree`` with every array leaf as a full numpy array, on every process.

    A leaf sharded over devices of several processes is gathered with
    ``jax.experimental.multihost_utils.process_allgather`` (a collective: in a multi-process run
    every process must call ``to_host`` on the same tree, in the same order); single-process or
    fully addressable leaves are simply copied to the host. Shapes are unchanged: ``x: [...]`` →
    ``numpy [...]``.
    """

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree_util.tree_map(one, tree)
