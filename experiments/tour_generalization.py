"""Train / validation / test accuracy and the train-test gap of every model the tour trained.

Each experiment stores its figures in its own shape; one small reader per experiment turns them
into rows of per-seed accuracies (fractions), which `rows` summarizes as mean ± std.
"""

from typing import Callable, Iterator

import numpy as np

from dl_jax.stats import mean_std, percent

Row = tuple[str, dict]  # (model or setting, {split: per-seed accuracies}); split val may be absent


def minibatch(r: dict) -> Iterator[Row]:
  for dataset, sweep in r.get("sweep", {}).items():
    for batch, run in sorted(sweep["runs"].items(), key=lambda item: int(item[0])):
      full = " (full batch)" if int(batch) == sweep["num_train"] else ""
      yield (f"{dataset}, MLP, batch {batch}{full}",
             {split: run["final"][split]["values"] for split in ("train", "val", "test")})
  trained = r.get("out_of_core", {}).get("augmented", {}).get("results")
  if trained:
    yield "mnist, MLP on the memory-mapped augmented set", {"test": [trained["test"]["accuracy"]]}


def activations(r: dict) -> Iterator[Row]:
  for run in r["runs"]:
    yield (f"{run['dataset']}, depth {run['depth']}, {run['activation']}/{run['init']}",
           run["accuracy"])


def mnist1d_table(r: dict) -> Iterator[Row]:
  for dataset, runs in r["runs"].items():
    for model, run in runs.items():
      yield (f"{dataset}, {model}",
             {split: run["curves"][split]["accuracy"][-1] for split in run["curves"]})


def sparsity(r: dict) -> Iterator[Row]:
  for setting, run in r["runs"].items():
    yield f"{setting}, dense", {s: run["trained"][s]["accuracy"] for s in ("train", "val", "test")}
    fine_tuned = run["structured"]["fine_tuned"]
    yield (f"{setting}, narrow {run['structured']['widths']}",
           {s: fine_tuned[s]["accuracy"] for s in ("train", "val", "test")})


def regularization(r: dict) -> Iterator[Row]:
  for task, results in r["tasks"].items():
    for strategy, row in results["summary"].items():
      yield f"{task}, {strategy}", {s: row[s]["values"] for s in ("train", "val", "test")}


def siamese(r: dict) -> Iterator[Row]:
  for variant, v in r["variants"].items():
    one_shot = lambda split: v[split]["one_shot"]["values"]
    yield f"{variant}, one-shot, seen classes", {
        "train": one_shot("train"), "val": one_shot("val"), "test": one_shot("test_seen")}
    yield f"{variant}, one-shot, unseen classes", {"test": one_shot("test_unseen")}


def adversarial(r: dict) -> Iterator[Row]:
  for training, run in r["runs"].items():
    yield f"{training}, clean", {s: run["clean"][s]["accuracy"] for s in ("train", "val", "test")}
    robust = {s: [seed["robust_splits"][s] for seed in run["attacked"]]
              for s in ("train", "val", "test")}
    attack = f"PGD-{min(r['config']['pgd_eval_steps'])} at eps {r['config']['train_eps']}"
    yield f"{training}, under {attack}", robust


def gan(r: dict) -> Iterator[Row]:
  classifier = r["classifier"]
  yield "judge CNN", {s: [classifier[s]["accuracy"]] for s in ("train", "val", "test")
                      if s in classifier}
  real = r["summary"]["discriminator_real_accuracy"]
  yield "discriminator, real digits called real", {s: real[s]["values"] for s in real}


def translate(r: dict) -> Iterator[Row]:
  yield "seq2seq, exact match", {s: [r[s]["exact_match"]] for s in ("train", "val", "test")
                                 if s in r}


READERS: dict[str, Callable[[dict], Iterator[Row]]] = {
    "minibatch": minibatch, "activations": activations, "mnist1d_table": mnist1d_table,
    "sparsity": sparsity, "regularization": regularization, "siamese": siamese,
    "adversarial": adversarial, "gan": gan, "translate": translate}


def rows(experiment: str, r: dict) -> list[list[str]]:
  """[experiment, model, runs, train, val, test, train - test]: 'mean ± std' over the runs."""
  table = []
  for model, splits in READERS[experiment](r):
    cell = lambda s: percent(mean_std(splits[s])) if s in splits else "—"
    gap = (percent(mean_std(np.asarray(splits["train"]) - np.asarray(splits["test"])), " pts")
           if "train" in splits and "test" in splits else "—")
    runs = len(splits.get("test", next(iter(splits.values()))))
    table.append([experiment, model, runs, cell("train"), cell("val"), cell("test"), gap])
  return table
