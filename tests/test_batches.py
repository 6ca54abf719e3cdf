import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dl_jax.data import BatchIterator, Split, memmap


def _split(n: int) -> Split:
  # x carries the example's own index so a batch says which examples it holds
  return Split(np.arange(n, dtype=np.float32)[:, None], np.arange(n, dtype=np.int32) % 7)


def _epoch(iterator) -> list[np.ndarray]:
  return [next(iterator)["x"][:, 0].astype(int) for _ in range(iterator.batches_per_epoch)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), batch_size=st.integers(1, 64), seed=st.integers(0, 2**31))
def test_every_example_exactly_once_per_epoch(n, batch_size, seed):
  iterator = BatchIterator(_split(n), batch_size, seed, drop_remainder=False)
  for _ in range(2):
    seen = np.concatenate(_epoch(iterator))
    assert sorted(seen.tolist()) == list(range(n))


def test_drop_remainder_gives_full_batches_without_repeats():
  iterator = BatchIterator(_split(103), 10, seed=0, drop_remainder=True)
  batches = _epoch(iterator)
  assert len(batches) == 10 and all(len(b) == 10 for b in batches)
  assert len(set(np.concatenate(batches).tolist())) == 100


def test_order_is_seeded():
  first = np.concatenate(_epoch(BatchIterator(_split(100), 10, seed=5)))
  again = np.concatenate(_epoch(BatchIterator(_split(100), 10, seed=5)))
  other = np.concatenate(_epoch(BatchIterator(_split(100), 10, seed=6)))
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  iterator = BatchIterator(_split(100), 10, seed=5)
  assert not np.array_equal(np.concatenate(_epoch(iterator)), np.concatenate(_epoch(iterator)))


def test_restored_position_yields_the_same_batches():
  original = BatchIterator(_split(53), 8, seed=1)
  for _ in range(9):  # into the second epoch (6 batches per epoch)
    next(original)
  restored = BatchIterator(_split(53), 8, seed=1, position=original.position)
  assert original.position == (1, 3)
  for _ in range(10):
    np.testing.assert_array_equal(next(original)["x"], next(restored)["x"])


def test_memory_mapped_and_in_memory_batches_agree(tmp_path):
  x = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
  y = np.arange(64, dtype=np.int32) % 3
  np.save(tmp_path / "x.npy", x)
  mapped = Split(np.load(tmp_path / "x.npy", mmap_mode="r"), y)
  in_memory = Split(x, y)
  a, b = BatchIterator(mapped, 16, seed=2), BatchIterator(in_memory, 16, seed=2)
  for _ in range(8):
    batch_a, batch_b = next(a), next(b)
    np.testing.assert_array_equal(batch_a["x"], batch_b["x"])
    np.testing.assert_array_equal(batch_a["y"], batch_b["y"])


def test_iterator_over_a_subset_only_visits_its_rows():
  subset = _split(100).subset(np.arange(0, 100, 4))
  seen = np.concatenate(_epoch(BatchIterator(subset, 5, seed=0)))
  assert sorted(seen.tolist()) == list(range(0, 100, 4))


def test_bad_batch_sizes():
  with pytest.raises(ValueError, match="batch_size must be >= 1"):
    BatchIterator(_split(10), 0, seed=0)
  with pytest.raises(ValueError, match="exceeds the 10 training examples"):
    BatchIterator(_split(10), 11, seed=0)


def _resident_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.parametrize("written_by", ["memory map", "write calls"])
def test_streaming_a_memory_mapped_file_keeps_it_out_of_resident_memory(tmp_path, monkeypatch,
                                                                       written_by):
  # A file written by write calls sits in the page cache in large folios on recent kernels, so
  # one fault can map up to 2 MiB of it: the release budget must count that.
  monkeypatch.setattr(memmap, "RELEASE_EVERY_BYTES", 32 * 2**20)
  rows = 48 * 2**20 // (4 * 1024)  # a 48 MiB file of 1024-float rows
  if written_by == "write calls":
    np.save(tmp_path / "x.npy", np.ones((rows, 1024), np.float32))
  else:
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                       shape=(rows, 1024))
    mapped[:] = 1.0
    del mapped
  split = Split(np.load(tmp_path / "x.npy", mmap_mode="r"), np.zeros(rows, np.int32))
  iterator = BatchIterator(split, 64, seed=0)
  start, peak = _resident_mib(), 0.0
  for _ in range(iterator.batches_per_epoch):  # reads every row of the file once
    assert next(iterator)["x"].sum() == 64 * 1024
    peak = max(peak, _resident_mib())
  assert peak - start < 16  # without releases the mapping alone would add ~48 MiB


