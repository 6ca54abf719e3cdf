"""Train one classifier on one dataset and report train / validation / test figures.

    python -m experiments.train                       # residual MLP on MNIST-1D, the paper's recipe
    python -m experiments.train --dataset=mnist --widths=256,256 --dropout=0.2 --steps=3000

The default (Adam, lr 1e-2, batch 100, 6000 steps, MLP 40-100-100(+skip)-10, 15,210 parameters,
10% of train held out for validation) reaches about 63-67% test accuracy on MNIST-1D; the paper
reports 64.6-68% for this model.
"""

import dataclasses
import json
import os
import sys
from typing import Sequence

import jax
from absl import app, flags, logging

from dl_jax import optim
from dl_jax.activations import ACTIVATIONS
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.data import EMBEDDED, DataError, load_dataset
from dl_jax.models import MODELS, make_model
from dl_jax.phases import Phases, seconds_since_process_start
from dl_jax.train import (FitConfig, NonFiniteError, classification_loss, classification_metrics,
                          create_train_state, fit, make_eval_step, make_train_step)
from dl_jax.train.parallel import DataParallel, data_mesh, initialize_distributed
from dl_jax.train.workdir_lock import WorkdirBusyError, workdir_lock
from dl_jax.train.writers import ConfigMismatchError, quiet_library_logs, write_config


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  dataset: str = "mnist1d"
  val_fraction: float = 0.1
  model: str = "mlp"
  widths: tuple[int, ...] = (100, 100)
  activation: str = "relu"
  residual: bool = True
  dropout: float = 0.0
  l2: float = 0.0
  optimizer: str = "adam"
  learning_rate: float = 1e-2
  schedule: str = "constant"
  warmup_steps: int = 0
  weight_decay: float = 0.0
  batch_size: int = 100
  steps: int = 6000
  epochs: int = 0  # when > 0, overrides `steps`
  eval_every: int = 500
  log_every: int = 100
  checkpoint_every: int = 1000
  patience: int = 0
  seed: int = 0
  devices: int = 0  # > 0: data-parallel over that many devices (all processes together)


def smoke_config() -> TrainConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return TrainConfig(steps=60, eval_every=20, log_every=10, checkpoint_every=20, widths=(32, 32))


def run(config: TrainConfig, workdir: str, hooks: Sequence = (),
        phases: Phases | None = None) -> dict:
  """Trains, evaluates and writes config.json, metrics.jsonl, results.json into `workdir`;
  results["phases"] says where the wall time went."""
  phases = phases if phases is not None else Phases()
  with phases("data"):
    dataset = load_dataset(config.dataset, config.val_fraction, val_seed=config.seed)
  steps = _num_steps(config, len(dataset.train))
  model = make_model(config.model, dataset.num_classes, widths=config.widths,
                     activation=config.activation, dropout_rate=config.dropout,
                     residual=config.residual)
  schedule = optim.make_schedule(config.schedule, config.learning_rate, steps, config.warmup_steps)
  tx = optim.make_optimizer(config.optimizer, schedule, weight_decay=config.weight_decay)
  example = dataset.train.gather([0])["x"]
  with phases("model init"):
    state = create_train_state(model, tx, example, config.seed)
  write_config(workdir, {"config": dataclasses.asdict(config), "num_steps": steps,
                         "dataset": dataset.metadata})
  fit_config = FitConfig(num_steps=steps, batch_size=config.batch_size, seed=config.seed,
                         eval_every=config.eval_every, log_every=config.log_every,
                         checkpoint_every=config.checkpoint_every, patience=config.patience)
  train_step = make_train_step(classification_loss(model, config.l2))
  eval_step = make_eval_step(classification_metrics(model))
  # Many processes always train as one data-parallel model: over every device unless told otherwise.
  devices = config.devices or (jax.device_count() if jax.process_count() > 1 else 0)
  parallel = DataParallel(data_mesh(devices)) if devices else None
  _, results = fit(state, train_step, eval_step, dataset, fit_config, workdir, hooks, parallel,
                   phases)
  return results


def _num_steps(config: TrainConfig, num_train: int) -> int:
  if config.epochs <= 0:
    return config.steps
  return config.epochs * max(num_train // config.batch_size, 1)


# ---- command line ------------------------------------------------------------------------------

def define_flags() -> None:
  define_experiment_flags(TrainConfig, "runs/train", choices={
      "model": sorted(MODELS), "activation": sorted(ACTIVATIONS),
      "optimizer": optim.OPTIMIZERS, "schedule": optim.SCHEDULES,
  }, help={
      "dataset": f"One of {sorted(EMBEDDED)}, an .npz file, or a directory of .npy/IDX files.",
      "widths": "Hidden widths, comma separated.", "epochs": "When > 0, overrides --steps.",
      "patience": "Evaluations without a better validation accuracy before stopping; 0: off.",
      "devices": "0: one device, JAX's default placement. N > 0: batches split over N devices of "
                 "all processes, parameters replicated (jax.sharding).",
  })
  flags.DEFINE_string("coordinator", None, "host:port of process 0, to train as one of many "
                      "processes (jax.distributed); 'auto' on TPU pods and SLURM clusters.")
  flags.DEFINE_integer("num_processes", 1, "Processes in a multi-process run.")
  flags.DEFINE_integer("process_id", 0, "This process's index in a multi-process run.")


def main(argv):
  del argv
  quiet_library_logs()
  if flags.FLAGS.coordinator:
    initialize_distributed(flags.FLAGS.coordinator, flags.FLAGS.num_processes,
                           flags.FLAGS.process_id)
  phases = Phases()
  phases.add("startup (interpreter, imports)", seconds_since_process_start() or 0.0)
  try:
    with workdir_lock(flags.FLAGS.workdir):  # before config.json is written
      results = run(experiment_config(TrainConfig, smoke_config), flags.FLAGS.workdir,
                    phases=phases)
  except (DataError, NonFiniteError, ConfigMismatchError, WorkdirBusyError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  logging.info("results: %s", json.dumps(results, indent=2))
  rows = [(name, results[name]) for name in ("train", "val", "test") if name in results]
  print("\n".join(f"{name:>5}: accuracy {r['accuracy']:.4f}  loss {r['loss']:.4f}" for name, r in rows))
  print(f"  gap: train-test accuracy {results['gap']['train_test_accuracy']:+.4f}")
  cache = results["compilation_cache"]
  print(f"where the time went (compilation cache: {cache['hits']} programs loaded, "
        f"{cache['misses']} compiled):\n{phases.table()}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
