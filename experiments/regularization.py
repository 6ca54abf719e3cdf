"""Regularization and generalization: which strategies shrink the train-test gap, and by how much.

    python -m experiments.regularization            # the default
    python -m experiments.regularization --smoke      # seconds
    python -m experiments.regularization --tasks=mnist:500 --strategies=none,dropout=0.5

A deliberately over-parameterised ReLU MLP (784-512-512-10, 0.67M parameters; 40-512-512-10 on
MNIST-1D) is trained on small training sets (500 and 3600 `mnist` digits, 3600 `mnist1d`
sequences; a stratified 10% of the 4000 training examples is held out for validation first) with
no regularization, an L2 penalty, Bernoulli dropout at several rates, Gaussian dropout,
DropConnect, max-norm, and dropout + max-norm. Every strategy trains the same seeds, and a seed
fixes both the initial weights and the batch order, so strategies are compared seed by seed
(paired differences against `none`). Reports train / val / test accuracy, the gaps, mean ± std
over seeds, learning curves, and our ordering of test error beside Srivastava et al. 2014
(full-MNIST test error: dropout + max-norm 1.05% < dropout + L2 1.25 < max-norm 1.35 < none 1.60
< L2 1.62), with the pairs ordered alike and Kendall's tau.
Its figures: docs/experiments/regularization.md (generated from the last default tour).

A strategy is 'none' or components joined by '+', each kind=value: l2=<weight>, dropout=<rate>,
gaussian=<rate> (Gaussian dropout), dropconnect=<rate>, max_norm=<c>; e.g. dropout=0.5+max_norm=1.
"""

import dataclasses
import os
import sys
import time
from typing import Iterator

import jax
import numpy as np
import optax
from scipy import stats

from dl_jax import optim
from dl_jax.constraints import max_norm, max_unit_norms
from dl_jax.data import Dataset, load_dataset
from dl_jax.data.split import stratified_positions
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.lab.verdicts import compare, format_p
from dl_jax.models.dropout import check_rate
from dl_jax.models.mlp import MLP
from dl_jax.plots import plot_mean_std_curves
from dl_jax.settings import at_least, setting
from dl_jax.train import (FitConfig, classification_loss, classification_metrics, fit,
                          make_eval_step, make_train_step)
from dl_jax.train.seeds import make_seeds_init
from dl_jax.train.writers import write_config
from dl_jax.stats import mean_std, percent

STREAMS = ("dropout", "dropconnect")

# Srivastava et al. 2014, Table 9 (784-1024-1024-2048-10 ReLU net, full MNIST): test error in %.
# Their dropout row is dropout + L2; ours is Bernoulli dropout alone.
SRIVASTAVA_TEST_ERROR = {"standard (none)": 1.60, "L2": 1.62, "max-norm": 1.35,
                         "dropout (+L2)": 1.25, "dropout + max-norm": 1.05}


@dataclasses.dataclass(frozen=True)
class RegularizationConfig:
  tasks: tuple[str, ...] = setting(("mnist:500", "mnist:3600", "mnist1d:3600"),
                                   "dataset:train_size pairs, e.g. mnist:500 (validation is held "
                                   "out first), comma separated.")
  strategies: tuple[str, ...] = setting(
      ("none", "l2=1e-3", "l2=1e-2", "dropout=0.2", "dropout=0.5", "gaussian=0.5",
       "dropconnect=0.5", "max_norm=1", "dropout=0.5+max_norm=1"),
      "Strategies, comma separated: none, or '+'-joined kind=value: l2, dropout, gaussian, "
      "dropconnect, max_norm.")
  widths: tuple[int, ...] = setting((512, 512), "Hidden widths of the ReLU MLP, comma separated.")
  optimizer: str = setting("momentum", "Optimizer.", choices=optim.OPTIMIZERS)
  learning_rate: float = setting(0.05, "Peak learning rate.")
  schedule: str = setting("warmup_cosine", "Learning-rate schedule.", choices=optim.SCHEDULES)
  warmup_steps: int = setting(100, "Linear warm-up steps of the warmup_cosine schedule.")
  batch_size: int = setting(64, "Training examples per step.")
  steps: int = setting(1000, "Training steps per strategy and task.")
  eval_every: int = setting(100, "Steps between evaluations (the learning curves' points).")
  steps_per_call: int = setting(50, "Most training steps per jitted call (a lax.scan); fit "
                                "uses the largest that divides eval_every.", check=at_least(1))
  val_fraction: float = setting(0.1, "Share of each dataset's train held out (stratified) for "
                                "validation before the task's subset is taken; 0: none.")
  num_seeds: int = setting(5, "Seeds per strategy (seeds 0 .. N-1), trained together; at least 2 "
                           "for mean ± std.", check=at_least(2))


