"""Data parallelism with `jax.sharding`: batches split over a 'data' mesh axis, state replicated.

The same code runs on one device, on many devices of one process, and on many processes
(`jax.distributed.initialize`), where each process reads only its own rows of every global batch.
The jitted step is unchanged: XLA inserts the gradient all-reduce that the shardings imply.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, PartitionSpec

from dl_jax.errors import UserError
from dl_jax.settings import ConfigError

DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices of all processes (default: all)."""
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ConfigError(f"--devices={num_devices}: {len(devices)} devices are available")
    devices = devices[:num_devices]
  missing = set(range(jax.process_count())) - {d.process_index for d in devices}
  if missing:
    raise ConfigError(f"a mesh of {len(devices)} devices leaves out processes {sorted(missing)}; "
                     f"every process must hold a device of the mesh: use more devices")
  return Mesh(np.array(devices), (DATA_AXIS,))


class DataParallel:
  """Places the train state (replicated) and each batch (split on 'data') on a mesh."""

  def __init__(self, mesh: Mesh):
    self.mesh = mesh

  @property
  def num_shards(self) -> int:
    return self.mesh.shape[DATA_AXIS]

  @property
  def process_shard(self) -> tuple[int, int]:
    """(index, count) of this process among those that feed the mesh."""
    return jax.process_index(), jax.process_count()

  def check_batch_size(self, batch_size: int) -> None:
    if batch_size % self.num_shards:
      raise ConfigError(f"batch size {batch_size} does not split over {self.num_shards} devices; "
                       f"use a multiple of {self.num_shards}")

  def put_state(self, state):
    """Every process holds the same state (same seed or same checkpoint): replicate it."""
    local = jax.tree_util.tree_map(np.asarray, state)  # plain ints (the step) become arrays too
    return multihost_utils.host_local_array_to_global_array(local, self.mesh, PartitionSpec())

  def put_batches(self, local_batches: dict) -> dict:
    """This process's rows of global batches stacked [steps, batch, ...], as global arrays split
    over 'data' along the batch axis."""
    return multihost_utils.host_local_array_to_global_array(
        local_batches, self.mesh, PartitionSpec(None, DATA_AXIS))

  def put_replicated(self, batch: dict) -> dict:
    """A batch every process holds in full (evaluation), replicated on every device."""
    return multihost_utils.host_local_array_to_global_array(batch, self.mesh, PartitionSpec())


def initialize_distributed(coordinator: str, num_processes: int, process_id: int,
                           timeout_s: int = 300) -> None:
  """Joins a multi-process run (one process per host or per accelerator group).

  `coordinator="auto"` lets JAX read the cluster from the environment (TPU pod slices, SLURM);
  otherwise it is process 0's host:port. CPU devices exchange gradients through Gloo collectives
  (the setting only concerns the CPU backend; GPUs and TPUs use their own). Call before any other
  JAX work. Processes that have not all joined within `timeout_s` seconds: DistributedError.
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    if coordinator == "auto":
      jax.distributed.initialize(initialization_timeout=timeout_s)
    else:
      jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id,
                                 initialization_timeout=timeout_s)
  except (RuntimeError, ValueError) as e:  # JAX's report of a coordinator that never answered
    raise DistributedError(
        f"could not join the run at coordinator {coordinator} as process {process_id} of "
        f"{num_processes} within {timeout_s} s ({str(e).splitlines()[0][:200]}); start every "
        "process with the same --coordinator and --num_processes, or raise "
        "--coordinator_timeout") from None


class DistributedError(UserError, RuntimeError):
  """The processes of a multi-process run could not join one another."""
