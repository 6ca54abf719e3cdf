import dataclasses
import importlib
import math
import os
import subprocess
import sys

import pytest

from dl_jax.settings import ConfigError, at_least, between, each, implied_check, one_of, validate
from experiments import tour, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = ("activations", "adversarial", "benchmark", "conv_parts", "gan", "minibatch",
               "mnist1d_table", "regularization", "seeds_cost", "siamese", "sparsity", "translate",
               "train", "tour")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_default_and_smoke_config_passes_its_checks(name):
  module = importlib.import_module(f"experiments.{name}")
  smoke = module.smoke_config()
  validate(smoke)
  validate(type(smoke)())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_config_field_has_its_own_help_text(name):
  config_cls = type(importlib.import_module(f"experiments.{name}").smoke_config())
  missing = [field.name for field in dataclasses.fields(config_cls)
             if not str(field.metadata.get("help") or "").strip()
             or field.metadata["help"].strip() == field.name]
  assert not missing, f"{config_cls.__name__}: give these fields a setting(...) with help: {missing}"


@pytest.mark.parametrize("budget", ["smoke", "default", "full"])
def test_every_tour_budget_passes_the_checks(budget):
  for stage in tour.STAGES:
    validate(tour.stage_config(stage, budget))


@pytest.mark.parametrize("change, message", [
    (dict(eval_every=0), "--eval_every=0: must be >= 1."),
    (dict(steps=-1), "--steps=-1: must be >= 1."),
    (dict(learning_rate=-0.01), "--learning_rate=-0.01: must be a finite number > 0."),
    (dict(learning_rate=math.inf), "--learning_rate=inf: must be a finite number > 0."),
    (dict(dropout=1.0), "--dropout=1.0: must be in [0, 1)."),
    (dict(val_fraction=math.nan), "--val_fraction=nan: must be in [0, 1)."),
    (dict(widths=(32, 0)), "--widths=32,0: 0 must be >= 1."),
    (dict(widths=()), "--widths=: must name at least one value."),
    (dict(model="resnet"), "--model=resnet: must be one of"),
    (dict(seed=-1), "--seed=-1: must be >= 0."),
])
def test_a_bad_value_is_refused_naming_its_flag_and_what_it_accepts(change, message):
  with pytest.raises(ConfigError) as info:
    validate(dataclasses.replace(train.TrainConfig(), **change))
  assert str(info.value).startswith(message)


def test_checks_accept_their_edges():
  assert at_least(1)(1) is None and at_least(1)(0) == "must be >= 1"
  assert between(0, 1)(0.0) is None and between(0, 1)(1.0) and between(0, 1, False)(1.0) is None
  assert each(at_least(0))((0, 3)) is None and one_of(("a",))("b") == "must be one of ['a']"


def test_names_imply_the_same_check_in_every_experiment():
  from experiments.gan import GANConfig
  with pytest.raises(ConfigError, match="--sample_every=0: must be >= 1"):
    validate(GANConfig(sample_every=0))
  assert implied_check("warmup_steps", int)(0) is None
  assert implied_check("generator_learning_rate", float)(0.0)
  assert implied_check("name", str) is None


def test_help_lists_every_flag_with_its_text():
  done = subprocess.run([sys.executable, "-m", "experiments.train", "--helpshort"], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert "--checkpoint_every: Steps between checkpoints." in done.stdout
  assert "--max_classes: Most classes" in done.stdout
