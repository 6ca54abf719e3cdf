"""The MNIST-1D benchmark table (Greydanus 2020), reproduced and timed.

    python -m experiments.mnist1d_table            # 5 models x {normal, shuffled} x 10 seeds
    python -m experiments.mnist1d_table --smoke

Each paper model is trained with the paper's recipe (Adam, lr 1e-2, batch 100, 6000 steps, no
weight decay), its seeds in two `jax.vmap`ped groups trained at once (one thread each, so both
cores stay busy), on the normal and the shuffled-sequence data;
each model compiles once, and its shuffled-data row (marked *) reuses the compiled programs.
Expected test accuracy (paper README): logistic 32%, MLP 68%, CNN 94%, GRU 91%; shuffling the time
steps should cost the CNN and GRU most of their edge over the MLP. Beyond the paper,
`cnn_mnist1d_bn` (5,986 parameters, its recipe in RECIPES) should beat human accuracy (95.8%).
Its figures: docs/experiments/mnist1d_table.md (generated from the last default tour).
"""

import dataclasses
import os
import time
from typing import Callable, Iterator

import jax
import numpy as np
import optax

from dl_jax import optim
from dl_jax.data import load_dataset
from dl_jax.environment import describe_cpu, environment
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.models import MODELS, make_model
from dl_jax.plots import plot_mean_std_curves
from dl_jax.settings import at_least, each, one_of, setting
from dl_jax.train import (FitConfig, classification_loss, classification_metrics, fit,
                          make_eval_step, make_train_step)
from dl_jax.train.seeds import make_seeds_init, map_seed_groups, split_seeds
from dl_jax.train.writers import write_config
from dl_jax.stats import mean_std, percent

# name -> (parameters, README test accuracy, logged CPU run, shuffled-sequence accuracy), in %.
PAPER = {"linear": (410, 32, 31.5, 32), "mlp": (15210, 68, 64.6, 68),
         "cnn_mnist1d": (5210, 94, 92.3, 56), "gru_mnist1d": (5134, 91, 92.1, 57)}
MODEL_OPTIONS = {"mlp": dict(widths=(100, 100), activation="relu", dropout_rate=0.0, residual=True)}
PAPER_RECIPE = dict(optimizer="adam", schedule="constant", warmup_steps=0, weight_decay=0.0)
# Beyond the paper: under 10k parameters and above human accuracy (95.8%), with its own recipe.
RECIPES = {"cnn_mnist1d_bn": dict(optimizer="adamw", schedule="warmup_cosine", warmup_steps=300,
                                  weight_decay=0.1)}


@dataclasses.dataclass(frozen=True)
class TableConfig:
  models: tuple[str, ...] = setting((*PAPER, *RECIPES), f"Models (see dl_jax.models.MODELS), comma "
                                    f"separated; the paper's: {list(PAPER)}.",
                                    check=each(one_of(sorted(MODELS))))
  datasets: tuple[str, ...] = setting(("mnist1d", "mnist1d_shuffled"), "Datasets, comma "
                                      "separated: mnist1d and/or mnist1d_shuffled.")
  num_seeds: int = setting(10, "Seeds per model and dataset (seeds 0 .. N-1).")
  steps: int = setting(6000, "Training steps per seed.")
  batch_size: int = setting(100, "Training examples per step.")
  learning_rate: float = setting(1e-2, "Peak learning rate of every model's optimizer.")
  # every evaluation runs 5,000 examples per seed (the paper's: 250)
  eval_every: int = setting(500, "Steps between evaluations.")
  # the paper trains on all 4000 and selects nothing: no validation
  val_fraction: float = setting(0.0, "Share of train held out (stratified) for validation; 0: "
                                "none, as in the paper.")
  seed_mode: str = setting("vmap", "vmap: seeds trained in vmapped groups at once; sequential: "
                           "one compiled step per seed, one seed after another.",
                           choices=("vmap", "sequential"))
  seed_groups: int = setting(2, "vmap mode: vmapped groups of seeds trained at once, one thread "
                             "each (at most num_seeds).", check=at_least(1))
  steps_per_call: int = setting(50, "Most training steps per jitted call (a lax.scan); fit uses "
                                "the largest that divides eval_every.", check=at_least(1))


def smoke_config() -> TableConfig:
  return TableConfig(num_seeds=2, steps=40, eval_every=20, steps_per_call=10,
                     datasets=("mnist1d",))


