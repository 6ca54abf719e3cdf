"""Shared fixtures: small datasets written by the tests themselves."""

import os
import pathlib
import tempfile

import jax
import numpy as np
import pytest

from dl_jax.data import Split, make_dataset

# The tests compare programs that should agree to float32 rounding. On a GPU, JAX's default
# float32 matmul runs in TF32 (10-bit mantissa), which differs from a reordered float32 program by
# ~3e-4 (seen on an H200: the learning-rate sweep test); CPUs compute float32 either way.
jax.config.update("jax_default_matmul_precision", "highest")
# Experiments started as subprocesses cache compiled programs under $XDG_CACHE_HOME: a folder of
# this test session's, not the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dl_jax_test_cache_")


SLOW_FIXTURES = {"smoke_tour", "smoke_stage"}


def pytest_collection_modifyitems(items):
  """Marks `slow` every test that needs the smoke tour (minutes, once per session) or starts
  processes (marked by hand): `pytest -m "not slow"` is the quick loop; CI runs everything."""
  for item in items:
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.slow)


def blobs(n: int, num_classes: int = 3, dim: int = 6, seed: int = 0):
  """Separable Gaussian blobs around fixed centers: x float32 [n, dim], y int32 [n].

  `seed` draws the examples; the class centers are the same for every seed.
  """
  centers = np.random.default_rng(12345).normal(0, 3, (num_classes, dim))
  rng = np.random.default_rng(seed)
  y = (np.arange(n) % num_classes).astype(np.int32)
  x = (centers[y] + rng.normal(0, 1, (n, dim))).astype(np.float32)
  return x, y


@pytest.fixture(scope="session")
def smoke_tour(tmp_path_factory):
  """The tour at its smoke budget, run once per test session: (results, workdir). The tests of
  each experiment's smoke run read that experiment's stage from here (`smoke_stage`) rather than
  run the same config a second time."""
  from experiments import tour
  workdir = str(tmp_path_factory.mktemp("tour"))
  return tour.run(tour.TourConfig(), workdir, budget="smoke"), workdir


@pytest.fixture(scope="session")
def smoke_stage(smoke_tour):
  """smoke_stage(name) -> (config, results, workdir) of experiment `name` in the smoke tour."""
  from experiments import tour

  def stage(name: str):
    results, workdir = smoke_tour
    record = results["stages"][name]
    assert record["error"] is None, record.get("traceback")
    return tour.stage_config(name, "smoke"), record["results"], pathlib.Path(workdir) / name
  return stage


@pytest.fixture
def blob_dataset():
  x, y = blobs(240)
  xt, yt = blobs(60, seed=1)
  return make_dataset("blobs", "test blobs", Split(x, y), Split(xt, yt))


@pytest.fixture
def write_npz(tmp_path):
  """write_npz(**overrides) -> path of an .npz with valid arrays, any of which can be replaced."""

  def write(name="data.npz", **overrides):
    x, y = blobs(40)
    xt, yt = blobs(20, seed=1)
    arrays = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt, **overrides}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)

  return write
