"""Data parallelism: many devices (8 virtual CPU devices) and many processes (two on localhost)
must train the same model as one device, within float tolerance."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_COMPARE_DEVICES = """
import dataclasses, json, sys
import jax, numpy as np
from experiments import train
config = dataclasses.replace(train.smoke_config(), batch_size=64, dropout=0.1)
out = {}
for devices in (0, 1, 8):
  final = {}
  def keep_last(step, state):
    if step == config.steps:
      final["params"] = [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(state.params)]
  results = train.run(dataclasses.replace(config, devices=devices),
                      f"{sys.argv[1]}/devices{devices}", hooks=[keep_last])
  out[devices] = {"test_loss": results["test"]["loss"], "fingerprint": results["params_fingerprint"],
                  "params": final["params"]}
print(json.dumps({"num_devices": jax.device_count(), **out}))
"""


def test_eight_devices_train_the_same_model_as_one(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  done = subprocess.run([sys.executable, "-c", _COMPARE_DEVICES, str(tmp_path)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  assert out["num_devices"] == 8
  single, one_mesh, eight = out["0"], out["1"], out["8"]
  assert one_mesh["fingerprint"] == single["fingerprint"]  # a mesh of one: the very same program
  assert eight["test_loss"] == pytest.approx(single["test_loss"], rel=1e-4)
  for a, b in zip(eight["params"], single["params"]):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-3, atol=1e-5)


def test_batch_that_does_not_split_over_the_devices_is_refused(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  done = subprocess.run([sys.executable, "-m", "experiments.train", "--smoke", "--devices=8",
                         "--batch_size=100", f"--workdir={tmp_path}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert "batch size 100 does not split over 8 devices; use a multiple of 8" in done.stderr


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_the_same_model_as_one(tmp_path):
  common = [sys.executable, "-m", "experiments.train", "--smoke", "--batch_size=64",
            "--dropout=0.1"]
  coordinator = f"--coordinator=127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen(common + ["--devices=2", coordinator, "--num_processes=2",
                                      f"--process_id={i}", f"--workdir={tmp_path / 'two'}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  single = subprocess.run(common + [f"--workdir={tmp_path / 'one'}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]
  two = json.load(open(tmp_path / "two" / "results.json"))
  one = json.load(open(tmp_path / "one" / "results.json"))
  for split in ("train", "val", "test"):
    assert two[split]["loss"] == pytest.approx(one[split]["loss"], rel=1e-4)
    assert two[split]["accuracy"] == pytest.approx(one[split]["accuracy"], abs=1e-3)
  logged = [json.loads(line) for line in open(tmp_path / "two" / "metrics.jsonl")]
  reference = [json.loads(line) for line in open(tmp_path / "one" / "metrics.jsonl")]
  assert [r["step"] for r in logged] == [r["step"] for r in reference]  # written once, by process 0
  for a, b in zip(logged, reference):
    if "train/loss" in a:
      assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
