"""Reads batches ahead in a background thread, so a training step need not wait for the disk.

numpy's gather from an array or a memory map releases the GIL, so one reader thread overlaps
reading batch k+1 with the (asynchronously dispatched) step on batch k. The batches, and their
order, are exactly those of the wrapped iterator; only when they are read changes.
"""

import itertools
import queue
import threading
from typing import Callable

_DONE = object()  # the reader's last item once `count` batches were read


class Prefetcher:
  """Yields `place(batch)` for the batches of `batches` (a BatchIterator), in order, read up to
  `size` ahead by one thread; `size=0` reads each batch in `next()`, without a thread.

  `position` is the wrapped iterator's position after the last batch *handed out*, not after
  the last one read, so a checkpoint that saves it resumes exactly. `count` limits the batches
  the thread reads (None: no limit). An exception in the reader is raised, with its message and traceback,
  by the `next()` that would have returned its batch. Use it as a context manager, or call
  `close()`: it stops and joins the reader.
  """

  def __init__(self, batches, size: int = 2, count: int | None = None,
               place: Callable = lambda batch: batch):
    if size < 0:
      raise ValueError(f"prefetch size must be >= 0, got {size}")
    self._batches, self._place = batches, place
    self.position = batches.position
    self._queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._thread = None
    if size:
      self._thread = threading.Thread(target=self._read_ahead, args=(count,),
                                      name="batch-prefetch", daemon=True)
      self._thread.start()

  def _read(self):
    return self._place(next(self._batches)), self._batches.position

  def _read_ahead(self, count: int | None) -> None:
    try:
      for _ in range(count) if count is not None else itertools.count():
        if not self._put(self._read()):
          return
      self._put(_DONE)
    except BaseException as error:  # handed to the consumer, who raises it
      self._put(error)

  def _put(self, item) -> bool:
    """Waits for room in the queue; False once the consumer has closed."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.05)
        return True
      except queue.Full:
        pass
    return False

  def __iter__(self):
    return self

  def __next__(self):
    if self._stop.is_set():
      raise StopIteration
    item = self._queue.get() if self._thread else self._read()
    if item is _DONE or isinstance(item, BaseException):
      self.close()
      if item is _DONE:
        raise StopIteration
      raise item
    batch, self.position = item
    return batch

  def close(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()
