"""A split (train, validation or test) as rows of arrays that may live on disk."""

import dataclasses

import numpy as np

from dl_jax.data.memmap import read_rows


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """Examples `rows` of `x` and `y`; `x` may be a memory-mapped file that never loads whole.

  `y` lives in memory (labels are small). `x_scale` multiplies gathered inputs, so uint8 pixels
  stay uint8 on disk and arrive as float32 in [0, 1].
  """

  x: np.ndarray
  y: np.ndarray
  rows: np.ndarray | None = None
  x_scale: float | None = None

  def __len__(self) -> int:
    return len(self.y) if self.rows is None else len(self.rows)

  @property
  def labels(self) -> np.ndarray:
    return self.y if self.rows is None else self.y[self.rows]

  @property
  def example_shape(self) -> tuple[int, ...]:
    return tuple(self.x.shape[1:])

  def subset(self, positions: np.ndarray) -> "Split":
    """The examples at `positions` (0 .. len-1) of this split, without copying `x`."""
    rows = positions if self.rows is None else self.rows[positions]
    return dataclasses.replace(self, rows=np.asarray(rows, dtype=np.int64))

  def gather(self, positions: np.ndarray) -> dict[str, np.ndarray]:
    """One batch {'x', 'y'}, read with a single indexing operation.

    Real-valued or scaled inputs arrive as float32; integer inputs (token ids) keep integers.
    Labels arrive as int32, one per example or one sequence per example.
    """
    rows = positions if self.rows is None else self.rows[positions]
    x = read_rows(self.x, rows)
    if self.x_scale is not None:
      x = x.astype(np.float32) * np.float32(self.x_scale)
    elif np.issubdtype(x.dtype, np.floating):
      x = x.astype(np.float32, copy=False)
    return {"x": x, "y": self.y[rows].astype(np.int32)}

  def materialize(self) -> dict[str, np.ndarray]:
    """The whole split in memory (for small splits and tests)."""
    return self.gather(np.arange(len(self)))


def stratified_positions(labels: np.ndarray, holdout: int | float, seed: int):
  """Seeded, class-stratified (keep, holdout) positions into `labels`."""
  from sklearn.model_selection import train_test_split  # ~1 s to import: only runs that hold out

  keep, held = train_test_split(
      np.arange(len(labels)), test_size=holdout, stratify=labels, random_state=seed)
  return np.sort(keep), np.sort(held)
