import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_smoke_run_writes_config_metrics_and_results(tmp_path):
  done = _cli("--smoke", f"--workdir={tmp_path}", "--dataset=mnist", "--widths=16")
  assert done.returncode == 0, done.stderr[-2000:]
  config = json.load(open(tmp_path / "config.json"))
  results = json.load(open(tmp_path / "results.json"))
  assert config["config"]["dataset"] == "mnist" and config["config"]["widths"] == [16]
  assert config["config"]["seed"] == 0 and config["dataset"]["num_val"] == 400
  for split in ("train", "val", "test"):
    assert 0.0 <= results[split]["accuracy"] <= 1.0
  assert results["gap"]["train_test_accuracy"] == (
      results["train"]["accuracy"] - results["test"]["accuracy"])
  assert results["num_params"] == 784 * 16 + 16 + 16 * 10 + 10
  logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in logged if "train/loss" in r] == [10, 20, 30, 40, 50, 60]
  assert "test: accuracy" in done.stdout and "step 60/60" in done.stderr


def test_unknown_choices_are_rejected_with_the_valid_ones(tmp_path):
  done = _cli("--smoke", f"--workdir={tmp_path}", "--optimizer=lion")
  assert done.returncode != 0 and "sgd|momentum|adam|adamw" in done.stderr
  done = _cli("--smoke", f"--workdir={tmp_path}", "--dataset=imagenet")
  assert done.returncode != 0 and "unknown dataset 'imagenet'" in done.stderr
  assert not os.path.exists(tmp_path / "results.json")


def test_a_workdir_with_another_config_is_refused_and_left_alone(tmp_path):
  assert _cli("--smoke", f"--workdir={tmp_path}").returncode == 0
  before = (tmp_path / "results.json").read_text()
  done = _cli("--smoke", f"--workdir={tmp_path}", "--learning_rate=0.5")
  assert done.returncode != 0
  assert "different config (differs in ['config'])" in done.stderr
  assert (tmp_path / "results.json").read_text() == before
