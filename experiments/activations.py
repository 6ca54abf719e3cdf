"""Vanishing gradients: deep MLPs with saturating and ReLU-family activations under three inits.

    python -m experiments.activations          # the full grid below
    python -m experiments.activations --smoke    # seconds
    python -m experiments.activations --datasets=mnist1d --depths=10,30 --activations=sigmoid,relu

Plain MLPs (no skips, no normalization) of 2..30 Dense layers, 100 wide, on `mnist` and
`mnist1d`, for sigmoid, tanh, relu, leaky_relu, gelu and silu, with naive (N(0, 0.01^2)), Glorot
and He kernels.
Per-layer kernel-gradient norms are taken on a fixed batch of training examples at initialization
and during training; train / val / test accuracies, the generalization gap and the first-layer over
last-layer gradient ratio go to results.json and results.md, and two kinds of figure to plots/.

What it tests (Glorot & Bengio 2010, He et al. 2015): whether sigmoid nets lose their first
layers' gradients with depth and stall; whether relu / leaky_relu nets train deep with He init but
not with Glorot init; whether gelu / silu, which act like x/2 near 0, need more than He's gain of 2;
and how the naive init, which shrinks the signal ~10x per layer at width 100, fares.
Its figures: docs/experiments/activations.md (generated from the last default tour).

Optimizer: SGD with momentum, deliberately. Its update is proportional to the gradient, so a layer
whose gradient has vanished does not learn, which is the effect measured here. Adam divides each
update by a running RMS of that parameter's gradient, so a 1e-6 gradient still moves its weights at
the full learning rate: it partly hides vanishing gradients. One schedule serves every cell: lr
0.01, 100 warmup steps, cosine decay.

Efficiency: the init only changes the starting parameters, not the function, so for each (dataset,
depth, activation) every init x seed runs as one model stacked on a leading axis of one vmapped,
jitted program (dl_jax.train.seeds): 9 models per compilation by default. Inits share seeds, so
seed s draws the same data order for every init (a paired comparison).
"""

import dataclasses
import math
import os
import sys
import time
from typing import Iterator

import jax
import numpy as np

from dl_jax import optim
from dl_jax.activations import ACTIVATIONS, get_activation
from dl_jax.data import Dataset, load_dataset
from dl_jax.diagnostics import first_last_ratio, layer_gradient_norms
from dl_jax.initializers import INITIALIZERS, get_initializer
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.models import MLP
from dl_jax.settings import at_least, each, one_of, setting
from dl_jax.train import (FitConfig, classification_loss, classification_metrics,
                          create_train_state, fit, make_eval_step)
from dl_jax.train.seeds import stack_states
from dl_jax.train.step import train_step_fn
from dl_jax.train.writers import write_config
from experiments.reports.activations import STALLED, markdown_report, save_plots, summary


@dataclasses.dataclass(frozen=True)
class ActivationsConfig:
  datasets: tuple[str, ...] = setting(("mnist", "mnist1d"), "Embedded datasets, comma separated.")
  depths: tuple[int, ...] = setting((2, 5, 10, 20, 30), "Dense layers per net (the output layer "
                                    "included), comma separated.")
  activations: tuple[str, ...] = setting(
      ("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu"),
      "Activation names (dl_jax.activations), comma separated.",
      check=each(one_of(sorted(ACTIVATIONS))))
  inits: tuple[str, ...] = setting(("naive", "glorot", "he"), "Kernel initializers "
                                   "(dl_jax.initializers), comma separated.",
                                   check=each(one_of(sorted(INITIALIZERS))))
  width: int = setting(100, "Units in every hidden layer.")
  optimizer: str = setting("momentum", "Optimizer.", choices=optim.OPTIMIZERS)
  learning_rate: float = setting(0.01, "Peak learning rate.")
  schedule: str = setting("warmup_cosine", "Learning-rate schedule.", choices=optim.SCHEDULES)
  warmup_steps: int = setting(100, "Linear warm-up steps of the warmup_cosine schedule.")
  batch_size: int = setting(64, "Training examples per step.")
  steps: int = setting(600, "Training steps per net.")
  grad_probes: int = setting(3, "Per-layer gradients are recorded at step 0 and every steps // "
                             "(grad_probes - 1) steps up to the last.", check=at_least(1))
  probe_examples: int = setting(500, "Fixed training examples the per-layer gradients are taken "
                                "on.", check=at_least(1))
  val_fraction: float = setting(0.1, "Share of train held out (stratified) for validation; 0: "
                                "none.")
  eval_batch_size: int = setting(1000, "Examples per evaluation batch.")
  seeds: tuple[int, ...] = setting((0, 1, 2), "Seeds trained together in one vmapped program, "
                                   "comma separated.")


