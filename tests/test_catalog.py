"""The command line's names agree with the registries, and a run's --help loads no JAX."""

import subprocess
import sys

from dl_jax import catalog, optim
from dl_jax.activations import ACTIVATIONS
from dl_jax.models import MODELS


def test_every_name_offered_is_registered_and_every_registered_one_offered():
  assert set(catalog.ACTIVATIONS) == set(ACTIVATIONS)
  assert set(catalog.MODELS) == set(MODELS)
  assert optim.OPTIMIZERS == catalog.OPTIMIZERS and optim.SCHEDULES == catalog.SCHEDULES


def test_train_help_lists_its_flags_without_importing_jax_flax_or_optax():
  done = subprocess.run([sys.executable, "-X", "importtime", "-m", "experiments.train", "--help"],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "--learning_rate: Peak learning rate." in done.stdout
  assert "<linear|mlp|cnn|" in done.stdout  # the choices, from the catalog
  imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
              if line.startswith("import time:")}
  assert "numpy" in imported  # the import log was read
  assert not {"jax", "flax", "optax", "orbax"} & imported
