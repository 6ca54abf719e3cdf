"""Sparsity and efficient deployment: weight and activation penalties, magnitude pruning, and
removing whole neurons, on a LeNet-300-100 MLP (784-300-100-10) trained on `mnist`.

    python -m experiments.sparsity            # the default
    python -m experiments.sparsity --smoke    # seconds
    python -m experiments.sparsity --settings=none,l1 --seeds=0,1 --prune_sparsities=0.9

For each setting (no penalty, L2, L1, elastic net, activation L1) every seed is trained together
in one vmapped program (dl_jax.train.seeds). Then:
- magnitude pruning (Han et al. 2015), global across layers, iterative: prune to each of
  `prune_sparsities` in turn and fine-tune with the pruned weights frozen at exactly zero
  (dl_jax.pruning.freeze_pruned around Adam); one-shot pruning without fine-tuning gives the
  accuracy-sparsity curve the penalties are compared on (plots/accuracy_vs_sparsity.png);
- deployment of the model pruned to `target_sparsity`: on-disk size (np.savez_compressed, dense
  against CSR) and inference throughput of dense numpy / jitted JAX against scipy.sparse CSR;
- structured pruning: the hidden units with the lowest mean |activation| on the training data are
  removed, leaving a narrower dense 784-`structured_widths`-10 MLP, which is fine-tuned; its
  parameters, FLOPs and throughput against the original.
Targets (Han et al. 2015): >= 90% of weights removed for <= 1 point of test accuracy; removing
neurons, a dense model >= 3x cheaper in FLOPs, measurably faster, for <= 1 point.
Its figures: docs/experiments/sparsity.md (generated from the last default tour).
"""

import dataclasses
import os
import sys
import time
from typing import Iterator

import jax
import numpy as np
import optax

from dl_jax.data import Dataset, load_dataset
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.models.mlp import MLP
from dl_jax.pruning import (SCOPES, freeze_pruned, iterative_pruning, magnitude_prune,
                            restart_from)
from dl_jax.regularizers import Penalties
from dl_jax.settings import at_least, between, each, non_negative_finite, one_of, positive_finite
from dl_jax.settings import setting as config_setting  # `setting` names a penalty setting here
from dl_jax.sparse_inference import (dense_forward, examples_per_second, mlp_layers, model_sizes,
                                     sparse_forward, to_csr)
from dl_jax.sparsity import weight_sparsity
from dl_jax.structured_pruning import mlp_flops, narrow_mlp, top_units, unit_scores
from dl_jax.train import (FitConfig, classification_loss, classification_metrics, count_params,
                          create_train_state, evaluate, fit, make_eval_step, make_train_step)
from dl_jax.train.classification import apply_model
from dl_jax.train.seeds import stack_states, stacked_eval_step, unstack_state
from dl_jax.train.writers import write_config
from experiments.reports.sparsity import (_mean_std, markdown_report, plot_accuracy_vs_sparsity,
                                          summary)

TARGET_LOSS = 0.01  # Han et al. 2015: pruning may cost at most 1 point of test accuracy
TARGET_FLOPS_REDUCTION = 3.0
SETTINGS = ("none", "l2", "l1", "elastic", "activation_l1")


