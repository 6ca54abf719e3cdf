"""Train one classifier on one dataset and report train / validation / test figures.

    python -m experiments.train                       # residual MLP on MNIST-1D, the paper's recipe
    python -m experiments.train --dataset=mnist --widths=256,256 --dropout=0.2 --steps=3000

The default (Adam, lr 1e-2, batch 100, 6000 steps, MLP 40-100-100(+skip)-10, 15,210 parameters,
10% of train held out for validation) reaches about 63-67% test accuracy on MNIST-1D; the paper
reports 64.6-68% for this model.
"""

import dataclasses
import json
from typing import Sequence

from absl import flags, logging

from dl_jax import catalog, cli
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.data import EMBEDDED, MAX_CLASSES, load_dataset
from dl_jax.phases import Phases, seconds_since_process_start
from dl_jax.settings import (ConfigError, at_least, between, each, non_negative_finite,
                             positive_finite, setting, validate)

# JAX, Flax, optax and the training code are imported where a run needs them, not above, so that
# --help answers without loading them.


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  dataset: str = setting("mnist1d", f"One of {sorted(EMBEDDED)}, an .npz file, or a directory of "
                         ".npy/IDX files.")
  val_fraction: float = setting(0.1, "Share of train held out (stratified) for validation; 0: none.",
                                check=between(0, 1))
  max_classes: int = setting(MAX_CLASSES, "Most classes a dataset's labels may imply (labels "
                             "0 .. N-1); raise it for datasets with more.", check=at_least(2))
  model: str = setting("mlp", "Model family.", choices=catalog.MODELS)
  widths: tuple[int, ...] = setting((100, 100), "Hidden widths, comma separated.",
                                    check=each(at_least(1)))
  activation: str = setting("relu", "Hidden activation.", choices=catalog.ACTIVATIONS)
  residual: bool = setting(True, "Skip connections between equal-width hidden layers.")
  dropout: float = setting(0.0, "Dropout rate on hidden units.", check=between(0, 1))
  l2: float = setting(0.0, "L2 penalty on the weights, added to the loss.",
                      check=non_negative_finite)
  optimizer: str = setting("adam", "Optimizer.", choices=catalog.OPTIMIZERS)
  learning_rate: float = setting(1e-2, "Peak learning rate.", check=positive_finite)
  schedule: str = setting("constant", "Learning-rate schedule.", choices=catalog.SCHEDULES)
  warmup_steps: int = setting(0, "Linear warm-up steps.", check=at_least(0))
  weight_decay: float = setting(0.0, "Decoupled weight decay (adamw).", check=non_negative_finite)
  batch_size: int = setting(100, "Examples per step.", check=at_least(1))
  steps: int = setting(6000, "Training steps.", check=at_least(1))
  epochs: int = setting(0, "When > 0, overrides --steps.", check=at_least(0))
  eval_every: int = setting(500, "Steps between evaluations.", check=at_least(1))
  log_every: int = setting(100, "Steps between metrics lines.", check=at_least(1))
  checkpoint_every: int = setting(1000, "Steps between checkpoints.", check=at_least(1))
  steps_per_call: int = setting(100, "Most training steps one compiled call runs (a scan over "
                                "batches read together); 1: a call per step.", check=at_least(1))
  patience: int = setting(0, "Evaluations without a better validation accuracy before stopping; "
                          "0: off.", check=at_least(0))
  seed: int = setting(0, "Seed of initialization, data order, dropout and validation split.",
                      check=at_least(0))
  devices: int = setting(0, "0: one device, JAX's default placement. N > 0: batches split over N "
                         "devices of all processes, parameters replicated (jax.sharding).",
                         check=at_least(0))


def smoke_config() -> TrainConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return TrainConfig(steps=60, eval_every=20, log_every=10, checkpoint_every=20, widths=(32, 32))


