"""The persistent compilation cache: a second identical run compiles nothing, results unchanged."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(workdir, cache: str) -> dict:
  done = subprocess.run([sys.executable, "-m", "experiments.train", "--smoke", f"--workdir={workdir}",
                         f"--compilation_cache={cache}"], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_second_run_loads_every_program_and_results_are_bit_identical(tmp_path):
  cache = str(tmp_path / "cache")
  cold = _train(tmp_path / "cold", cache)
  assert cold["compilation_cache"]["misses"] > 0 and cold["compilation_cache"]["hits"] == 0
  entries = sorted(os.listdir(cache))
  warm = _train(tmp_path / "warm", cache)
  assert warm["compilation_cache"] == {"hits": cold["compilation_cache"]["misses"], "misses": 0}
  assert sorted(os.listdir(cache)) == entries  # nothing new was compiled and stored
  off = _train(tmp_path / "off", "")
  assert off["compilation_cache"] == {"hits": 0, "misses": 0}
  for figures in (warm, off):
    assert figures["params_fingerprint"] == cold["params_fingerprint"]
    assert figures["test"] == cold["test"]


def test_unwritable_cache_folder_is_a_warning_and_the_run_goes_on(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  done = subprocess.run([sys.executable, "-m", "experiments.train", "--smoke",
                         f"--workdir={tmp_path / 'run'}", f"--compilation_cache={blocker / 'x'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "warning: compilation cache off" in done.stderr