@dataclasses.dataclass(frozen=True)
class SparsityConfig:
  settings: tuple[str, ...] = config_setting(
      SETTINGS, f"Penalty settings, comma separated, from {','.join(SETTINGS)}.",
      check=each(one_of(SETTINGS)))
  dataset: str = config_setting("mnist", "Dataset: an embedded name, an .npz file or a directory.")
  val_fraction: float = config_setting(0.1, "Share of train held out (stratified) for validation; "
                                       "0: none.")
  widths: tuple[int, ...] = config_setting((300, 100), "Hidden widths of the MLP, comma separated "
                                           "(LeNet-300-100).")
  l2: float = config_setting(1e-4, "Weight of 0.5 * sum w^2 in the loss (settings l2 and "
                             "elastic).", check=non_negative_finite)
  l1: float = config_setting(1e-5, "Weight of sum |w| in the loss (settings l1 and elastic).",
                             check=non_negative_finite)
  activation_l1: float = config_setting(1e-3, "Weight of the per-example sum |a| over hidden units "
                                        "(setting activation_l1).", check=non_negative_finite)
  learning_rate: float = config_setting(1e-3, "Adam learning rate (constant) of the first "
                                        "training.")
  batch_size: int = config_setting(100, "Training examples per step.")
  steps: int = config_setting(2000, "Training steps before any pruning.")
  prune_scope: str = config_setting("global", "Magnitude pruning ranks weights over the whole "
                                    "model (global) or within each layer (layer).",
                                    choices=SCOPES)
  prune_sparsities: tuple[float, ...] = config_setting(
      (0.5, 0.75, 0.9, 0.95), "Rising sparsities of the iterative prune / fine-tune rounds, "
      "comma separated.", check=each(between(0, 1)))
  oneshot_sparsities: tuple[float, ...] = config_setting(
      (0.5, 0.75, 0.9, 0.95, 0.98), "Sparsities evaluated by pruning the trained model without "
      "retraining, comma separated.")
  target_sparsity: float = config_setting(
      0.9, "The prune_sparsities round whose model is deployed and judged against the target.",
      check=between(0, 1))
  fine_tune_steps: int = config_setting(300, "Fine-tuning steps per iterative pruning round.")
  fine_tune_learning_rate: float = config_setting(
      3e-4, "Adam learning rate of the fine-tuning after each pruning round.")
  structured_widths: tuple[int, ...] = config_setting(
      (100, 50), "Hidden units kept per layer by structured pruning, comma separated.")
  structured_steps: int = config_setting(1000, "Fine-tuning steps of the narrowed MLP.")
  structured_learning_rate: float = config_setting(
      1e-3, "Adam learning rate of the narrowed MLP's fine-tuning.")
  score_examples: int = config_setting(2000, "Training examples whose mean |activation| scores "
                                       "the units for structured pruning.", check=at_least(1))
  timing_batch_sizes: tuple[int, ...] = config_setting(
      (1, 1000), "Batch sizes of the inference throughput timings, comma separated.")
  timing_seconds: float = config_setting(0.2, "Least seconds of calls per throughput timing.",
                                         check=positive_finite)
  eval_batch_size: int = config_setting(1000, "Examples per evaluation batch.")
  seeds: tuple[int, ...] = config_setting((0, 1, 2), "Seeds trained together in one vmapped "
                                          "program, comma separated.")


def smoke_config() -> SparsityConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return SparsityConfig(settings=("none", "l1", "activation_l1"), widths=(32, 16), steps=30,
                        prune_sparsities=(0.5, 0.9), oneshot_sparsities=(0.5, 0.9),
                        fine_tune_steps=10, structured_widths=(8, 4), structured_steps=10,
                        score_examples=200, timing_batch_sizes=(100,), timing_seconds=0.01,
                        seeds=(0, 1))