def smoke_config() -> ActivationsConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return ActivationsConfig(datasets=("mnist1d",), depths=(2, 4), activations=("sigmoid", "relu"),
                           inits=("naive", "he"), width=16, batch_size=32, steps=20,
                           warmup_steps=5, probe_examples=64, seeds=(0, 1))


def run(config: ActivationsConfig, workdir: str) -> dict:
  """Trains the whole grid; its results (Experiment.execute writes them), plots/ into `workdir`."""
  _check(config)
  write_config(workdir, dataclasses.asdict(config))
  start, runs, datasets = time.perf_counter(), [], {}
  for name in config.datasets:
    dataset = load_dataset(name, config.val_fraction, val_seed=0)
    datasets[name] = dataset.metadata
    probe_batch = _probe_batch(dataset, config.probe_examples)
    for depth in config.depths:
      for activation in config.activations:
        group = train_group(config, dataset, probe_batch, depth, activation, workdir)
        _report_progress(group)
        runs += group
  results = {"config": dataclasses.asdict(config), "seeds": list(config.seeds),
             "probe_steps": probe_steps(config), "datasets": datasets,
             "wall_seconds": time.perf_counter() - start, "runs": runs}
  results["plots"] = save_plots(results, os.path.join(workdir, "plots"))
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec, seeds = Recorder("activations", variant), results["seeds"]
  for run in results["runs"]:
    arm = f"{run['activation']}/{run['init']}, depth {run['depth']}"
    for split, values in run["accuracy"].items():
      yield from rec.per_seed(seeds, values, dataset=run["dataset"], arm=arm, split=split,
                              metric="accuracy")
    yield rec.single(run["trains"], dataset=run["dataset"], arm=arm, metric="trains")
    ratio = run["geomean"]["0"]["first_last_ratio"]
    yield rec.single(ratio if ratio is not None else 0.0, dataset=run["dataset"], arm=arm,
                     metric="first_last_gradient_ratio_at_init")


def _check(config: ActivationsConfig) -> None:
  """Fails on a bad name or size before any training starts, not an hour into the grid."""
  for name in config.activations:
    get_activation(name)
  for name in config.inits:
    get_initializer(name)
  if min(config.depths) < 1 or not config.seeds or config.grad_probes < 1:
    raise ValueError("depths must be >= 1, and there must be at least one seed and one probe")


def probe_every(config: ActivationsConfig) -> int:
  """Steps between gradient probes (fit evaluates and probes on its multiples and at the end)."""
  return config.steps if config.grad_probes == 1 else max(1, config.steps //
                                                          (config.grad_probes - 1))


def probe_steps(config: ActivationsConfig) -> list[int]:
  """The steps (0 = initialization) at which per-layer gradient norms are recorded."""
  if config.grad_probes == 1:
    return [0]
  return sorted({0, config.steps, *range(probe_every(config), config.steps, probe_every(config))})


def _probe_batch(dataset: Dataset, size: int) -> dict[str, np.ndarray]:
  """A fixed, seeded sample of training examples (the splits may be sorted by class)."""
  size = min(size, len(dataset.train))
  positions = np.random.default_rng(0).choice(len(dataset.train), size, replace=False)
  return dataset.train.gather(np.sort(positions))


# ---- one architecture: every init x seed in one vmapped program --------------------------------

def train_group(config: ActivationsConfig, dataset: Dataset, probe_batch: dict, depth: int,
                activation: str, workdir: str) -> list[dict]:
  """Trains one (dataset, depth, activation) for every init and seed: one `fit` of the stacked
  models into workdir/fits/DATASET/depth_D/ACTIVATION, without checkpoints (a rerun trains each
  group again, rather than keep a checkpoint of every group of the grid). One record per init."""
  start = time.perf_counter()
  models = [MLP(widths=(config.width,) * (depth - 1), num_outputs=dataset.num_classes,
                activation=activation, kernel_init=init) for init in config.inits]
  states = _stacked_states(config, models, dataset.train.gather([0])["x"])
  loss_fn = classification_loss(models[0])  # the init changes the draw, never the function
  probe = jax.jit(jax.vmap(lambda params, batch: layer_gradient_norms(
      lambda p: loss_fn(p, {}, batch, {})[0], params), in_axes=(0, None)))
  at_init = probe(states.params, probe_batch)  # before fit, which donates the states
  watch = (None if config.grad_probes == 1 else
           lambda state: {"grad_norms": probe(state.params, probe_batch)})
  fit_config = FitConfig(num_steps=config.steps, batch_size=config.batch_size,
                         eval_every=probe_every(config), log_every=probe_every(config),
                         checkpoint_every=0, eval_batch_size=config.eval_batch_size)
  _, results = fit(states, train_step_fn(loss_fn), make_eval_step(classification_metrics(
      models[0])), dataset, fit_config, os.path.join(workdir, "fits", dataset.name,
                                                     f"depth_{depth}", activation),
      seeds=list(config.seeds) * len(config.inits), watch=watch)
  during = results["curves"].get("watch", {}).get("grad_norms", [])
  norms = {0: np.asarray(at_init), **{step: np.asarray(value, dtype=np.float64) for step, value
                                      in zip(results["curves"]["step"], during)}}
  figures = {name: results[name] for name in dataset.splits()}
  seconds = time.perf_counter() - start
  return [_record(config, dataset.name, depth, activation, init, figures, norms, index, seconds)
          for index, init in enumerate(config.inits)]


