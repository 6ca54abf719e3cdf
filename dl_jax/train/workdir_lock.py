"""One run at a time in a workdir: an advisory `fcntl.flock` on `<workdir>/.lock`.

Two processes training into one workdir would interleave checkpoints and metrics. The lock is
taken before anything is written there and released when the run ends, or by the kernel when the
process dies (SIGKILL included), so a stale lock file never blocks the next run: only a live
holder does. The file keeps the holder's pid, to name it in the error. The processes of one
multi-process run share their workdir: only process 0, the one that writes, takes the lock.
"""

import contextlib
import fcntl
import os

from dl_jax.errors import UserError
from dl_jax.train.writers import is_writer

LOCK_NAME = ".lock"
_held: set[str] = set()  # workdirs this process holds: taking one again inside is a no-op
_kept: list[int] = []  # descriptors `hold` locked, kept open until the process ends


class WorkdirError(UserError, RuntimeError):
  """The workdir cannot be used: not a directory, not writable."""


class WorkdirBusyError(WorkdirError):
  """Another live process holds the workdir."""


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds `workdir` for this process inside the block; WorkdirBusyError if another one does."""
  key = os.path.realpath(workdir)
  if key in _held or not is_writer():
    yield
    return
  fd = _acquire(workdir)
  _held.add(key)
  try:
    yield
  finally:
    _held.discard(key)
    os.close(fd)  # closing the descriptor releases the lock


def hold(workdir: str) -> None:
  """Takes `workdir` for the rest of this process's life (the kernel releases it at exit):
  what a research script does once its config is checked, before it writes anything."""
  key = os.path.realpath(workdir)
  if key not in _held and is_writer():
    _kept.append(_acquire(workdir))
    _held.add(key)


def _acquire(workdir: str) -> int:
  """The open, locked descriptor of `<workdir>/.lock`, which names this process's pid."""
  fd = _open_lock_file(workdir)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _holder(fd)
    os.close(fd)
    raise WorkdirBusyError(f"workdir {workdir} is in use by pid {holder}; wait for that run to "
                           "end, or pass another --workdir") from None
  os.ftruncate(fd, 0)
  os.write(fd, str(os.getpid()).encode())
  return fd


def _open_lock_file(workdir: str) -> int:
  try:
    os.makedirs(workdir, exist_ok=True)
    return os.open(os.path.join(workdir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} cannot be used ({e.strerror}: {e.filename}); pass a "
                       "--workdir that is a writable directory") from None


def _holder(fd: int) -> str:
  """The pid the holder wrote (a few bytes at most), or 'unknown' before it has written it."""
  return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