def smoke_config() -> RegularizationConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return RegularizationConfig(tasks=("mnist1d:200",), widths=(32, 32), warmup_steps=5,
                              strategies=("none", "dropout=0.5", "dropconnect=0.5",
                                          "dropout=0.5+max_norm=0.5"),
                              steps=40, eval_every=20, steps_per_call=10, num_seeds=2)


# ---- strategies --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Strategy:
  """What one strategy string asks for; every field at its default means no regularization."""

  name: str
  l2_weight: float = 0.0
  dropout_rate: float = 0.0
  dropout_kind: str = "bernoulli"
  dropconnect_rate: float = 0.0
  max_norm: float = 0.0

  @property
  def kinds(self) -> frozenset[str]:
    """Which regularizers are on (Gaussian dropout counts as its own kind)."""
    on = {"l2": self.l2_weight, "max_norm": self.max_norm, "dropconnect": self.dropconnect_rate,
          "dropout" if self.dropout_kind == "bernoulli" else "gaussian": self.dropout_rate}
    return frozenset(kind for kind, value in on.items() if value)


_FIELDS = {"l2": ("l2_weight", {}), "dropout": ("dropout_rate", {}),
           "gaussian": ("dropout_rate", {"dropout_kind": "gaussian"}),
           "dropconnect": ("dropconnect_rate", {}), "max_norm": ("max_norm", {})}


def parse_strategy(text: str) -> Strategy:
  """'dropout=0.5+max_norm=3' -> Strategy(dropout_rate=0.5, max_norm=3.0); 'none' -> defaults.
  Checks every value here, so a typo fails before any training starts."""
  fields = {}
  for part in (p for p in text.split("+") if p != "none"):
    kind, _, value = part.partition("=")
    if kind not in _FIELDS or not value:
      raise ValueError(f"bad strategy component {part!r} in {text!r}: write kind=value with kind "
                       f"one of {sorted(_FIELDS)}, joined by '+', or 'none'.")
    field, extra = _FIELDS[kind]
    if field in fields:
      raise ValueError(f"strategy {text!r} sets {field} twice; give each regularizer once.")
    try:
      fields[field] = float(value)
    except ValueError:
      raise ValueError(f"{part!r} in strategy {text!r}: {value!r} is not a number.") from None
    fields.update(extra)
  strategy = Strategy(name=text, **fields)
  _check_values(strategy)
  return strategy


def _check_values(strategy: Strategy) -> None:
  check_rate(strategy.dropout_rate, f"{strategy.name}: dropout")
  check_rate(strategy.dropconnect_rate, f"{strategy.name}: DropConnect")
  if strategy.l2_weight < 0 or strategy.max_norm < 0:
    raise ValueError(f"strategy {strategy.name!r}: l2 weights and max-norm bounds must be >= 0 "
                     "(0 turns them off).")


def make_model(strategy: Strategy, widths, num_classes: int) -> MLP:
  return MLP(widths=tuple(widths), num_outputs=num_classes, dropout_rate=strategy.dropout_rate,
             dropout_kind=strategy.dropout_kind, dropconnect_rate=strategy.dropconnect_rate)


def make_tx(strategy: Strategy, config: RegularizationConfig) -> optax.GradientTransformation:
  """The shared optimizer, followed by the max-norm projection when the strategy has one."""
  schedule = optim.make_schedule(config.schedule, config.learning_rate, config.steps,
                                 config.warmup_steps)
  tx = optim.make_optimizer(config.optimizer, schedule)
  return optax.chain(tx, max_norm(strategy.max_norm)) if strategy.max_norm else tx


# ---- data --------------------------------------------------------------------------------------

def parse_task(text: str) -> tuple[str, int]:
  name, _, size = text.partition(":")
  if not size.isdigit() or int(size) < 1:
    raise ValueError(f"bad task {text!r}: write dataset:train_size, e.g. mnist:500.")
  return name, int(size)


