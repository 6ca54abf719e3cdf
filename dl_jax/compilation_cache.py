"""JAX's persistent compilation cache: a second identical run loads its programs from disk.

A program's cache key covers its HLO, the compile options, XLA flags, the jax/jaxlib version and
the device, so a hit is the same executable the compiler would build: results stay bit-identical
(tests check it). Experiments turn it on from `--compilation_cache` (experiment_config); a
library user calls `enable(directory)` before the first compilation.
"""

import collections
import os
import sys

_EVENTS = {"/jax/compilation_cache/cache_hits": "hits",
           "/jax/compilation_cache/cache_misses": "misses"}
_counts: collections.Counter = collections.Counter()
_listening = False


def default_directory() -> str:
  """$XDG_CACHE_HOME/dl_jax/jax (else ~/.cache/dl_jax/jax): a folder the user can see and delete."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "dl_jax", "jax")


def enable(directory: str) -> bool:
  """Caches every compiled program under `directory` ('' leaves the cache off). A folder that
  cannot be made or written is a warning, not an error: the run compiles as usual."""
  global _listening
  if not directory:
    return False
  import jax  # here, not above: a run's --help needs the default folder, not JAX
  try:
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK):
      raise PermissionError(f"{directory} is not writable")
  except OSError as e:
    print(f"warning: compilation cache off ({e}); pass --compilation_cache= to silence this",
          file=sys.stderr)
    return False
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small programs too
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if not _listening:
    jax.monitoring.register_event_listener(_count)
    _listening = True
  return True


def _count(event: str, **kwargs) -> None:
  del kwargs
  if event in _EVENTS:
    _counts[_EVENTS[event]] += 1


def counts() -> dict[str, int]:
  """Programs loaded from the cache ('hits') and compiled and stored ('misses') so far."""
  return {name: _counts[name] for name in _EVENTS.values()}
