"""dl_jax.lab.experiment: one declaration per experiment makes its variants and its script."""

import dataclasses
import importlib
import subprocess
import sys

import pytest

from dl_jax.lab.experiment import Experiment
from experiments import tour

TOUR_STAGES = tour.STAGES


@pytest.mark.parametrize("name", TOUR_STAGES)
def test_every_tour_experiment_declares_smoke_tour_and_full(name):
  experiment = importlib.import_module(f"experiments.{name}").EXPERIMENT
  assert isinstance(experiment, Experiment) and experiment.name == name
  assert experiment.variant_names() == ["full", "smoke", "tour"]
  full = experiment.config_for("full")
  assert full == experiment.config()
  assert experiment.config_for("tour") != full  # the tour budget is smaller than the paper's
  assert tour.stage_config(name, "default") == experiment.config_for("tour")
  with pytest.raises(ValueError, match="has no variant 'huge'"):
    experiment.config_for("huge")


@pytest.mark.parametrize("name", [n for n in TOUR_STAGES if n not in ("gan", "translate")])
def test_every_compared_arm_runs_five_seeds_in_the_tour(name):
  config = dataclasses.asdict(tour.stage_config(name, "default"))
  seeds = config.get("seeds") or range(config["num_seeds"])
  assert len(seeds) >= 5


def test_a_bad_flag_is_one_line_and_exit_2():
  result = subprocess.run([sys.executable, "-m", "experiments.regularization", "--variant=huge"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert result.stderr.startswith("error: flag --variant=huge: value should be one of")
