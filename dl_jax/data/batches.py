"""Seeded mini-batches over a Split, resumable from its (epoch, index) position."""

import numpy as np

from dl_jax.data.split import Split


class BatchIterator:
  """Yields {'x', 'y'} batches forever, epoch after epoch.

  Epoch e visits the split in the order `permutation(seed, e)`; each batch is one indexing
  operation on the (possibly memory-mapped) arrays. `position` = (epoch, index of the next batch
  within the epoch) is all the state there is: an iterator built with the same split, batch size
  and seed and restored to a position yields exactly the batches the original would have.
  `shard=(i, n)` yields only the i-th of n equal slices of every batch (process i's rows when n
  processes feed one data-parallel step); the n slices in order make up the whole batch.
  """

  def __init__(self, split: Split, batch_size: int, seed: int, drop_remainder: bool = True,
               position: tuple[int, int] = (0, 0), shard: tuple[int, int] = (0, 1)):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_remainder and batch_size > len(split):
      raise ValueError(f"batch_size {batch_size} exceeds the {len(split)} training examples; "
                       "use a smaller batch or drop_remainder=False")
    self.split, self.batch_size, self.seed = split, batch_size, seed
    self.drop_remainder = drop_remainder
    self.shard_index, self.num_shards = shard
    self.epoch, self.index = (int(p) for p in position)
    self._order_epoch, self._order = None, None

  @property
  def batches_per_epoch(self) -> int:
    n, b = len(self.split), self.batch_size
    return n // b if self.drop_remainder else -(-n // b)

  @property
  def position(self) -> tuple[int, int]:
    return self.epoch, self.index

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The permutation of the split that epoch `epoch` visits."""
    return np.random.default_rng([self.seed, epoch]).permutation(len(self.split))

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return self.split.gather(self._next_positions())

  def next_batches(self, count: int) -> dict[str, np.ndarray]:
    """The next `count` batches stacked [count, batch, ...], read with one indexing operation."""
    return gather_stacked(self.split, self.next_positions(count))

  def next_positions(self, count: int) -> np.ndarray:
    """Positions in the split of the next `count` batches, [count, batch], without reading them."""
    positions = [self._next_positions() for _ in range(count)]
    if len({len(p) for p in positions}) > 1:
      raise ValueError("several batches at once need equal batch sizes; use drop_remainder=True")
    return np.stack(positions)

  def _next_positions(self) -> np.ndarray:
    if self.index >= self.batches_per_epoch:
      self.epoch, self.index = self.epoch + 1, 0
    if self._order_epoch != self.epoch:
      self._order_epoch, self._order = self.epoch, self.epoch_order(self.epoch)
    start = self.index * self.batch_size
    self.index += 1
    # Sorted positions read a memory-mapped file front to back; the batch's contents are unchanged.
    positions = np.sort(self._order[start:start + self.batch_size])
    if self.num_shards == 1:
      return positions
    size = len(positions) // self.num_shards
    return positions[self.shard_index * size:(self.shard_index + 1) * size]


def gather_stacked(split: Split, positions: np.ndarray) -> dict[str, np.ndarray]:
  """The examples at `positions` (any shape, e.g. [steps, seeds, batch]), read with one indexing
  operation and shaped [*positions.shape, ...]."""
  batch = split.gather(positions.reshape(-1))
  return {k: v.reshape(*positions.shape, *v.shape[1:]) for k, v in batch.items()}


class BatchGroups:
  """The batches of `batches` (a BatchIterator) read `sizes[i]` at a time, each group stacked
  [size, batch, ...] by one indexing operation: the input of one call that runs `size` steps.
  `position` is the wrapped iterator's, so a checkpoint resumes it exactly.

  With a list of iterators (one per model stacked on a leading axis, e.g. one per seed), each
  group is [size, models, batch, ...], model i's batches from iterator i, and `position` lists
  their positions. Any iterator with `next_batches(count)` and `position` serves (e.g. pairs).
  """

  def __init__(self, batches: BatchIterator | list[BatchIterator], sizes: list[int]):
    self.batches, self._sizes = batches, iter(sizes)

  @property
  def position(self) -> tuple[int, int] | list[tuple[int, int]]:
    if isinstance(self.batches, list):
      return [it.position for it in self.batches]
    return self.batches.position

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    size = next(self._sizes)
    if not isinstance(self.batches, list):
      return self.batches.next_batches(size)
    if all(isinstance(it, BatchIterator) for it in self.batches):  # one gather for all
      positions = np.stack([it.next_positions(size) for it in self.batches], axis=1)
      return gather_stacked(self.batches[0].split, positions)
    groups = [it.next_batches(size) for it in self.batches]
    return {key: np.stack([g[key] for g in groups], axis=1) for key in groups[0]}
