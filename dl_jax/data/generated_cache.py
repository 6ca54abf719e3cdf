"""Generated datasets kept on disk after their first generation.

MNIST-1D takes seconds to generate (and to import its package) but milliseconds to load: the
arrays are stored once under $XDG_CACHE_HOME/dl_jax/data (else ~/.cache/dl_jax/data), keyed by
everything that shapes them (generator arguments, package version). A file that is missing,
unreadable or not what was stored is generated again; a folder that cannot be written only means
generating every time. Set DL_JAX_DATA_CACHE=0 to always generate.
"""

import hashlib
import json
import os
import zipfile
from typing import Callable

import numpy as np


def directory() -> str | None:
  if os.environ.get("DL_JAX_DATA_CACHE") == "0":
    return None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "dl_jax", "data")


def cached_arrays(name: str, key: dict, generate: Callable[[], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
  """`generate()`'s arrays, from the cache when an entry for (`name`, `key`) is there. The key
  names the arrays too, so an entry that lacks one is generated again."""
  folder = directory()
  if folder is None:
    return generate()
  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
  path = os.path.join(folder, f"{name}-{digest}.npz")
  arrays = _load(path)
  if arrays is None or set(arrays) != set(key["arrays"]):
    arrays = generate()
    _store(path, arrays)
  return arrays


def _load(path: str) -> dict[str, np.ndarray] | None:
  try:
    with np.load(path, allow_pickle=False) as stored:
      return {k: stored[k] for k in stored.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile):
    return None


def _store(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Written beside its final name and renamed over it: a reader never sees half a file."""
  temporary = f"{path}.{os.getpid()}.tmp.npz"
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
  except OSError:
    if os.path.exists(temporary):
      os.remove(temporary)
