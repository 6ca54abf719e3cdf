"""read_rows reads what the page cache holds without waiting, then advises and reads the rest."""

import os

import numpy as np
import pytest

from dl_jax.data import memmap

pytestmark = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT") or not hasattr(os, "posix_fadvise"),
                                reason="Linux-only readahead")
ROWS = [np.array([5, 6, 7, 100, 3, 4, 499, 0]),        # runs, out of order, both ends
        np.sort(np.random.default_rng(0).choice(500, 64, replace=False)),
        np.array([9, 9, 10, 9, 2, 2]),                  # duplicates, a repeated run
        np.random.default_rng(1).integers(0, 500, 128)]


def _mapped(tmp_path):
  x = np.random.default_rng(0).standard_normal((500, 7, 3)).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  return x, np.load(tmp_path / "x.npy", mmap_mode="r")


def _record(monkeypatch, nowait_bytes):
  """Makes RWF_NOWAIT reads return at most `nowait_bytes(view_len)` bytes (-1: EAGAIN, as when
  nothing is cached) and records the advice and the blocking reads."""
  calls = {"advice": [], "blocking": []}
  real_preadv = os.preadv

  def preadv(fd, buffers, offset, flags=0):
    (view,) = buffers
    if flags & os.RWF_NOWAIT:
      n = nowait_bytes(len(view))
      if n < 0:
        raise BlockingIOError(11, "Resource temporarily unavailable")
      return real_preadv(fd, [memoryview(view)[:n]], offset, flags)
    calls["blocking"].append((offset, len(view)))
    return real_preadv(fd, buffers, offset, flags)

  monkeypatch.setattr(os, "preadv", preadv)
  monkeypatch.setattr(os, "posix_fadvise",
                      lambda fd, offset, length, advice: calls["advice"].append((offset, length,
                                                                                 advice)))
  return calls


def _run_spans(array, rows):
  """(file offset, bytes) of each run of back-to-back rows in `rows`."""
  row_bytes = array[0].nbytes
  return [(array.offset + int(rows[a]) * row_bytes, (b - a) * row_bytes)
          for a, b in memmap._runs(rows)]


@pytest.mark.parametrize("rows", ROWS)
def test_nothing_cached_advises_each_run_once_then_reads_it(tmp_path, monkeypatch, rows):
  x, mapped = _mapped(tmp_path)
  calls = _record(monkeypatch, lambda n: -1)
  np.testing.assert_array_equal(memmap.read_rows(mapped, rows), x[rows])
  spans = _run_spans(mapped, rows)
  assert calls["advice"] == [(o, n, os.POSIX_FADV_WILLNEED) for o, n in spans]
  assert calls["blocking"] == spans


@pytest.mark.parametrize("rows", ROWS)
def test_part_cached_advises_and_reads_only_the_rest(tmp_path, monkeypatch, rows):
  x, mapped = _mapped(tmp_path)
  calls = _record(monkeypatch, lambda n: n // 2 + 5)  # a cut inside a row
  np.testing.assert_array_equal(memmap.read_rows(mapped, rows), x[rows])
  rest = [(o + n // 2 + 5, n - n // 2 - 5) for o, n in _run_spans(mapped, rows)]
  rest = [(o, n) for o, n in rest if n > 0]
  assert calls["blocking"] == rest
  assert calls["advice"] == ([(o, n, os.POSIX_FADV_WILLNEED) for o, n in rest]
                             if len(rest) > 1 else [])


@pytest.mark.parametrize("rows", ROWS)
def test_all_cached_needs_no_advice_and_no_blocking_read(tmp_path, monkeypatch, rows):
  x, mapped = _mapped(tmp_path)
  calls = _record(monkeypatch, lambda n: n)
  np.testing.assert_array_equal(memmap.read_rows(mapped, rows), x[rows])
  assert calls == {"advice": [], "blocking": []}


def test_real_reads_of_a_file_evicted_from_the_cache_are_exact(tmp_path):
  x, mapped = _mapped(tmp_path)
  fd = os.open(tmp_path / "x.npy", os.O_RDONLY)
  try:
    os.fsync(fd)
    for rows in ROWS:
      os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # a hint: the cache may keep pages
      np.testing.assert_array_equal(memmap.read_rows(mapped, rows), x[rows])
      np.testing.assert_array_equal(memmap.read_rows(mapped[100:], rows[rows < 400]),
                                    x[100:][rows[rows < 400]])
  finally:
    os.close(fd)


def test_a_truncated_file_still_says_so_when_nothing_is_cached(tmp_path, monkeypatch):
  _, mapped = _mapped(tmp_path)
  os.truncate(tmp_path / "x.npy", 128 + 10 * mapped[0].nbytes)
  _record(monkeypatch, lambda n: -1)
  with pytest.raises(OSError, match="x.npy ended early"):
    memmap.read_rows(mapped, np.array([0, 9, 10]))
