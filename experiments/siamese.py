"""Parameter sharing: a siamese encoder learns a distance on digits 0-4 that works on unseen 5-9.

    python -m experiments.siamese            # the default
    python -m experiments.siamese --smoke      # seconds
    python -m experiments.siamese --train_per_class=20     # a small training set
    python -m experiments.siamese --loss=triplet --variants=shared

An MLP encoder is trained with a contrastive loss (Hadsell et al. 2006) on seeded, balanced
same/different pairs of `mnist` training digits of classes 0-4 only. It is then judged on
  - pair verification (same / different): "same" iff the embedding distance is at most a threshold
    chosen on validation pairs of the seen classes (held-out digits 0-4), then applied unchanged to
    every set, unseen classes included; and the threshold-free ROC AUC;
  - one-shot 5-way classification: one support digit per class, each query labelled by its nearest
    support, over many seeded episodes;
on four sets: training digits (seen classes), validation and test digits of seen classes 0-4, and
test digits of classes 5-9 that no encoder ever saw. Train vs unseen is the generalization gap.

Variants: `shared` (one encoder for both inputs of a pair), `unshared_equal_params` (two encoders,
one per input, each narrower so that both together have the shared encoder's parameter count), and
`unshared_equal_width` (two encoders of the shared one's architecture: twice the parameters). For
the unshared ones a pair's first input goes through encoder a and the second through encoder b;
one-shot queries through a, supports through b. The baseline `pixels` is the same evaluation on raw
pixel distances (nearest neighbour on pixels). All seeds of a variant train together, stacked
in one `fit` (dl_jax.train.seeds), which checkpoints, resumes and stops on NaN; every variant
sees the same pair stream per seed and every model the same evaluation pairs and episodes (a
paired comparison).

The question: does one encoder shared by both inputs generalize better than two unshared ones, on
the seen classes and on classes it never saw, with all the training digits and with few
(`--train_per_class`); and does the learned distance beat raw pixels?
Its figures: docs/experiments/siamese.md (generated from the last default tour).
"""

import dataclasses
import os
import sys
import time
from typing import Iterator

import jax
import numpy as np

from dl_jax import optim
from dl_jax.activations import ACTIVATIONS
from dl_jax.data import Dataset, load_dataset
from dl_jax.data.pairs import (ClassIndex, PairBatches, per_class_subset, sample_episodes,
                               sample_pairs)
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.metric_losses import pair_distances
from dl_jax.models.mlp import MLP
from dl_jax.models.siamese import PairEncoder
from dl_jax.settings import at_least, each, one_of, positive_finite, setting
from dl_jax.train import FitConfig, fit
from dl_jax.train.metric_learning import LOSSES, pair_loss
from dl_jax.train.seeds import make_seeds_init
from dl_jax.train.step import train_step_fn
from dl_jax.train.writers import write_config
from dl_jax.verification import (best_threshold, one_shot_accuracy, verification_accuracy,
                                 verification_auc)
from dl_jax.stats import mean_std
from experiments.reports.siamese import markdown_report, save_plots, summary

VARIANTS = ("shared", "unshared_equal_params", "unshared_equal_width")
BASELINE = "pixels"
EVAL_SETS = ("train", "val", "test_seen", "test_unseen")  # (split, classes) in _eval_sets
METRICS = ("verification", "auc", "one_shot")


