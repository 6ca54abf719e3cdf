"""Generated datasets are stored once and loaded after: same arrays, damage means regenerating."""

import os

import numpy as np
import pytest

from dl_jax.data import generated_cache, load_dataset
from dl_jax.data.generated_cache import cached_arrays

KEY = {"version": 1, "arrays": ["x", "y"]}


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  monkeypatch.delenv("DL_JAX_DATA_CACHE", raising=False)
  return tmp_path / "dl_jax" / "data"


def _counting_generator(calls):
  def generate():
    calls.append(1)
    return {"x": np.arange(6.0).reshape(2, 3), "y": np.array([1, 2])}
  return generate


def test_second_call_loads_what_the_first_generated(cache_home):
  calls = []
  first = cached_arrays("toy", KEY, _counting_generator(calls))
  second = cached_arrays("toy", KEY, _counting_generator(calls))
  assert len(calls) == 1 and len(os.listdir(cache_home)) == 1
  for name in KEY["arrays"]:
    np.testing.assert_array_equal(first[name], second[name])
    assert first[name].dtype == second[name].dtype
  cached_arrays("toy", {**KEY, "version": 2}, _counting_generator(calls))
  assert len(calls) == 2  # another key, another entry


def test_damaged_or_incomplete_entry_is_generated_again(cache_home):
  calls = []
  cached_arrays("toy", KEY, _counting_generator(calls))
  (entry,) = cache_home.iterdir()
  entry.write_bytes(entry.read_bytes()[:100])  # truncated
  assert cached_arrays("toy", KEY, _counting_generator(calls))["y"].tolist() == [1, 2]
  np.savez(entry, x=np.zeros(2))  # readable, but not all the arrays
  cached_arrays("toy", KEY, _counting_generator(calls))
  assert len(calls) == 3


def test_unwritable_folder_or_switched_off_cache_still_gives_the_arrays(cache_home, monkeypatch):
  cache_home.parent.mkdir(parents=True)
  cache_home.write_text("a file where the folder should be")
  calls = []
  assert cached_arrays("toy", KEY, _counting_generator(calls))["x"].shape == (2, 3)
  monkeypatch.setenv("DL_JAX_DATA_CACHE", "0")
  assert generated_cache.directory() is None
  cached_arrays("toy", KEY, _counting_generator(calls))
  assert len(calls) == 2


def test_mnist1d_from_the_cache_equals_a_fresh_generation(cache_home, monkeypatch):
  first = load_dataset("mnist1d")
  assert any(p.name.startswith("mnist1d-") for p in cache_home.iterdir())
  monkeypatch.setenv("DL_JAX_DATA_CACHE", "0")
  fresh = load_dataset("mnist1d")
  for a, b in ((first.train, fresh.train), (first.test, fresh.test)):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