def make_optimizer(name: str, config: TableConfig) -> optax.GradientTransformation:
  """The paper's recipe (Adam, constant lr), or the model's own from RECIPES. The update runs on
  all parameters flattened into one vector (`optax.flatten`): the same elementwise arithmetic in a
  few fused operations instead of a few per parameter array (CNN, 5 seeds, quiet-ish CPU: train
  step compiles in 1.5 s instead of 2.1 s and runs ~10% faster)."""
  recipe = {**PAPER_RECIPE, **RECIPES.get(name, {})}
  schedule = optim.make_schedule(recipe["schedule"], config.learning_rate, config.steps,
                                 recipe["warmup_steps"])
  return optax.flatten(optim.make_optimizer(recipe["optimizer"], schedule,
                                            weight_decay=recipe["weight_decay"]))


@dataclasses.dataclass(frozen=True)
class Programs:
  """One model's jitted init, train and eval steps. Built once per model and shared by every
  dataset of the same shapes, so the shuffled-data run reuses the compiled programs."""
  init: Callable
  train_step: Callable
  eval_step: Callable


def make_programs(name: str, dataset, config: TableConfig) -> Programs:
  model = make_model(name, dataset.num_classes, **MODEL_OPTIONS.get(name, {}))
  example = dataset.train.gather([0])["x"]  # shapes only: the initialization ignores its values
  return Programs(
      init=make_seeds_init(model, make_optimizer(name, config), example),
      train_step=make_train_step(classification_loss(model)),
      eval_step=make_eval_step(classification_metrics(model)))


def train_model(programs: Programs, dataset, config: TableConfig, workdir: str) -> dict:
  """All seeds of one model on one dataset; returns its figures, curves and timings (the wall
  time includes compilation when `programs` have not run before). In vmap mode the seed groups
  train at the same time, one thread each; in sequential mode one seed after another. Each group
  is one `fit` of stacked seeds into its own folder of `workdir` (a rerun resumes)."""
  seeds = list(range(config.num_seeds))
  sequential = config.seed_mode == "sequential"
  groups = [[s] for s in seeds] if sequential else split_seeds(seeds, config.seed_groups)
  start = time.perf_counter()
  trained = map_seed_groups(
      lambda group: _train_group(programs, dataset, config, group,
                                 os.path.join(workdir, f"seeds_{group[0]}-{group[-1]}")),
      groups, workers=1 if sequential else len(groups))
  seconds = time.perf_counter() - start
  resumed = [step for _, _, step in trained if step is not None]
  return {"num_params": trained[0][0], **_merge_seed_groups([curves for _, curves, _ in trained]),
          "resumed_from_steps": resumed,
          "wall_seconds": seconds, "seconds_per_seed": seconds / len(seeds),
          "seconds_per_1000_steps_per_seed": seconds / len(seeds) / config.steps * 1000}


def _train_group(programs: Programs, dataset, config: TableConfig, group: list[int],
                 workdir: str):
  """(parameter count, curves, the step it resumed from or None) of one vmapped group of seeds."""
  fit_config = FitConfig(num_steps=config.steps, batch_size=config.batch_size,
                         eval_every=config.eval_every, log_every=config.eval_every,
                         checkpoint_every=config.steps, max_steps_per_call=config.steps_per_call,
                         train_eval_examples=len(dataset.train), test_curve=True)
  _, results = fit(programs.init(group), programs.train_step, programs.eval_step, dataset,
                   fit_config, workdir, seeds=group)
  curves = {"train" if k == "train_eval" else k: v for k, v in results["curves"].items()}
  return results["num_params"], curves, results["resumed_from_step"]


def _merge_seed_groups(groups: list[dict]) -> dict:
  """Curves of seed groups side by side: curves[split][metric][evaluation][seed]."""
  merged = {"steps": groups[0]["step"], "curves": {}}
  for split in (k for k, v in groups[0].items() if isinstance(v, dict)):
    merged["curves"][split] = {
        metric: np.concatenate([np.asarray(g[split][metric]).reshape(len(merged["steps"]), -1)
                                for g in groups], axis=1).tolist()
        for metric in groups[0][split]}
  merged["final"] = {split: {metric: mean_std(values[-1])
                             for metric, values in split_curves.items()}
                     for split, split_curves in merged["curves"].items()}
  train, test = (np.asarray(merged["curves"][s]["accuracy"][-1]) for s in ("train", "test"))
  merged["final"]["gap"] = {"train_test_accuracy": mean_std(train - test)}
  return merged