def task_dataset(text: str, val_fraction: float) -> Dataset:
  """The dataset with validation carved out first, then a stratified subset of the rest as train
  (the same examples for every seed and strategy)."""
  name, size = parse_task(text)
  dataset = load_dataset(name, val_fraction, val_seed=0)
  if size > len(dataset.train):
    raise ValueError(f"task {text!r} asks for {size} training examples but {name} has "
                     f"{len(dataset.train)} after holding out validation; ask for fewer.")
  if size < len(dataset.train):
    _, chosen = stratified_positions(dataset.train.labels, size, seed=0)
    dataset = dataclasses.replace(dataset, train=dataset.train.subset(chosen))
  return dataset


# ---- training ----------------------------------------------------------------------------------

def train_strategy(strategy: Strategy, dataset: Dataset, config: RegularizationConfig,
                   workdir: str) -> dict:
  """Every seed of one strategy on one task: one `fit` of the stacked seeds (a rerun resumes from
  its checkpoint in `workdir`); its curves and final figures."""
  model = make_model(strategy, config.widths, dataset.num_classes)
  seeds = list(range(config.num_seeds))
  init = make_seeds_init(model, make_tx(strategy, config), dataset.train.gather([0])["x"])
  fit_config = FitConfig(num_steps=config.steps, batch_size=config.batch_size,
                         eval_every=config.eval_every, log_every=config.eval_every,
                         checkpoint_every=config.steps, max_steps_per_call=config.steps_per_call,
                         train_eval_examples=len(dataset.train), test_curve=True)
  start = time.perf_counter()
  states, results = fit(init(seeds), make_train_step(
      classification_loss(model, strategy.l2_weight), STREAMS),
      make_eval_step(classification_metrics(model)), dataset, fit_config, workdir, seeds=seeds)
  curves = {"train" if split == "train_eval" else split: values["accuracy"]  # [evaluation][seed]
            for split, values in results["curves"].items() if isinstance(values, dict)}
  final = {split: results[split]["accuracy"] for split in dataset.splits()}
  return {"strategy": strategy.name, "seconds": time.perf_counter() - start,
          "resumed_from_step": results["resumed_from_step"],
          "steps": results["curves"]["step"], "accuracy_curves": curves,
          "final": {**final, **_gaps({k: np.asarray(v) for k, v in final.items()})},
          "max_unit_norm": {path: np.asarray(value).tolist()  # per seed
                            for path, value in jax.vmap(max_unit_norms)(states.params).items()}}


def _gaps(accuracy: dict[str, np.ndarray]) -> dict[str, list]:
  gaps = {"gap_test": accuracy["train"] - accuracy["test"]}
  if "val" in accuracy:
    gaps["gap_val"] = accuracy["train"] - accuracy["val"]
  return {k: v.tolist() for k, v in gaps.items()}


# ---- figures computed from the per-seed results ------------------------------------------------

def paired_change(values, baseline) -> dict:
  """Mean ± std over seeds of (values - baseline), the two-sided p-value of a paired t-test of
  "no change" (each side's one-sided p doubled), and whether it is clear: p < 0.05."""
  diff = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
  test = compare(values, baseline, paired=True)
  p = min(1.0, 2 * min(test.p, test.p_opposite))
  return {**mean_std(diff), "p": p, "clear": bool(p < 0.05)}


def summarize(runs: dict[str, dict]) -> dict[str, dict]:
  """Per strategy: mean ± std of every final figure, and paired changes against 'none'."""
  baseline = runs.get("none")
  summary = {}
  for name, run in runs.items():
    row = {key: mean_std(values) for key, values in run["final"].items()}
    if baseline is not None and name != "none":
      row["gap_change"] = paired_change(run["final"]["gap_test"], baseline["final"]["gap_test"])
      row["gap_change"]["relative"] = row["gap_change"]["mean"] / np.mean(
          baseline["final"]["gap_test"])  # of the unregularized gap
      row["test_change"] = paired_change(run["final"]["test"], baseline["final"]["test"])
    summary[name] = row
  return summary


def paper_role(strategy: Strategy) -> str | None:
  """The row of Srivastava et al.'s table this strategy stands for, if any."""
  roles = {frozenset(): "standard (none)", frozenset({"l2"}): "L2",
           frozenset({"max_norm"}): "max-norm", frozenset({"dropout"}): "dropout (+L2)",
           frozenset({"dropout", "max_norm"}): "dropout + max-norm"}
  return roles.get(strategy.kinds)


def _selection_score(row: dict) -> float:
  """Validation accuracy, which picks among strategies that stand for one paper row (several
  dropout rates or L2 weights); the first strategy wins when there is no validation split."""
  return row["val"]["mean"] if "val" in row else 0.0