@dataclasses.dataclass(frozen=True)
class SiameseConfig:
  """Siamese MLP 784-256-256-32 with a contrastive loss (margin 1), Adam 1e-3 with warmup and
  cosine decay, 128 pairs per step, 1000 steps, 5 seeds; 2000 evaluation pairs per set, 1000
  5-way one-shot episodes with 3 queries per class."""

  dataset: str = setting("mnist", "Dataset: an embedded name, an .npz file or a directory.")
  seen_classes: tuple[int, ...] = setting((0, 1, 2, 3, 4), "Classes whose digits are trained on, "
                                          "comma separated.", check=each(at_least(0)))
  unseen_classes: tuple[int, ...] = setting((5, 6, 7, 8, 9), "Classes held out for evaluation "
                                            "only, comma separated.", check=each(at_least(0)))
  variants: tuple[str, ...] = setting(VARIANTS, f"Encoder variants to train, comma separated, from "
                                      f"{','.join(VARIANTS)}.", check=each(one_of(VARIANTS)))
  loss: str = setting("contrastive", "Metric loss: contrastive trains on pairs, triplet on "
                      "triplets.", choices=LOSSES)
  margin: float = setting(1.0, "Margin of the loss, in embedding distance.",
                          check=positive_finite)
  widths: tuple[int, ...] = setting((256, 256), "Hidden widths of the shared encoder, comma "
                                    "separated.")
  embedding_dim: int = setting(32, "Length of the embedding the encoder outputs.")
  activation: str = setting("relu", "Hidden activation of the encoder.",
                            choices=sorted(ACTIVATIONS))
  optimizer: str = setting("adam", "Optimizer.", choices=optim.OPTIMIZERS)
  learning_rate: float = setting(1e-3, "Peak learning rate.")
  schedule: str = setting("warmup_cosine", "Learning-rate schedule.", choices=optim.SCHEDULES)
  warmup_steps: int = setting(100, "Linear warm-up steps of the warmup_cosine schedule.")
  train_per_class: int = setting(0, "Train on only this many seeded digits per seen class; 0: "
                                 "all.", check=at_least(0))
  batch_size: int = setting(128, "Pairs (or triplets) per step.")
  steps: int = setting(1000, "Training steps per variant.")
  log_every: int = setting(50, "Steps between points of the training curves.")
  val_fraction: float = setting(0.1, "Share of train held out (stratified) for validation, where "
                                "the verification threshold is chosen; must be > 0.")
  eval_pairs: int = setting(2000, "Verification pairs per evaluation set.", check=at_least(1))
  episodes: int = setting(1000, "One-shot episodes per evaluation set.", check=at_least(1))
  ways: int = setting(5, "Classes per one-shot episode (at most the classes of a set).",
                      check=at_least(2))
  queries: int = setting(3, "Query digits per class and one-shot episode.", check=at_least(1))
  eval_seed: int = setting(1234, "Seed of the evaluation pairs and episodes (the same for every "
                           "model) and of the train_per_class subset.", check=at_least(0))
  seeds: tuple[int, ...] = setting((0, 1, 2, 3, 4), "Seeds trained together in one vmapped "
                                   "program, comma separated.")


def smoke_config() -> SiameseConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return SiameseConfig(widths=(32,), embedding_dim=8, steps=20, log_every=10, warmup_steps=5,
                       batch_size=32, eval_pairs=200, episodes=50, seeds=(0, 1))


def run(config: SiameseConfig, workdir: str) -> dict:
  """Evaluates the pixel baseline, trains and evaluates every variant; writes the reports."""
  check_config(config)
  write_config(workdir, dataclasses.asdict(config))
  start = time.perf_counter()
  dataset = limit_training_set(load_dataset(config.dataset, config.val_fraction, val_seed=0),
                               config)
  eval_sets = make_eval_sets(config, dataset)
  pixels = {split: _flat(dataset.splits()[split].materialize()["x"])[None] for split in
            dataset.splits()}
  results = {"config": dataclasses.asdict(config), "dataset": dataset.metadata,
             "eval_set_sizes": {name: s["size"] for name, s in eval_sets.items()},
             "variants": {BASELINE: {"num_params": 0, **score(pixels, pixels, eval_sets)}}}
  for variant in config.variants:
    results["variants"][variant] = train_variant(config, dataset, eval_sets, variant, workdir)
    _report_progress(variant, results["variants"][variant])
  results["wall_seconds"] = time.perf_counter() - start
  results["plots"] = save_plots(results, os.path.join(workdir, "plots"))
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec, seeds = Recorder("siamese", variant), results["config"]["seeds"]
  per_class = results["config"]["train_per_class"] or "all"
  dataset = f"{results['config']['dataset']}, {per_class} training digits per class"
  # the unseen classes are a test set of their own: seen classes' test split is "test"
  where = {"train": (dataset, "train"), "val": (dataset, "val"), "test_seen": (dataset, "test"),
           "test_unseen": (f"{dataset}, unseen classes", "test")}
  for variant_name, v in results["variants"].items():
    for split, (data, as_split) in where.items():
      for metric in ("one_shot", "verification", "auc"):
        values = v[split][metric]["values"]
        if variant_name == BASELINE:  # deterministic: one figure, no seed
          yield rec.single(values[0], dataset=data, arm=variant_name, split=as_split,
                           metric=metric)
        else:
          yield from rec.per_seed(seeds, values, dataset=data, arm=variant_name, split=as_split,
                                  metric=metric)