def run(config: TableConfig, workdir: str) -> dict:
  """Trains every (dataset, model) pair; its results, and plots/ in `workdir`."""
  unknown = sorted(set(config.models) - set(MODELS))
  if unknown:
    raise ValueError(f"unknown models {unknown}; choose from {sorted(MODELS)}")
  write_config(workdir, dataclasses.asdict(config))
  start = time.perf_counter()
  results = {"config": dataclasses.asdict(config), "device": str(jax.devices()[0]),
             "environment": environment(), "runs": {}}
  programs = {}
  for dataset_name in config.datasets:
    dataset = load_dataset(dataset_name, config.val_fraction, val_seed=0)
    runs = {}
    for name in config.models:
      runs[name] = {"includes_compilation": name not in programs}
      if name not in programs:
        programs[name] = make_programs(name, dataset, config)
      runs[name].update(train_model(programs[name], dataset, config,
                                    os.path.join(workdir, "fits", dataset_name, name)))
    results["runs"][dataset_name] = runs
    plot_mean_std_curves(
        {name: (r["steps"], r["curves"]["test"]["accuracy"]) for name, r in runs.items()},
        os.path.join(workdir, "plots", f"test_accuracy_{dataset_name}.png"),
        ylabel="test accuracy", title=f"{dataset_name}: test accuracy, mean ± std over seeds")
  results["wall_seconds"] = time.perf_counter() - start
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec = Recorder("mnist1d_table", variant)
  seeds = list(range(results["config"]["num_seeds"]))
  for dataset, runs in results["runs"].items():
    for model, run in runs.items():
      for split, figures in run["final"].items():
        if split != "gap":
          yield from rec.per_seed(seeds, figures["accuracy"]["values"], dataset=dataset,
                                  arm=model, split=split, metric="accuracy")
      yield rec.single(run["num_params"], dataset=dataset, arm=model, metric="num_params")


def markdown_table(results: dict) -> str:
  """Ours beside the paper: test accuracy, train accuracy, gap, and time per seed (marked † where
  a rerun resumed from checkpoints: then the seconds are the rerun's)."""
  rows = ["| data | model | params | test acc (ours) | paper README / logged | train acc | gap "
          "| s per seed (incl. compile, * reused, † resumed) | s per 1000 steps per seed |",
          "|---|---|---|---|---|---|---|---|---|"]
  order = list(results["config"]["models"])  # a saved file's keys are sorted
  for dataset_name, runs in results["runs"].items():
    for name, r in sorted(runs.items(), key=lambda item: order.index(item[0])):
      paper = PAPER.get(name)
      ref = "human 95.8%" if paper is None else (
          f"{paper[3]}% (shuffled)" if "shuffled" in dataset_name else f"{paper[1]}% / {paper[2]}%")
      f, reused = r["final"], "" if r.get("includes_compilation", True) else "*"
      reused += "†" if r.get("resumed_from_steps") else ""
      rows.append(
          f"| {dataset_name} | {name} | {r['num_params']:,} | {percent(f['test']['accuracy'])} "
          f"| {ref} "
          f"| {percent(f['train']['accuracy'])} | {percent(f['gap']['train_test_accuracy'])} "
          f"| {r['seconds_per_seed']:.1f}{reused} "
          f"| {r['seconds_per_1000_steps_per_seed']:.2f}{reused} |")
  return "\n".join(rows + _measured_on(results))


def _measured_on(results: dict) -> list[str]:
  """One line under the table: the stack and machine it was measured on, and its wall time."""
  env = results.get("environment")
  if env is None:
    return []
  packages = env["packages"]
  return ["", f"Python {env['python']}, jax {packages['jax']}, flax {packages['flax']}, "
              f"{describe_cpu(env['machine'])} ({', '.join(env['devices'])}); "
              f"whole table {results['wall_seconds'] / 60:.1f} min."]


# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(models=("mlp", "cnn_mnist1d", "gru_mnist1d"), steps=3000,
            num_seeds=6)  # two groups of 3 share one compiled program (5 would compile two)

EXPERIMENT = Experiment(
    name="mnist1d_table", config=TableConfig, run=run, records=records, summary=markdown_table,
    report=markdown_table, variants={"smoke": smoke_config, "tour": TOUR})


if __name__ == "__main__":
  EXPERIMENT.command()
