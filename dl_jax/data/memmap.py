"""Keep memory-mapped datasets out of the process's resident memory.

Batches of rows are read from the file with `pread` into a fresh array (`read_rows`): the mapping
is never touched, so nothing joins the resident set and no page faults are taken. A random batch
of 128 MNIST-sized rows costs ~0.3 ms of CPU this way, against ~1.1 ms for fancy indexing through
the mapping plus the releases below (4 GiB file in the page cache; measured on this 2-core CPU).

Rows that are not in the page cache must come from the disk, and a pread waits for its read, so
one pread after another gives the disk one request at a time (queue depth 1). So each run is
first read without waiting (preadv RWF_NOWAIT: whatever the page cache holds, at no extra cost);
the kernel is then told it will need every part left over (posix_fadvise WILLNEED, which queues
their reads asynchronously, all at once), and only then are those parts read with blocking preads.
Random batches of 256 rows of the 4 GiB file, 300 of them, file evicted first: 15-17 ms a batch one
pread after another, 3.9-4.1 ms so; file cached: 0.75-0.84 ms either way (advising every run even
when cached cost 0.95-0.99 ms). In `experiments.minibatch --parts=out_of_core` it changes nothing
measurable (265-305 steps/s, 9-14% of the time waiting for batches, both readers, the file cached
or evicted before the run): the dataset's NaN/Inf check scans the whole file when it is loaded,
which leaves it all in this VM's page cache (23 GiB of RAM) before training reads a batch; the
wait left there is the 2 cores being shared, not the disk. It matters when a file exceeds the cache.

Code that reads through the mapping itself (slices, scans) keeps it small with releases. Pages
of a memory-mapped file that a process has touched count in its resident set until the mapping
drops them. A mini-batch stream touches every page once per epoch, so without a release
the resident set grows to the file size. After every `RELEASE_EVERY_BYTES` read from a mapping we
tell the kernel the process no longer needs its pages (madvise DONTNEED); clean file pages stay in
the page cache and are mapped again on demand. A release and the page faults that follow it cost
time, so it happens once per budget, not per batch. A fault can map far more than the page it
needs: up to 64 KiB of neighbouring cached pages ("fault-around"), and on recent kernels a whole
large folio of the page cache, up to 2 MiB (measured on Linux 6.18 / ext4: 50 random batches of 256
rows left 2.3 GiB of a 4 GiB file resident when each row was counted as 64 KiB). So a read is
counted as every 2 MiB block of the file that its rows fall in: a random batch of rows far apart
counts 2 MiB a row (so 256 random rows exceed the budget: a release every batch), a run of
neighbouring rows only the blocks it spans. The release goes through ctypes, which lets other
threads run meanwhile: `mmap.madvise` holds the GIL for the ~0.5 ms a 4 GiB mapping takes,
stalling the training loop while a prefetch thread releases.
"""

import ctypes
import errno
import mmap
import os
import threading

import numpy as np

RELEASE_EVERY_BYTES = 256 * 2**20
FAULT_BLOCK_BYTES = 2 * 2**20  # the most one fault maps: a PMD-sized large folio
_read_since_release: dict[int, int] = {}  # id(mapping) -> bytes touched since its last release
_lock = threading.Lock()  # a prefetch thread and the evaluation may read one mapping at once
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _mapping(array: np.ndarray) -> mmap.mmap | None:
  mapping = getattr(array, "_mmap", None)  # set by np.memmap and np.load(mmap_mode=...)
  return mapping if isinstance(mapping, mmap.mmap) and not mapping.closed else None


def read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """`array[rows]` as an in-memory array; a memory-mapped array's rows are read with pread, one
  call per run of rows that lie back to back in the file. Other arrays are indexed as usual, and
  so is a mapping whose file can no longer be opened (deleted or moved since it was mapped)."""
  rows = np.asarray(rows, dtype=np.int64).reshape(-1)
  position = _file_position(array)
  if position is not None:
    if rows.size and (rows.min() < 0 or rows.max() >= len(array)):
      raise IndexError(f"rows {rows.min()}..{rows.max()} asked of an array of {len(array)} rows")
    try:
      return _pread_rows(array, rows, position)
    except FileNotFoundError:
      pass
  result = np.asarray(array[rows])
  note_read(array, rows)
  return result