def check_config(config: SiameseConfig) -> None:
  """Fails on a bad name or size before any training starts."""
  unknown = sorted(set(config.variants) - set(VARIANTS))
  if unknown:
    raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}.")
  if config.loss not in LOSSES:
    raise ValueError(f"unknown loss {config.loss!r}; choose one of {list(LOSSES)}.")
  if set(config.seen_classes) & set(config.unseen_classes):
    raise ValueError(f"classes {sorted(set(config.seen_classes) & set(config.unseen_classes))} "
                     "are both seen and unseen; the two sets must be disjoint.")
  if not config.seeds or config.steps < 1 or config.log_every < 1:
    raise ValueError("there must be at least one seed, and steps and log_every must be >= 1.")


def limit_training_set(dataset: Dataset, config: SiameseConfig) -> Dataset:
  """The dataset with train cut to `train_per_class` seeded digits per seen class (if > 0)."""
  if not config.train_per_class:
    return dataset
  index = ClassIndex(dataset.train.labels, config.seen_classes)
  keep = per_class_subset(index, config.train_per_class, np.random.default_rng(config.eval_seed))
  return dataclasses.replace(dataset, train=dataset.train.subset(keep))


def _flat(x: np.ndarray) -> np.ndarray:
  return x.reshape(len(x), -1)


# ---- evaluation sets: fixed pairs and episodes per (split, classes) ----------------------------

def make_eval_sets(config: SiameseConfig, dataset: Dataset) -> dict:
  """Per evaluation set: the split it reads, and seeded verification pairs and one-shot episodes
  (positions into that split), drawn once so every model is scored on the same ones."""
  sources = {"train": ("train", config.seen_classes), "val": ("val", config.seen_classes),
             "test_seen": ("test", config.seen_classes),
             "test_unseen": ("test", config.unseen_classes)}
  if dataset.val is None:
    raise ValueError("the threshold is chosen on validation pairs: set val_fraction > 0.")
  sets = {}
  for number, (name, (split, classes)) in enumerate(sources.items()):
    index = ClassIndex(dataset.splits()[split].labels, classes)
    rng = np.random.default_rng([config.eval_seed, number])
    sets[name] = {"split": split, "size": int(index.counts.sum()),
                  "pairs": sample_pairs(index, config.eval_pairs, rng),
                  "episodes": sample_episodes(index, config.episodes, config.ways, config.queries,
                                              rng)}
  return sets


def score(embeddings_a: dict, embeddings_b: dict, eval_sets: dict) -> dict:
  """Every metric on every set, per model: embeddings_x[split] is [models, examples, dim]
  (branch a and branch b; the same arrays for a shared encoder). The verification threshold is
  each model's best on the 'val' pairs."""
  per_model = []
  for m in range(len(next(iter(embeddings_a.values())))):
    distances = {name: np.asarray(pair_distances(embeddings_a[s["split"]][m][s["pairs"]["a"]],
                                                 embeddings_b[s["split"]][m][s["pairs"]["b"]]))
                 for name, s in eval_sets.items()}
    threshold = best_threshold(distances["val"], eval_sets["val"]["pairs"]["same"])
    figures = {"threshold": threshold}
    for name, s in eval_sets.items():
      same = s["pairs"]["same"]
      episodes = one_shot_accuracy(embeddings_a[s["split"]][m], embeddings_b[s["split"]][m],
                                   s["episodes"])
      figures[name] = {"verification": verification_accuracy(distances[name], same, threshold),
                       "auc": verification_auc(distances[name], same),
                       "one_shot": float(np.mean(episodes)),
                       "one_shot_episode_std": float(np.std(episodes))}
    per_model.append(figures)
  return summarize(per_model)


def summarize(per_model: list[dict]) -> dict:
  """Per set and metric: per-model values, mean and std; plus the gaps train - set."""
  out = {"threshold": mean_std([f["threshold"] for f in per_model])}
  for name in EVAL_SETS:
    out[name] = {metric: mean_std([f[name][metric] for f in per_model])
                 for metric in (*METRICS, "one_shot_episode_std")}
  out["gap"] = {f"train_minus_{name}": {metric: mean_std(
      [f["train"][metric] - f[name][metric] for f in per_model]) for metric in METRICS}
      for name in ("test_seen", "test_unseen")}
  return out