def compare_with_paper(summary: dict[str, dict], strategies: list[Strategy]) -> dict:
  """Our test error beside the paper's for the rows both have (where several of our strategies
  stand for one row, the one with the best validation accuracy); Kendall's tau between the two
  orderings and how many pairs of rows are ordered alike."""
  chosen = {}
  for strategy in strategies:
    role = paper_role(strategy)
    if role is not None and (role not in chosen or _selection_score(summary[strategy.name])
                             > _selection_score(summary[chosen[role]])):
      chosen[role] = strategy.name
  rows = {role: {"strategy": name, "paper": SRIVASTAVA_TEST_ERROR[role],
                 "ours": 100 * (1 - summary[name]["test"]["mean"])}
          for role, name in chosen.items()}
  roles = list(rows)
  pairs = [(a, b) for i, a in enumerate(roles) for b in roles[i + 1:]]
  agree = [(a, b) for a, b in pairs if (rows[a]["paper"] < rows[b]["paper"])
           == (rows[a]["ours"] < rows[b]["ours"])]
  tau = (stats.kendalltau([rows[r]["paper"] for r in roles], [rows[r]["ours"] for r in roles])[0]
         if len(roles) > 2 else float("nan"))
  return {"rows": rows, "pairs": len(pairs), "pairs_agreeing": len(agree),
          "kendall_tau": float(tau), "ours_order": sorted(roles, key=lambda r: rows[r]["ours"]),
          "paper_order": sorted(roles, key=lambda r: rows[r]["paper"])}


# ---- the run -----------------------------------------------------------------------------------

def check_config(config: RegularizationConfig) -> list[Strategy]:
  """The parsed strategies; a typo in a strategy or task raises ValueError before training."""
  strategies = [parse_strategy(s) for s in config.strategies]
  for task in config.tasks:
    parse_task(task)
  if config.num_seeds < 2:
    raise ValueError("num_seeds must be >= 2: the figures are mean ± std over seeds.")
  return strategies


def run(config: RegularizationConfig, workdir: str) -> dict:
  """Trains every strategy on every task; its results, and plots/ in `workdir`."""
  strategies = check_config(config)
  write_config(workdir, dataclasses.asdict(config))
  results = {"config": dataclasses.asdict(config), "tasks": {}}
  start = time.perf_counter()
  for task in config.tasks:
    dataset = task_dataset(task, config.val_fraction)
    runs = {}
    for strategy in strategies:
      runs[strategy.name] = train_strategy(
          strategy, dataset, config, os.path.join(workdir, "fits", task, strategy.name))
      _report_progress(task, runs[strategy.name])
    summary = summarize(runs)
    results["tasks"][task] = {"dataset": dataset.metadata, "runs": runs, "summary": summary,
                              "paper": compare_with_paper(summary, strategies)}
  results["wall_seconds"] = time.perf_counter() - start
  results["plots"] = save_plots(results, os.path.join(workdir, "plots"))
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec = Recorder("regularization", variant)
  seeds = list(range(results["config"]["num_seeds"]))
  for task, figures in results["tasks"].items():
    for strategy, row in figures["summary"].items():
      for split in ("train", "val", "test"):
        yield from rec.per_seed(seeds, row[split]["values"], dataset=task, arm=strategy,
                                split=split, metric="accuracy")


def _report_progress(task: str, run: dict) -> None:
  test, gap = mean_std(run["final"]["test"]), mean_std(run["final"]["gap_test"])
  print(f"{task} {run['strategy']}: {run['seconds']:.1f} s, test {100 * test['mean']:.1f}%, "
        f"gap {100 * gap['mean']:.1f} pts", file=sys.stderr, flush=True)


def save_plots(results: dict, directory: str) -> list[str]:
  """Per task: test-accuracy and train-test-gap learning curves, one line per strategy."""
  paths = []
  for task, record in results["tasks"].items():
    slug = task.replace(":", "_")
    runs = record["runs"].values()
    curves = {"test accuracy": {r["strategy"]: np.asarray(r["accuracy_curves"]["test"])
                                for r in runs},
              "train - test accuracy": {r["strategy"]: np.subtract(r["accuracy_curves"]["train"],
                                                                   r["accuracy_curves"]["test"])
                                        for r in runs}}
    for (ylabel, values), file in zip(curves.items(), ("test_accuracy", "gap")):
      steps = next(iter(runs))["steps"]
      paths.append(plot_mean_std_curves(
          {name: (steps, v) for name, v in values.items()},
          os.path.join(directory, f"{file}_{slug}.png"), ylabel=ylabel,
          title=f"{task}: {ylabel}, mean ± std over {results['config']['num_seeds']} seeds"))
  return paths