def _pread_rows(array: np.ndarray, rows: np.ndarray, position: int) -> np.ndarray:
  out = np.empty((len(rows), *array.shape[1:]), array.dtype)
  row_bytes = out.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
  runs = _runs(rows) if array.strides[0] == row_bytes else [(i, i + 1) for i in range(len(rows))]
  buffer = memoryview(out.reshape(-1).view(np.uint8))
  reads = [(buffer[start * row_bytes:stop * row_bytes],
            position + int(rows[start]) * array.strides[0]) for start, stop in runs]
  with open(array.filename, "rb", buffering=0) as f:
    if len(reads) > 1:  # one run: its pread alone is all the disk could be given at once
      reads = _read_cached(f.fileno(), reads)
      _advise_willneed(f.fileno(), reads)
    for view, offset in reads:
      if os.preadv(f.fileno(), [view], offset) != len(view):
        raise OSError(f"{array.filename} ended early: it is shorter than its {array.shape} "
                      f"array; the file was truncated or overwritten while in use")
  return out


def _read_cached(fd: int, reads: list) -> list:
  """Reads each (view, offset) as far as the page cache holds it, without waiting for the disk
  (RWF_NOWAIT); returns the (view, offset) parts still to read."""
  nowait = getattr(os, "RWF_NOWAIT", None)  # Linux only
  if nowait is None:
    return reads
  missed = []
  for view, offset in reads:
    try:
      got = os.preadv(fd, [view], offset, nowait)
    except BlockingIOError:
      got = 0
    except OSError as error:
      if error.errno == errno.EOPNOTSUPP:  # a file system without non-blocking reads
        return reads
      raise
    if got < len(view):
      missed.append((view[got:], offset + got))
  return missed


def _advise_willneed(fd: int, reads: list) -> None:
  """Queues the kernel's asynchronous readahead of every (view, offset) before the first pread
  waits, so the disk is given all of a batch's uncached reads at once, not one after another."""
  advise = getattr(os, "posix_fadvise", None)  # not on macOS
  if advise is not None and len(reads) > 1:
    for view, offset in reads:
      advise(fd, offset, len(view), os.POSIX_FADV_WILLNEED)


def _file_position(array: np.ndarray) -> int | None:
  """Byte offset in its file of a memory-mapped array's first row; None when its rows cannot be
  read with pread (not a file mapping, or a row is not one contiguous run of bytes)."""
  mapping = _mapping(array)
  if (mapping is None or getattr(array, "filename", None) is None or array.ndim == 0
      or not array[:1].flags.c_contiguous):
    return None
  mapping_start = np.frombuffer(mapping, np.uint8).ctypes.data
  # np.memmap maps from its offset rounded down to the allocation granularity, and its views
  # (slices) share that mapping and carry the same offset.
  file_start = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
  return file_start + array.ctypes.data - mapping_start


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
  """[start, stop) index ranges of `rows` in which each row follows the previous one."""
  breaks = np.flatnonzero(np.diff(rows) != 1) + 1
  edges = [0, *breaks.tolist(), len(rows)]
  return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def touched_bytes(rows: np.ndarray, row_bytes: int) -> int:
  """What reading `rows` can map: every FAULT_BLOCK_BYTES block that holds a byte of one of them."""
  starts = np.asarray(rows, dtype=np.int64) * row_bytes
  first, last = starts // FAULT_BLOCK_BYTES, (starts + row_bytes - 1) // FAULT_BLOCK_BYTES
  if row_bytes >= FAULT_BLOCK_BYTES:  # long rows: the blocks each one covers
    return int(np.sum(last - first + 1)) * FAULT_BLOCK_BYTES
  return len(np.unique(np.concatenate([first, last]))) * FAULT_BLOCK_BYTES  # <= 2 blocks a row


def note_read(array: np.ndarray, rows: np.ndarray) -> None:
  """Records that rows `rows` of `array` were read; releases its pages past the budget."""
  mapping = _mapping(array)
  if mapping is None:
    return
  row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
  touched = touched_bytes(rows, row_bytes)
  with _lock:
    total = _read_since_release.get(id(mapping), 0) + touched
    if total >= RELEASE_EVERY_BYTES:
      _release(mapping)
      total = 0
    _read_since_release[id(mapping)] = total


def _release(mapping: mmap.mmap) -> None:
  """madvise(MADV_DONTNEED) over the whole mapping, without holding the GIL."""
  view = np.frombuffer(mapping, np.uint8)
  if _libc.madvise(view.ctypes.data, view.nbytes, mmap.MADV_DONTNEED) != 0:
    raise OSError(ctypes.get_errno(), "madvise(MADV_DONTNEED) failed on a memory-mapped dataset")