# ---- one variant: all seeds stacked under vmap -------------------------------------------------

def mlp_encoder(widths, embedding_dim: int, activation: str) -> MLP:
  return MLP(widths=tuple(widths), num_outputs=embedding_dim, activation=activation)


def mlp_param_count(in_dim: int, widths, out_dim: int) -> int:
  dims = [in_dim, *widths, out_dim]
  return sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))


def matched_widths(in_dim: int, widths, out_dim: int, target: int) -> tuple[int, ...]:
  """`widths` scaled by one factor so that an MLP of them has the parameter count closest to
  `target` (for two unshared encoders with one shared encoder's total)."""
  candidates = {tuple(max(1, round(w * f / 1000)) for w in widths) for f in range(1, 1001)}
  return min(candidates, key=lambda ws: abs(mlp_param_count(in_dim, ws, out_dim) - target))


def variant_model(config: SiameseConfig, variant: str, in_dim: int) -> PairEncoder:
  widths = config.widths
  if variant == "unshared_equal_params":
    target = mlp_param_count(in_dim, widths, config.embedding_dim) // 2
    widths = matched_widths(in_dim, widths, config.embedding_dim, target)
  encoder = mlp_encoder(widths, config.embedding_dim, config.activation)
  return PairEncoder(encoder, shared=variant == "shared")


def train_variant(config: SiameseConfig, dataset: Dataset, eval_sets: dict, variant: str,
                  workdir: str) -> dict:
  """Trains every seed of `variant` together: one `fit` of the stacked seeds on pair (or
  triplet) batches into workdir/fits/VARIANT (a rerun resumes from its checkpoint); returns its
  figures, training curves and parameter count."""
  start = time.perf_counter()
  example = dataset.train.gather([0])["x"]
  model = variant_model(config, variant, example[0].size)
  schedule = optim.make_schedule(config.schedule, config.learning_rate, config.steps,
                                 config.warmup_steps)
  tx = optim.make_optimizer(config.optimizer, schedule)
  kind = "pairs" if config.loss == "contrastive" else "triplets"
  fit_config = FitConfig(num_steps=config.steps, batch_size=config.batch_size,
                         eval_every=config.steps, log_every=config.log_every,
                         checkpoint_every=config.steps)
  states, results = fit(
      make_seeds_init(model, tx, (example, example))(list(config.seeds)),
      train_step_fn(pair_loss(model, config.loss, config.margin)), None, dataset, fit_config,
      os.path.join(workdir, "fits", variant), seeds=list(config.seeds),
      batches=lambda seed, at: PairBatches(dataset.train, config.batch_size, seed,
                                           config.seen_classes, kind, at))
  embeddings = {branch: {name: np.asarray(embed_seeds(model, branch)(states.params,
                                                                  split.materialize()["x"]))
                         for name, split in dataset.splits().items()} for branch in ("a", "b")}
  return {"num_params": results["num_params"], "encoder_widths": list(model.encoder.widths),
          "curves": results["train_curves"], "train_seconds": time.perf_counter() - start,
          "resumed_from_step": results["resumed_from_step"],
          **score(embeddings["a"], embeddings["b"], eval_sets)}


def embed_seeds(model: PairEncoder, branch: str):
  """`embed(stacked_params, x) -> [seeds, examples, dim]` through one branch, jitted."""
  return jax.jit(jax.vmap(lambda params, x: model.apply({"params": params}, x, branch,
                                                        method="embed"), in_axes=(0, None)))


def _report_progress(variant: str, figures: dict) -> None:
  print(f"{variant}: {figures['train_seconds']:.0f} s, unseen one-shot "
        f"{100 * figures['test_unseen']['one_shot']['mean']:.1f}%, unseen verification "
        f"{100 * figures['test_unseen']['verification']['mean']:.1f}%", file=sys.stderr,
        flush=True)


# ---- command line ------------------------------------------------------------------------------

# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(variants=("shared", "unshared_equal_params"), train_per_class=20, steps=500,
            seeds=(0, 1, 2, 3, 4))

EXPERIMENT = Experiment(
    name="siamese", config=SiameseConfig, run=run, records=records, summary=summary,
    report=markdown_report, variants={"smoke": smoke_config, "tour": TOUR}, check=check_config)


if __name__ == "__main__":
  EXPERIMENT.command()
