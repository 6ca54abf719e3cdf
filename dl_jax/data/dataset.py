"""A dataset: train / validation / test splits plus what a model needs to know about them."""

import dataclasses
import hashlib
import math

import numpy as np

from dl_jax.data.errors import DataError
from dl_jax.data.memmap import note_read
from dl_jax.data.split import Split, stratified_positions

_CHECK_ROWS = 4096  # rows per chunk when scanning inputs for NaN/Inf (bounded memory)
_FINGERPRINT_ROWS = 16  # rows of each split hashed, with every label, into the fingerprint
MAX_CLASSES = 100_000  # the most classes labels may imply unless a caller raises it


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Splits and metadata. `val` is carved from train by `with_validation` (None before)."""

  name: str
  source: str
  train: Split
  test: Split
  num_classes: int
  val: Split | None = None

  @property
  def input_shape(self) -> tuple[int, ...]:
    return self.train.example_shape

  @property
  def metadata(self) -> dict:
    return {
        "name": self.name, "source": self.source, "input_shape": list(self.input_shape),
        "num_classes": self.num_classes, "num_train": len(self.train),
        "num_val": len(self.val) if self.val is not None else 0, "num_test": len(self.test),
        "fingerprint": self.fingerprint(),
    }

  def fingerprint(self) -> str:
    """A short hash of every split's size, every label and a spread sample of input rows: a
    resumed run refuses data that changed since it began, at the cost of reading a few rows."""
    digest = hashlib.sha256()
    for name, split in self.splits().items():
      positions = np.unique(np.linspace(0, len(split) - 1, _FINGERPRINT_ROWS).astype(np.int64))
      sample = split.gather(positions)
      digest.update(f"{name}:{len(split)}:{split.x.dtype}:{split.example_shape}".encode())
      digest.update(np.ascontiguousarray(split.labels).tobytes())
      digest.update(np.ascontiguousarray(sample["x"]).tobytes())
    return digest.hexdigest()[:16]

  def splits(self) -> dict[str, Split]:
    """The splits that exist, in reporting order."""
    named = {"train": self.train, "val": self.val, "test": self.test}
    return {k: v for k, v in named.items() if v is not None}


def with_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
  """Carves a stratified, seeded validation split out of train; test is never touched."""
  if dataset.val is not None:
    raise ValueError(f"dataset {dataset.name!r} already has a validation split")
  if fraction == 0:
    return dataset
  if not 0 < fraction < 1:
    raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
  _check_stratifiable(dataset, fraction)
  keep, held = stratified_positions(dataset.train.labels, fraction, seed)
  return dataclasses.replace(
      dataset, train=dataset.train.subset(keep), val=dataset.train.subset(held))


def _check_stratifiable(dataset: Dataset, fraction: float) -> None:
  """A stratified split needs two examples of each class and room for every class on each side."""
  if dataset.train.labels.ndim != 1:
    return
  counts = np.bincount(dataset.train.labels)
  present = np.flatnonzero(counts)
  rarest = present[np.argmin(counts[present])]
  held = math.ceil(fraction * len(dataset.train))
  hint = "pass --val_fraction=0 (no validation split) or add training examples"
  if counts[rarest] < 2:
    raise DataError(f"{dataset.source}: class {rarest} has only {counts[rarest]} training example; "
                    f"a stratified validation split needs 2 of each class: {hint}.")
  if not len(present) <= held <= len(dataset.train) - len(present):
    raise DataError(f"{dataset.source}: holding out {held} of {len(dataset.train)} training "
                    f"examples leaves a side without room for all {len(present)} classes: {hint}.")


def make_dataset(name: str, source: str, train: Split, test: Split,
                 num_classes: int | None = None, max_classes: int = MAX_CLASSES) -> Dataset:
  """Checks both splits and builds the Dataset; `num_classes` defaults to max train label + 1,
  and a dataset whose labels imply more than `max_classes` classes is refused."""
  for split_name, split in (("train", train), ("test", test)):
    _check_lengths(source, split_name, split)
    _check_input_dtype(source, split_name, split.x)
    _check_label_dtype(source, split_name, split.y)
  if num_classes is None:
    num_classes = int(train.y.max()) + 1 if len(train.y) else 0
  if num_classes > max_classes:
    raise DataError(f"{source}: labels up to {num_classes - 1} imply {num_classes} classes, more "
                    f"than the {max_classes} allowed; relabel the classes 0 .. K-1, or raise "
                    "--max_classes if the dataset really has that many.")
  for split_name, split in (("train", train), ("test", test)):
    _check_label_range(source, split_name, split.y, num_classes)
    _check_finite(source, split_name, split.x)
  if train.example_shape != test.example_shape:
    raise DataError(f"{source}: train examples have shape {train.example_shape} but test "
                    f"examples {test.example_shape}; both splits must share one example shape.")
  return Dataset(name=name, source=source, train=train, test=test, num_classes=num_classes)


def _check_lengths(source, split_name, split: Split):
  if split.x.ndim < 2:
    raise DataError(f"{source}: x_{split_name} has shape {split.x.shape}; expected "
                    "[examples, ...features] with at least 2 dimensions.")
  if len(split.x) != len(split.y):
    raise DataError(f"{source}: {len(split.y)} labels for {len(split.x)} examples in "
                    f"{split_name}; y_{split_name} needs one label per example.")
  if len(split.y) == 0:
    raise DataError(f"{source}: the {split_name} split is empty.")
  if math.prod(split.x.shape[1:]) == 0:
    raise DataError(f"{source}: x_{split_name} has shape {split.x.shape}: examples with no "
                    "features.")


def _check_input_dtype(source, split_name, x):
  if x.dtype.kind not in "biuf":
    raise DataError(f"{source}: x_{split_name} has dtype {x.dtype}; inputs must be real numbers "
                    "(bool, integer or floating point).")


def _check_label_dtype(source, split_name, y):
  if not np.issubdtype(y.dtype, np.integer):
    raise DataError(f"{source}: y_{split_name} has dtype {y.dtype}; class labels must be "
                    "integers 0 .. num_classes-1.")


def _check_label_range(source, split_name, y, num_classes):
  low, high = int(y.min()), int(y.max())
  if low < 0 or high >= num_classes:
    raise DataError(f"{source}: y_{split_name} has labels in [{low}, {high}], outside "
                    f"0 .. {num_classes - 1} ({num_classes} classes).")


def _check_finite(source, split_name, x):
  """Scans x in chunks, so a memory-mapped file is never resident all at once; values are checked
  as float32, the dtype they train in, so 1e300 (finite in float64) counts as Inf."""
  if not np.issubdtype(x.dtype, np.floating):
    return
  for start in range(0, len(x), _CHECK_ROWS):
    with np.errstate(over="ignore"):
      chunk = np.asarray(x[start:start + _CHECK_ROWS]).astype(np.float32)
    note_read(x, np.arange(start, start + len(chunk)))
    bad = ~np.isfinite(chunk)
    if bad.any():
      row = start + int(np.argmax(bad.reshape(len(chunk), -1).any(axis=1)))
      raise DataError(f"{source}: x_{split_name} holds NaN or Inf (first at example {row}; as "
                      "float32, values beyond +-3.4e38 are Inf); clean or drop those examples "
                      "before training.")