def _check(config: SparsityConfig) -> None:
  """Fails on a bad name or size before any training starts."""
  unknown = sorted(set(config.settings) - set(SETTINGS))
  if unknown:
    raise ValueError(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
  if config.prune_scope not in SCOPES:
    raise ValueError(f"unknown prune_scope {config.prune_scope!r}; choose from {list(SCOPES)}")
  if not all(0 <= s < 1 for s in config.prune_sparsities + config.oneshot_sparsities) or list(
      config.prune_sparsities) != sorted(config.prune_sparsities):
    raise ValueError(f"sparsities must lie in [0, 1) and prune_sparsities must rise, got "
                     f"{list(config.prune_sparsities)} and {list(config.oneshot_sparsities)}")
  if config.target_sparsity not in config.prune_sparsities:
    raise ValueError(f"target_sparsity {config.target_sparsity} must be one of prune_sparsities "
                     f"{list(config.prune_sparsities)}")
  if len(config.structured_widths) != len(config.widths) or any(
      not 1 <= k <= w for k, w in zip(config.structured_widths, config.widths)):
    raise ValueError(f"structured_widths {config.structured_widths} must keep between 1 and "
                     f"all units of each hidden layer {config.widths}")
  if not config.seeds:
    raise ValueError("give at least one seed")


def penalties(config: SparsityConfig, setting: str) -> Penalties | None:
  """The penalty a setting adds to the cross-entropy (None: no penalty at all)."""
  return {"none": None, "l2": Penalties(l2=config.l2), "l1": Penalties(l1=config.l1),
          "elastic": Penalties(l1=config.l1, l2=config.l2),
          "activation_l1": Penalties(activation_l1=config.activation_l1)}[setting]


def run(config: SparsityConfig, workdir: str) -> dict:
  """Trains, prunes and deploys every setting; its results, and plots/ in `workdir`."""
  _check(config)
  write_config(workdir, dataclasses.asdict(config))
  start = time.perf_counter()
  dataset = load_dataset(config.dataset, config.val_fraction, val_seed=0)
  runs = {}
  for setting in config.settings:
    runs[setting] = run_setting(config, dataset, setting, os.path.join(workdir, "fits", setting))
    _report_progress(setting, runs[setting])
  results = {"config": dataclasses.asdict(config), "dataset": dataset.metadata,
             "device": str(jax.devices()[0]), "wall_seconds": time.perf_counter() - start,
             "runs": runs}
  results["targets"] = targets(results)
  results["plots"] = [plot_accuracy_vs_sparsity(results, os.path.join(workdir, "plots"))]
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec, seeds = Recorder("sparsity", variant), results["config"]["seeds"]
  dataset = results["config"]["dataset"]
  for setting, run in results["runs"].items():
    structured = run["structured"]
    for split in ("train", "val", "test"):
      yield from rec.per_seed(seeds, run["trained"][split]["accuracy"], dataset=dataset,
                              arm=f"{setting}, dense", split=split, metric="accuracy")
      yield from rec.per_seed(seeds, structured["fine_tuned"][split]["accuracy"], dataset=dataset,
                              arm=f"{setting}, narrow", split=split, metric="accuracy")
    for sparsity, figures in run["oneshot"].items():
      yield from rec.per_seed(seeds, figures["accuracy"], dataset=dataset,
                              arm=f"{setting}, dense", split="test",
                              metric=f"accuracy, {float(sparsity):g} of weights pruned")
    yield rec.single(structured["original_flops"] / structured["flops"], dataset=dataset,
                     arm=f"{setting}, narrow", metric="fewer_flops")
  for setting, target in results.get("targets", {}).items():
    if "magnitude" in target:
      yield rec.single(target["magnitude"]["removed"], dataset=dataset,
                       arm=f"{setting}, pruned + fine-tuned", metric="removed")
      yield rec.single(target["magnitude"]["accuracy_loss"], dataset=dataset,
                       arm=f"{setting}, pruned + fine-tuned", metric="accuracy_loss")


# ---- one setting -------------------------------------------------------------------------------

class _Trainer:
  """Everything one model shape needs: its loss, jitted steps, and train/evaluate helpers. Every
  training is one `fit` of the stacked seeds into its own folder of `workdir` (a rerun resumes)."""

  def __init__(self, config: SparsityConfig, dataset: Dataset, model: MLP, penalty, workdir: str):
    self.config, self.dataset, self.model, self.workdir = config, dataset, model, workdir
    self.train_step = make_train_step(classification_loss(model, penalty_fn=penalty))
    self.eval_step = make_eval_step(classification_metrics(model, zero_activations=True))

  def train(self, states, steps: int, name: str):
    """`steps` more steps of every seed: a pruned or narrowed model keeps its step count, and
    fit's num_steps counts from step 0."""
    end = int(np.asarray(states.step).reshape(-1)[0]) + steps
    fit_config = FitConfig(num_steps=end, batch_size=self.config.batch_size, eval_every=end,
                           log_every=end, checkpoint_every=end,
                           eval_batch_size=self.config.eval_batch_size)
    states, _ = fit(states, self.train_step, self.eval_step, self.dataset, fit_config,
                    os.path.join(self.workdir, name), seeds=list(self.config.seeds))
    return states

  def figures(self, states) -> dict:
    """{split: {metric: per-seed list}} and the train-val / train-test accuracy gaps."""
    eval_step = stacked_eval_step(self.eval_step)  # the program fit compiled
    figures = {name: evaluate(eval_step, states, split, self.config.eval_batch_size)
               for name, split in self.dataset.splits().items()}
    train = np.asarray(figures["train"]["accuracy"])
    figures["gap"] = {f"train_{s}": (train - np.asarray(figures[s]["accuracy"])).tolist()
                      for s in ("val", "test") if s in figures}
    return figures


def run_setting(config: SparsityConfig, dataset: Dataset, setting: str, workdir: str) -> dict:
  """Train all seeds, then magnitude pruning, deployment costs and structured pruning; the
  trainings' checkpoints go into `workdir`."""
  start = time.perf_counter()
  penalty = penalties(config, setting)
  model = MLP(widths=config.widths, num_outputs=dataset.num_classes)
  trainer = _Trainer(config, dataset, model, penalty, workdir)
  example, tx = dataset.train.gather([0])["x"], optax.adam(config.learning_rate)
  states = stack_states([create_train_state(model, tx, example, seed) for seed in config.seeds])
  trained = trainer.train(states, config.steps, "dense")
  record = {"trained": {**trainer.figures(trained), "weights": _sparsity(trained.params)}}
  record["oneshot"] = {str(s): _oneshot_test(trainer, trained, s, config.prune_scope)
                       for s in config.oneshot_sparsities}
  record["iterative"], deployed = _iterative(config, trainer, trained)
  record["deployment"] = deployment(config, model, deployed,
                                    dataset.test.materialize()["x"])
  record["structured"] = structured(config, dataset, trainer, trained, penalty)
  record["seconds"] = time.perf_counter() - start
  return record


def _oneshot_test(trainer: _Trainer, trained, sparsity: float, scope: str) -> dict:
  """Test figures of every seed's model pruned to `sparsity` without any retraining."""
  prune = jax.vmap(lambda params: magnitude_prune(params, sparsity, scope))
  return trainer.figures(trained.replace(params=prune(trained.params)))["test"]


def _sparsity(stacked_params) -> list[dict]:
  """weight_sparsity of each seed's model."""
  count = len(jax.tree_util.tree_leaves(stacked_params)[0])
  return [weight_sparsity(jax.tree_util.tree_map(lambda a: a[i], stacked_params))
          for i in range(count)]


def _iterative(config: SparsityConfig, trainer: _Trainer, trained):
  """Prune-retrain rounds; per round the figures just after pruning and after fine-tuning.
  Returns (records, seed 0's fine-tuned params at `target_sparsity`)."""
  masked_tx = freeze_pruned(optax.adam(config.fine_tune_learning_rate))
  just_pruned = []

  def fine_tune(pruned):
    just_pruned.append(trainer.figures(pruned)["test"])  # before the donating steps consume it
    return trainer.train(pruned, config.fine_tune_steps,
                         f"pruned_{config.prune_sparsities[len(just_pruned) - 1]:g}")

  rounds, deployed = [], None
  for sparsity, tuned in iterative_pruning(trained, config.prune_sparsities, masked_tx, fine_tune,
                                           config.prune_scope, stacked=True):
    rounds.append({"sparsity": sparsity, "pruned_test": just_pruned[-1],
                   "fine_tuned": trainer.figures(tuned), "weights": _sparsity(tuned.params)})
    if sparsity == config.target_sparsity:
      deployed = jax.device_get(unstack_state(tuned, 0).params)  # seed 0's model, kept on host
  return rounds, deployed


# ---- deployment: size and speed ---------------------------------------------------------------

def _jax_forward(model: MLP, params):
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
  return lambda x: apply(params, x)


def throughputs(config: SparsityConfig, forwards: dict, x: np.ndarray) -> dict:
  """Examples per second of each forward at each timing batch size."""
  return {name: {str(b): examples_per_second(fn, x[:b], config.timing_seconds)
                 for b in config.timing_batch_sizes} for name, fn in forwards.items()}


def deployment(config: SparsityConfig, model: MLP, params, x_test: np.ndarray) -> dict:
  """Sizes and throughputs of one pruned model (seed 0); checks sparse and dense agree."""
  layers = mlp_layers(params)
  csr = to_csr(layers)
  agree = float(np.max(np.abs(dense_forward(layers, x_test) - sparse_forward(csr, x_test))))
  speeds = throughputs(config, {"dense_numpy": lambda x: dense_forward(layers, x),
                                "sparse_csr": lambda x: sparse_forward(csr, x),
                                "dense_jax": _jax_forward(model, params)}, x_test)
  return {**model_sizes(layers), "max_abs_logit_difference": agree, "examples_per_second": speeds,
          "nonzero_weights": int(sum(c.nnz for c, _ in csr))}


# ---- structured pruning: remove whole units ---------------------------------------------------

def _hidden_activations(model: MLP, params, x: np.ndarray) -> list[np.ndarray]:
  """Each hidden layer's activations [N, width], through the same pure apply as training."""
  _, _, sown = apply_model(model, params, {}, x, False, intermediates=True)
  return [np.asarray(a) for a in jax.tree_util.tree_leaves(sown)]


def structured(config: SparsityConfig, dataset: Dataset, trainer: _Trainer, trained,
               penalty) -> dict:
  """Keeps the `structured_widths` units of highest mean |activation| on training examples in
  each seed's model, fine-tunes the narrower MLPs together, and compares cost and accuracy."""
  x_score = dataset.train.gather(np.arange(min(config.score_examples, len(dataset.train))))["x"]
  narrow_params, dead = [], []
  for index in range(len(config.seeds)):
    params = unstack_state(trained, index).params
    scores = unit_scores(params, "activation", _hidden_activations(trainer.model, params, x_score))
    dead.append([int(np.sum(s == 0)) for s in scores])
    narrow_model, narrow = narrow_mlp(trainer.model, params,
                                      top_units(scores, config.structured_widths))
    narrow_params.append(narrow)
  narrow_trainer = _Trainer(config, dataset, narrow_model, penalty, trainer.workdir)
  states = restart_from(trained, stack_states(narrow_params),
                        optax.adam(config.structured_learning_rate), stacked=True)
  states = states.replace(apply_fn=narrow_model.apply)
  cut = narrow_trainer.figures(states)["test"]
  tuned = narrow_trainer.train(states, config.structured_steps, "narrow")
  input_dim = int(np.prod(dataset.input_shape))
  x_test = dataset.test.materialize()["x"]
  original, small = unstack_state(trained, 0).params, unstack_state(tuned, 0).params
  speeds = throughputs(config, {
      "original_jax": _jax_forward(trainer.model, original),
      "narrow_jax": _jax_forward(narrow_model, small),
      "original_numpy": lambda x, layers=mlp_layers(original): dense_forward(layers, x),
      "narrow_numpy": lambda x, layers=mlp_layers(small): dense_forward(layers, x)}, x_test)
  return {"dead_units": dead, "widths": list(config.structured_widths),
          "params": count_params(small), "original_params": count_params(original),
          "flops": mlp_flops(input_dim, config.structured_widths, dataset.num_classes),
          "original_flops": mlp_flops(input_dim, config.widths, dataset.num_classes),
          "cut_test": cut, "fine_tuned": narrow_trainer.figures(tuned),
          "examples_per_second": speeds}


# ---- summaries ---------------------------------------------------------------------------------

def targets(results: dict) -> dict:
  """Whether each setting met Han et al.'s targets, computed from the measured figures."""
  config, out = results["config"], {}
  for setting, r in results["runs"].items():
    base = np.asarray(r["trained"]["test"]["accuracy"])
    round_ = next(x for x in r["iterative"] if x["sparsity"] == config["target_sparsity"])
    loss = _mean_std(base - np.asarray(round_["fine_tuned"]["test"]["accuracy"]))[0]
    removed = _mean_std([w["overall"] for w in round_["weights"]])[0]
    s = r["structured"]
    s_loss = _mean_std(base - np.asarray(s["fine_tuned"]["test"]["accuracy"]))[0]
    reduction = s["original_flops"] / s["flops"]
    largest = max(config["timing_batch_sizes"])
    speedup = (s["examples_per_second"]["narrow_jax"][str(largest)]
               / s["examples_per_second"]["original_jax"][str(largest)])
    out[setting] = {
        "magnitude": {"removed": removed, "accuracy_loss": loss,
                      "met": bool(removed >= 0.9 and loss <= TARGET_LOSS)},
        "structured": {"flops_reduction": reduction, "speedup_jax": speedup,
                       "accuracy_loss": s_loss,
                       "met": bool(reduction >= TARGET_FLOPS_REDUCTION and speedup > 1
                                   and s_loss <= TARGET_LOSS)}}
  return out


def _report_progress(setting: str, record: dict) -> None:
  base = _mean_std(record["trained"]["test"]["accuracy"])[0]
  pruned = [f"{x['sparsity']:.2f}: {100 * _mean_std(x['fine_tuned']['test']['accuracy'])[0]:.1f}"
            for x in record["iterative"]]
  narrow = _mean_std(record["structured"]["fine_tuned"]["test"]["accuracy"])[0]
  print(f"{setting}: {record['seconds']:.0f} s, test {100 * base:.1f}%, pruned "
        f"{', '.join(pruned)}, narrow {100 * narrow:.1f}%", file=sys.stderr, flush=True)


# ---- command line ------------------------------------------------------------------------------

# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(settings=("none", "l1", "activation_l1"), steps=1000, structured_steps=500,
            fine_tune_steps=150, prune_sparsities=(0.5, 0.9), timing_seconds=0.05,
            seeds=(0, 1, 2, 3, 4))

EXPERIMENT = Experiment(
    name="sparsity", config=SparsityConfig, run=run, records=records, summary=summary,
    report=markdown_report, variants={"smoke": smoke_config, "tour": TOUR}, check=_check)


if __name__ == "__main__":
  EXPERIMENT.command()