def run(config: TrainConfig, workdir: str, hooks: Sequence = (),
        phases: Phases | None = None) -> dict:
  """Trains, evaluates and writes config.json, metrics.jsonl, results.json into `workdir`;
  results["phases"] says where the wall time went. Everything is checked before anything is
  written: the config, the data, and that the batch fits the data and the devices."""
  import jax

  from dl_jax import optim
  from dl_jax.models import make_model
  from dl_jax.train import (FitConfig, classification_loss, classification_metrics,
                            create_train_state, fit, make_eval_step, make_train_step)
  from dl_jax.train.parallel import DataParallel, data_mesh
  from dl_jax.train.writers import write_config

  validate(config)
  phases = phases if phases is not None else Phases()
  with phases("data"):
    dataset = load_dataset(config.dataset, config.val_fraction, val_seed=config.seed,
                           max_classes=config.max_classes)
  check_batch_size(config.batch_size, dataset)
  # Many processes always train as one data-parallel model: over every device unless told otherwise.
  devices = config.devices or (jax.device_count() if jax.process_count() > 1 else 0)
  parallel = DataParallel(data_mesh(devices)) if devices else None
  if parallel is not None:
    parallel.check_batch_size(config.batch_size)
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
                         checkpoint_every=config.checkpoint_every, patience=config.patience,
                         max_steps_per_call=config.steps_per_call)
  train_step = make_train_step(classification_loss(model, config.l2))
  eval_step = make_eval_step(classification_metrics(model))
  _, results = fit(state, train_step, eval_step, dataset, fit_config, workdir, hooks, parallel,
                   phases)
  return results


def check_batch_size(batch_size: int, dataset) -> None:
  """A batch must fit in the training split (steps drop the last, incomplete batch)."""
  if batch_size > len(dataset.train):
    raise ConfigError(f"--batch_size={batch_size}: larger than the {len(dataset.train)} training "
                      f"examples of {dataset.name}; use a batch size <= {len(dataset.train)}.")


def _num_steps(config: TrainConfig, num_train: int) -> int:
  if config.epochs <= 0:
    return config.steps
  return config.epochs * max(num_train // config.batch_size, 1)


# ---- command line ------------------------------------------------------------------------------

def define_flags() -> None:
  define_experiment_flags(TrainConfig, "runs/train")
  flags.DEFINE_string("coordinator", None, "host:port of process 0, to train as one of many "
                      "processes (jax.distributed); 'auto' on TPU pods and SLURM clusters.")
  flags.DEFINE_integer("num_processes", 1, "Processes in a multi-process run.")
  flags.DEFINE_integer("process_id", 0, "This process's index in a multi-process run.")
  flags.DEFINE_integer("coordinator_timeout", 120, "Seconds to wait for every process to join "
                       "the --coordinator before giving up.", lower_bound=1)


def join_run(coordinator: str, num_processes: int, process_id: int, timeout_s: int) -> None:
  """jax.distributed.initialize, or one line and exit 2 when the processes do not all join in
  `timeout_s` seconds (JAX itself would abort the process at its own, later deadline)."""
  from dl_jax.train.parallel import initialize_distributed

  with cli.deadline(timeout_s, f"process {process_id} of {num_processes} could not join the run "
                    f"at --coordinator={coordinator} within {timeout_s} s; start every process "
                    "with the same --coordinator and --num_processes (process 0 on that host), "
                    "or raise --coordinator_timeout"):
    initialize_distributed(coordinator, num_processes, process_id, timeout_s + 60)


def main(argv):
  del argv
  import dl_jax.models, dl_jax.train  # noqa: E401,F401 (the training stack: counted as startup)
  from dl_jax.train.workdir_lock import hold
  from dl_jax.train.writers import quiet_library_logs

  quiet_library_logs()
  # checked before anything is written; the workdir is taken once this process knows its index
  config = experiment_config(TrainConfig, smoke_config, hold_workdir=False)
  if flags.FLAGS.coordinator:
    join_run(flags.FLAGS.coordinator, flags.FLAGS.num_processes, flags.FLAGS.process_id,
             flags.FLAGS.coordinator_timeout)
  hold(flags.FLAGS.workdir)
  phases = Phases()
  phases.add("startup (interpreter, imports)", seconds_since_process_start() or 0.0)
  results = run(config, flags.FLAGS.workdir, phases=phases)
  logging.info("results: %s", json.dumps(results, indent=2))
  rows = [(name, results[name]) for name in ("train", "val", "test") if name in results]
  print("\n".join(f"{name:>5}: accuracy {r['accuracy']:.4f}  loss {r['loss']:.4f}" for name, r in rows))
  print(f"  gap: train-test accuracy {results['gap']['train_test_accuracy']:+.4f}")
  cache = results["compilation_cache"]
  print(f"where the time went (compilation cache: {cache['hits']} programs loaded, "
        f"{cache['misses']} compiled):\n{phases.table()}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
