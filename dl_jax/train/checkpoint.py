"""Orbax checkpoints of the train state plus a JSON record (iterator position, loop bookkeeping)."""

import os

import jax
import orbax.checkpoint as ocp

from dl_jax.train.state import TrainState


class Checkpointer:
  """Saves `(state, record)` under `directory/<step>`; a crashed save never hides a finished one."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: TrainState, record: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))

  def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, dict] | None:
    """The checkpoint at `step` (default: the latest), shaped like `like`; None if there is none."""
    self.manager.wait_until_finished()  # a save still in flight (orbax saves asynchronously)
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
    return restored["state"], restored["record"]

  def close(self) -> None:
    """Waits for saves in flight, then releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()
