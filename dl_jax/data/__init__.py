"""Datasets (embedded or the user's own files), splits and seeded, resumable mini-batches."""

from dl_jax.data.batches import BatchGroups, BatchIterator
from dl_jax.data.dataset import MAX_CLASSES, Dataset, make_dataset, with_validation
from dl_jax.data.embedded import EMBEDDED
from dl_jax.data.errors import DataError
from dl_jax.data.bounded import read_idx
from dl_jax.data.files import load_idx_dir, load_npy_dir, load_npz
from dl_jax.data.load import load_dataset
from dl_jax.data.split import Split

__all__ = [
    "BatchGroups", "BatchIterator", "DataError", "Dataset", "EMBEDDED", "MAX_CLASSES", "Split", "load_dataset",
    "load_idx_dir", "load_npy_dir", "load_npz", "make_dataset", "read_idx", "with_validation",
]
