"""--config=FILE: a JSON file of config values under the command line's flags."""

import dataclasses
import json
import subprocess
import sys

import pytest

from dl_jax.config_flags import MAX_CONFIG_BYTES, config_from_file
from dl_jax.settings import ConfigError
from experiments.regularization import RegularizationConfig


def _write(tmp_path, values, name="config.json"):
  path = tmp_path / name
  path.write_text(values if isinstance(values, str) else json.dumps(values))
  return str(path)


def test_a_file_sets_fields_with_their_types_and_a_runs_own_config_json_works(tmp_path):
  base = RegularizationConfig()
  config = config_from_file(RegularizationConfig, base, _write(tmp_path, {
      "steps": 7, "learning_rate": 1, "strategies": ["none", "dropout=0.5"]}))
  assert config.steps == 7 and config.learning_rate == 1.0
  assert isinstance(config.learning_rate, float) and config.strategies == ("none", "dropout=0.5")
  assert config.num_seeds == base.num_seeds  # untouched fields keep the base's value
  saved = {"config": dataclasses.asdict(config), "dataset": {"name": "mnist"}}
  assert config_from_file(RegularizationConfig, base, _write(tmp_path, saved, "run.json")) == config


@pytest.mark.parametrize("content, message", [
    ({"stpes": 3}, r"\['stpes'\] are not fields"),
    ({"steps": "3"}, "steps = \"3\" is not of the field's type int"),
    ({"steps": 2.5}, "is not of the field's type int"),
    ({"steps": True}, "is not of the field's type int"),
    ({"strategies": "none"}, "is not of the field's type"),
    ([1, 2], "holds a list"),
    ("{not json", "cannot be read as JSON"),
    ("\udcff", "cannot be read as JSON"),
])
def test_a_bad_file_is_refused_in_one_sentence(tmp_path, content, message):
  if content == "\udcff":
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    path = str(path)
  else:
    path = _write(tmp_path, content)
  with pytest.raises(ConfigError, match=message):
    config_from_file(RegularizationConfig, RegularizationConfig(), path)


def test_a_missing_or_oversized_file_is_refused_before_reading_it(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    config_from_file(RegularizationConfig, RegularizationConfig(), str(tmp_path / "none.json"))
  big = tmp_path / "big.json"
  with open(big, "wb") as f:
    f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing is read
  with pytest.raises(ConfigError, match="larger than any config"):
    config_from_file(RegularizationConfig, RegularizationConfig(), str(big))


def test_flags_override_the_file_and_the_file_overrides_smoke(tmp_path):
  path = _write(tmp_path, {"steps": 30, "batch_size": 16})
  run = subprocess.run(
      [sys.executable, "-m", "experiments", "train", "--smoke", "--dataset=mnist1d",
       f"--config={path}", "--batch_size=32", f"--workdir={tmp_path / 'run'}"],
      capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  saved = json.load(open(tmp_path / "run" / "config.json"))["config"]
  assert saved["steps"] == 30 and saved["batch_size"] == 32
  bad = subprocess.run(
      [sys.executable, "-m", "experiments", "train", "--smoke", f"--config={tmp_path}/no.json",
       f"--workdir={tmp_path / 'bad'}"], capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --config=")
  assert "Traceback" not in bad.stderr