def test_next_batches_equals_consecutive_batches():
  one, many = BatchIterator(_split(50), 8, seed=3), BatchIterator(_split(50), 8, seed=3)
  stacked = many.next_batches(9)  # crosses the epoch boundary (6 batches per epoch)
  assert stacked["x"].shape == (9, 8, 1)
  for i in range(9):
    np.testing.assert_array_equal(stacked["x"][i], next(one)["x"])
  assert many.position == one.position


def test_reads_are_counted_as_the_large_blocks_they_can_map():
  block = memmap.FAULT_BLOCK_BYTES
  # 1000 neighbouring 3136-byte rows (3.1 MB) span two 2 MiB blocks; rows far apart, one each
  assert memmap.touched_bytes(np.arange(1000), 3136) == 2 * block
  assert memmap.touched_bytes(np.array([0, 10_000, 20_000]), 3136) == 3 * block
  # a row longer than a block maps the blocks it covers
  assert memmap.touched_bytes(np.array([0]), 5 * block) == 5 * block


def _mapped_rows(tmp_path, rows: int = 500, width: int = 7):
  np.save(tmp_path / "x.npy", np.arange(rows * width, dtype=np.float32).reshape(rows, width))
  return np.load(tmp_path / "x.npy", mmap_mode="r")


def test_read_rows_of_a_mapped_file_equal_indexing_it(tmp_path):
  mapped = _mapped_rows(tmp_path)
  rows = np.array([3, 4, 5, 499, 0, 1, 7, 7, 6])  # runs, repeats, out of order, both ends
  for view in (mapped, mapped[100:], mapped[5::3], mapped[::-1], mapped[:, 2:]):
    for wanted in (rows[rows < len(view)], np.arange(len(view)), np.array([], np.int64)):
      got = memmap.read_rows(view, wanted)
      assert type(got) is np.ndarray
      np.testing.assert_array_equal(got, np.asarray(view)[wanted])
  with pytest.raises(IndexError, match="rows 0..500 asked of an array of 500 rows"):
    memmap.read_rows(mapped, np.array([0, 500]))


def test_read_rows_never_touches_the_mapping(tmp_path, monkeypatch):
  monkeypatch.setattr(memmap, "RELEASE_EVERY_BYTES", 2**62)  # no release would ever save us
  rows = 48 * 2**20 // (4 * 1024)
  np.save(tmp_path / "x.npy", np.ones((rows, 1024), np.float32))
  mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
  start = _resident_mib()
  for first in range(0, rows, 1024):
    assert memmap.read_rows(mapped, np.arange(first, first + 1024)).sum() == 1024 * 1024
  assert _resident_mib() - start < 16  # reading through the mapping would add ~48 MiB


def test_read_rows_of_a_truncated_file_says_so(tmp_path):
  mapped = _mapped_rows(tmp_path)
  os.truncate(tmp_path / "x.npy", 128 + 10 * 7 * 4)  # the header and 10 rows survive
  np.testing.assert_array_equal(memmap.read_rows(mapped, np.arange(10))[9], np.arange(63, 70))
  with pytest.raises(OSError, match="x.npy ended early: it is shorter than its"):
    memmap.read_rows(mapped, np.array([9, 10]))


def test_read_rows_of_a_deleted_file_reads_the_mapping(tmp_path):
  mapped = _mapped_rows(tmp_path)
  os.remove(tmp_path / "x.npy")
  np.testing.assert_array_equal(memmap.read_rows(mapped, np.array([2, 0])),
                                np.arange(35, dtype=np.float32).reshape(5, 7)[[2, 0]])
