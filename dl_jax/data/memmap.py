"""Keep memory-mapped datasets out of the process's resident memory.

Pages of a memory-mapped file that a process has touched count in its resident set until the
mapping drops them. A mini-batch stream touches every page once per epoch, so without a release
the resident set grows to the file size. `release_pages` tells the kernel the process no longer
needs the mapped pages; clean file pages stay in the page cache and are re-read on demand.
"""

import mmap

import numpy as np


def release_pages(array: np.ndarray) -> None:
  """Drops the resident pages of `array`'s file mapping (no-op for in-memory arrays)."""
  mapping = getattr(array, "_mmap", None)  # set by np.memmap and np.load(mmap_mode=...)
  if isinstance(mapping, mmap.mmap) and not mapping.closed:
    mapping.madvise(mmap.MADV_DONTNEED)