def _stacked_states(config: ActivationsConfig, models: list[MLP], example: np.ndarray):
  """One state per (init, seed), init-major, stacked on axis 0; all share one apply_fn and tx."""
  schedule = optim.make_schedule(config.schedule, config.learning_rate, config.steps,
                                 config.warmup_steps)
  tx = optim.make_optimizer(config.optimizer, schedule)
  states = [create_train_state(model, tx, example, seed)
            for model in models for seed in config.seeds]
  return stack_states([state.replace(apply_fn=models[0].apply) for state in states])


def _record(config, dataset_name, depth, activation, init, figures, norms, index, seconds) -> dict:
  """The figures of one init: per-seed lists, their mean and std, and gradient norms per probe."""
  part = slice(index * len(config.seeds), (index + 1) * len(config.seeds))
  accuracy = {split: np.asarray(f["accuracy"][part]) for split, f in figures.items()}
  gap = {"train_test": accuracy["train"] - accuracy["test"]}
  if "val" in accuracy:
    gap["train_val"] = accuracy["train"] - accuracy["val"]
  with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 when every gradient underflowed
    ratios = {step: first_last_ratio(value[part]) for step, value in norms.items()}
  return _json_safe({
      "dataset": dataset_name, "depth": depth, "activation": activation, "init": init,
      "seeds": list(config.seeds), "group_seconds": seconds,
      "accuracy": accuracy, "loss": {split: f["loss"][part] for split, f in figures.items()},
      "gap": gap, "mean": {k: float(np.mean(v)) for k, v in {**accuracy, **gap}.items()},
      "std": {k: float(np.std(v, ddof=1)) for k, v in {**accuracy, **gap}.items()},
      "grad_norms": {str(step): value[part] for step, value in norms.items()},  # [seed][layer]
      "first_last_ratio": {str(step): r for step, r in ratios.items()},
      "geomean": {str(step): {"first_layer": _geomean(value[part, 0]),
                              "last_layer": _geomean(value[part, -1]),
                              "first_last_ratio": _geomean(ratios[step])}
                  for step, value in norms.items()},
      "trains": bool(np.mean(accuracy["test"]) >= STALLED)})


def _geomean(values: np.ndarray) -> float:
  """Geometric mean (ratios span orders of magnitude); 0 if any value is 0."""
  values = np.asarray(values, dtype=np.float64)
  return 0.0 if np.any(values == 0) else float(np.exp(np.mean(np.log(values))))


def _json_safe(tree):
  """Arrays to lists and NaN/Inf to None, so results.json is strict JSON."""
  if isinstance(tree, dict):
    return {key: _json_safe(value) for key, value in tree.items()}
  if isinstance(tree, (list, tuple, np.ndarray)):
    return [_json_safe(value) for value in tree]
  if isinstance(tree, (float, np.floating)):
    return float(tree) if math.isfinite(tree) else None
  return tree.item() if isinstance(tree, np.generic) else tree


def _report_progress(group: list[dict]) -> None:
  first = group[0]
  tests = ", ".join(f"{r['init']} {r['mean']['test']:.3f}" for r in group)
  print(f"{first['dataset']} depth {first['depth']} {first['activation']}: "
        f"{first['group_seconds']:.1f} s, test accuracy {tests}", file=sys.stderr, flush=True)


# ---- command line ------------------------------------------------------------------------------

# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(datasets=("mnist",), depths=(2, 30), activations=("sigmoid", "relu"),
            inits=("glorot", "he"), steps=500, seeds=(0, 1, 2, 3, 4))

EXPERIMENT = Experiment(
    name="activations", config=ActivationsConfig, run=run, records=records, summary=summary,
    report=markdown_report, variants={"smoke": smoke_config, "tour": TOUR}, check=_check)


if __name__ == "__main__":
  EXPERIMENT.command()
