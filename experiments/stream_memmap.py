"""Streams mini-batches from a memory-mapped .npy file and reports peak resident memory.

    python -m experiments.stream_memmap --size_gb=1 && python -m experiments.stream_memmap --size_gb=4

Peak RSS should be nearly the same for both sizes: only the current batch is resident. With
`--mode=naive` the same batches are read by plain np.memmap fancy indexing, whose touched pages
stay mapped, so peak RSS grows with the amount of the file read.
"""

import os
import resource
import time

import numpy as np
from absl import flags

from dl_jax import cli
from dl_jax.data import BatchIterator, Split

def write_file(path: str, rows: int, row_floats: int, chunk_rows: int = 16384) -> None:
  """Writes a [rows, row_floats] float32 .npy file chunk by chunk (never whole in memory)."""
  array = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.float32,
                                    shape=(rows, row_floats))
  rng = np.random.default_rng(0)
  for start in range(0, rows, chunk_rows):
    stop = min(start + chunk_rows, rows)
    array[start:stop] = rng.standard_normal((stop - start, row_floats), dtype=np.float32)
    array.flush()
  del array
  os.replace(path + ".tmp", path)


def current_rss_mb() -> float:
  """Resident set size now (file-backed mapped pages included), from /proc/self/statm."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv):
  del argv
  f = flags.FLAGS
  rows = int(f.size_gb * 2**30 / (4 * f.row_floats))
  os.makedirs(f.dir, exist_ok=True)
  path = os.path.join(f.dir, f"x_{rows}x{f.row_floats}.npy")
  if not os.path.exists(path):
    write_file(path, rows, f.row_floats)
  x = np.load(path, mmap_mode="r")
  iterator = BatchIterator(Split(x, np.zeros(rows, np.int32)), f.batch_size, f.seed)
  num_batches = min(f.num_batches or iterator.batches_per_epoch, iterator.batches_per_epoch)
  order = iterator.epoch_order(0)  # naive mode reads the very same batches
  rss_start, rss_max = current_rss_mb(), 0.0
  start = time.perf_counter()
  for i in range(num_batches):
    if f.mode == "split":
      batch = next(iterator)["x"]
    else:
      batch = np.asarray(x[np.sort(order[i * f.batch_size:(i + 1) * f.batch_size])])
    rss_max = max(rss_max, current_rss_mb()) if i % 16 == 0 else rss_max
  seconds = time.perf_counter() - start
  print(f"file {os.path.getsize(path) / 2**30:.2f} GiB ({rows} x {f.row_floats} float32), "
        f"mode {f.mode}, batch {f.batch_size}, {num_batches} batches "
        f"({num_batches * f.batch_size * f.row_floats * 4 / 2**30:.2f} GiB read) in {seconds:.1f}s "
        f"= {num_batches / seconds:.0f} batches/s; RSS {rss_start:.0f} MiB at start, "
        f"{rss_max:.0f} MiB at most while streaming; process peak RSS {peak_rss_mb():.0f} MiB")


def define_flags() -> None:
  flags.DEFINE_float("size_gb", 1.0, "Size of the float32 input file to stream, in GiB.")
  flags.DEFINE_integer("row_floats", 784, "Floats per example (784: an MNIST image).",
                       lower_bound=1)
  flags.DEFINE_integer("batch_size", 128, "Examples per batch.", lower_bound=1)
  flags.DEFINE_integer("num_batches", 0, "Batches to stream; 0 streams one whole epoch.",
                       lower_bound=0)
  flags.DEFINE_enum("mode", "split", ["split", "naive"],
                    "dl_jax Split, or plain np.memmap indexing.")
  flags.DEFINE_string("dir", "/tmp/dl_jax_stream",
                      "Where the generated files live (kept for reuse).")
  flags.DEFINE_integer("seed", 0, "Batch order seed.", lower_bound=0)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
