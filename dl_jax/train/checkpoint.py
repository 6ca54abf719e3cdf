"""Orbax checkpoints of the train state plus a JSON record (iterator position, loop bookkeeping).

Each checkpoint carries a SHA-256 digest of the state it holds, checked on restore: a checkpoint
that cannot be read or no longer matches its digest (a flipped bit, a truncated file) is named in
a warning, set aside, and the previous intact one is restored instead. Saves run in the
background. A save that would not fit (the disk's free space, the file-size limit of `ulimit -f`)
is refused before it starts, at its step, keeping the checkpoints saved before it; one that fails
anyway is reported at the next save or when the run ends. (Orbax's background threads may print
their own traces of such a failure first: only refusing the save up front keeps stderr to a line.)
"""

import contextlib
import os
import resource
import shutil
import signal
import threading

import jax
import orbax.checkpoint as ocp
from absl import logging

from dl_jax.errors import UserError
from dl_jax.train.state import TrainState, tree_digest

_DIGEST = "state_sha256"  # the record's key for the digest of the state saved beside it
_METADATA_BYTES = 1 << 20  # room a checkpoint needs beyond its arrays (metadata, JSON, manifests)
# Orbax's background saves from several threads at once collide (seen: "File exists", and
# checkpoints that cannot be read back), so saves made off the main thread take this lock and
# finish before releasing it.
_THREAD_SAVES = threading.Lock()


class CheckpointError(UserError, RuntimeError):
  """No checkpoint could be restored, or one could not be saved."""


@contextlib.contextmanager
def interrupts_deferred():
  """Ctrl-C inside the block takes effect when the block ends: a checkpoint being written or
  waited for is finished first (orbax would log the interrupted wait with a traceback, and the save
  be cut short). Outside the main thread, where no signal arrives, it changes nothing."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received = []
  previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received:  # handled as the handler in place before the block would have
    if callable(previous):
      previous(signal.SIGINT, None)
    elif previous == signal.SIG_DFL:
      os.kill(os.getpid(), signal.SIGINT)


class Checkpointer:
  """Saves `(state, record)` under `directory/<step>`; a crashed save never hides a finished one."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    if "[" in self.directory:
      # measured: orbax writes such checkpoints (e.g. under "runs/[0, 1]") but cannot read them
      raise CheckpointError(f"checkpoints cannot go under {self.directory}: orbax saves into a "
                            "path with '[' but cannot restore from it. Pass a workdir without "
                            "brackets")
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._saving = None  # the step of the save that may still be in flight

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: TrainState, record: dict) -> None:
    """Starts saving in the background; first reports a previous save that failed. Off the main
    thread (e.g. seed groups trained at once) the save is finished before it returns, one thread
    at a time."""
    if threading.current_thread() is threading.main_thread():
      self._save(step, state, record)
      return
    with _THREAD_SAVES:
      self._save(step, state, record)
      self._check_previous_save()

  def _save(self, step: int, state: TrainState, record: dict) -> None:
    with interrupts_deferred():
      self._check_previous_save()
      self._check_room(step, sum(getattr(leaf, "nbytes", 8)
                                 for leaf in jax.tree_util.tree_leaves(state)))
      record = {**record, _DIGEST: tree_digest(state)}
      try:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))
      except OSError as e:
        raise self._save_failed(step, e) from None
      self._saving = step

  def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, dict] | None:
    """The checkpoint at `step` (default: the newest intact one), shaped like `like`; None if
    there is none. A damaged checkpoint is set aside with a warning; CheckpointError if no
    checkpoint is intact."""
    self._check_previous_save()
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    damaged = []
    for candidate in steps:
      problem, restored = self._restore_verified(like, candidate)
      if problem is None:
        self._set_aside([s for s, _ in damaged])
        return restored
      logging.warning("checkpoint %s/%d is damaged (%s); trying the one before it",
                      self.directory, candidate, problem)
      damaged.append((candidate, problem))
    if damaged:
      shown = "; ".join(f"step {s}: {p}" for s, p in damaged)
      raise CheckpointError(f"no intact checkpoint in {self.directory} ({shown}); move that folder "
                            "away to start the run over")
    return None

  def close(self) -> None:
    """Waits for saves in flight (reporting one that failed), then releases the manager."""
    with interrupts_deferred():
      try:
        self._check_previous_save()
      finally:
        self.manager.close()

  def _restore_verified(self, like: TrainState, step: int):
    """(None, (state, record)) for an intact checkpoint, else (what is wrong, None)."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
    except Exception as e:  # orbax reports damage as many types: missing files, bad JSON, ...
      return f"unreadable: {type(e).__name__}: {str(e).splitlines()[0][:160]}", None
    state, record = restored["state"], dict(restored["record"] or {})
    digest = record.pop(_DIGEST, None)
    if digest is not None and digest != tree_digest(state):
      return "its arrays differ from the digest saved with them", None
    return None, (state, record)

  def _set_aside(self, steps: list[int]) -> None:
    """Moves damaged checkpoints to `<directory>.damaged/`, kept for inspection, out of the way."""
    if not steps:
      return
    aside = self.directory + ".damaged"
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      target = os.path.join(aside, str(step))
      shutil.rmtree(target, ignore_errors=True)
      os.replace(os.path.join(self.directory, str(step)), target)
    self.manager.reload()

  def _check_previous_save(self) -> None:
    try:
      self.manager.wait_until_finished()
      self.manager.check_for_errors()
    except Exception as e:  # the background save's own exception, re-raised here
      step, self._saving = self._saving, None
      raise self._save_failed(step, e) from None
    self._saving = None

  def _check_room(self, step: int, array_bytes: int) -> None:
    """Refuses a save that cannot fit on the disk or under the process's file-size limit."""
    need = array_bytes + _METADATA_BYTES
    free = shutil.disk_usage(self.directory).free
    file_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if free < need:
      raise self._save_failed(step, f"{free / 2**20:.1f} MiB free on the disk, about "
                                    f"{need / 2**20:.1f} MiB needed")
    if file_limit != resource.RLIM_INFINITY and file_limit < array_bytes + (64 << 10):
      raise self._save_failed(step, f"the file-size limit (ulimit -f) is {file_limit} bytes; the "
                                    f"state's {array_bytes} bytes may go into one file")

  def _save_failed(self, step: int | None, error: Exception | str) -> CheckpointError:
    cause = error if isinstance(error, str) else (
        getattr(error, "strerror", None) or f"{type(error).__name__}: {error}")
    kept = [s for s in self.manager.all_steps() if s != step]
    return CheckpointError(
        f"saving the checkpoint of step {step} into {self.directory} failed ({cause}); "
        f"{'the checkpoints of steps ' + str(sorted(kept)) + ' are' if kept else 'nothing is'} "
        "kept there. Make room (free disk space, raise ulimit -f, or pass another --workdir) and "
        "run the same command again to resume")