def _change(stat: dict | None, words: tuple[str, str]) -> str:
  """A paired change in points, with the verdict computed from it: words[0] when it is clearly
  negative, words[1] when clearly positive, 'n.s.' otherwise."""
  if stat is None:
    return "-"
  verdict = "n.s." if not stat["clear"] else words[0] if stat["mean"] < 0 else words[1]
  relative = f", {100 * stat['relative']:+.0f}%" if "relative" in stat else ""
  return (f"{100 * stat['mean']:+.1f} ± {100 * stat['std']:.1f} ({verdict}{relative}, "
          f"{format_p(stat['p'])})")


def markdown_report(results: dict) -> str:
  """Per task: the strategy table, then the comparison with Srivastava et al. 2014."""
  config = results["config"]
  resumed = sum(run.get("resumed_from_step") is not None
                for task in results["tasks"].values() for run in task["runs"].values())
  wall = f"wall time {results['wall_seconds']:.0f} s" + (
      f" (a rerun: {resumed} trainings resumed from checkpoints)" if resumed else "")
  lines = ["# Regularization and generalization", "",
           f"MLP {config['widths']} (ReLU), {config['optimizer']} lr {config['learning_rate']} "
           f"({config['schedule']}), batch {config['batch_size']}, {config['steps']} steps, "
           f"{config['num_seeds']} seeds; {wall}. Accuracy in "
           "%, mean ± std over seeds. gap = train - test accuracy (points). Changes are paired by "
           "seed against `none`; 'shrinks'/'widens'/'better'/'worse' when a two-sided paired "
           "t-test over seeds gives p < 0.05, else 'n.s.'; the % is the gap change relative to "
           "`none`'s gap.", ""]
  for task, record in results["tasks"].items():
    meta = record["dataset"]
    lines += [f"## {task} ({meta['num_train']} train, {meta['num_val']} val, "
              f"{meta['num_test']} test)", "",
              "| strategy | train | val | test | gap (train-test) | gap change | test change |",
              "|---|---|---|---|---|---|---|"]
    for name, row in record["summary"].items():
      val = percent(row["val"], unit="") if "val" in row else "-"
      gap_change, test_change = ("(baseline)",) * 2 if name == "none" else (
          _change(row.get("gap_change"), ("shrinks", "widens")),
          _change(row.get("test_change"), ("worse", "better")))
      train, test, gap = (percent(row[k], unit="") for k in ("train", "test", "gap_test"))
      lines.append(f"| {name} | {train} | {val} | {test} | {gap} | {gap_change} | {test_change} |")
    lines += [""] + paper_lines(record["paper"]) + [""]
  return "\n".join(lines) + "\n"


def paper_lines(paper: dict) -> list[str]:
  """Our test error beside Srivastava et al.'s, and how alike the two orderings are."""
  if len(paper["rows"]) < 2:
    return ["(too few strategies with a counterpart in Srivastava et al. 2014 to compare)"]
  lines = ["| Srivastava et al. 2014 row | our strategy (best val of its kind) | "
           "paper test error % (full MNIST) | ours % |", "|---|---|---|---|"]
  lines += [f"| {role} | {r['strategy']} | {r['paper']:.2f} | {r['ours']:.1f} |"
            for role, r in paper["rows"].items()]
  return lines + ["", f"Ordering, best first: ours {' < '.join(paper['ours_order'])}; paper "
                  f"{' < '.join(paper['paper_order'])}. {paper['pairs_agreeing']} of "
                  f"{paper['pairs']} pairs ordered alike; Kendall's tau "
                  f"{paper['kendall_tau']:.2f}."]


# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(tasks=("mnist:500",), strategies=("none", "dropout=0.5", "dropconnect=0.5"),
            steps=500, num_seeds=5)

EXPERIMENT = Experiment(
    name="regularization", config=RegularizationConfig, run=run, records=records,
    summary=markdown_report, report=markdown_report, variants={"smoke": smoke_config, "tour": TOUR},
    check=check_config)


if __name__ == "__main__":
  EXPERIMENT.command()
