"""Train / validation / test figures and the train-test gap of every model the tour trained.

A query over the tour's records: every record of a split of a generalization metric (accuracy, or
the experiment's own score where accuracy is not what it measures; accuracy under attack where it
was measured on the training split too), one row per experiment, dataset, arm and metric, each
cell mean ± std over seeds, the gap paired by seed.
"""

import numpy as np

from dl_jax.lab.records import Records
from dl_jax.stats import mean_std, percent

METRICS = ("accuracy", "one_shot", "exact_match", "real_called_real")
SPLITS = ("train", "val", "test")
HEADER = ["experiment", "dataset", "model", "metric", "runs", "train", "val", "test",
          "train − test"]


def rows(records: Records) -> list[list]:
  """One row per (experiment, dataset, arm, metric) measured on any of the splits."""
  selection = records.where(metric=lambda m: m in METRICS or m.startswith("accuracy under"),
                            split=lambda s: s in SPLITS)
  keys = dict.fromkeys((r.experiment, r.dataset, r.arm, r.metric) for r in selection)
  table = []
  for experiment, dataset, arm, metric in keys:
    row = selection.where(experiment=experiment, dataset=dataset, arm=arm, metric=metric)
    per_split = {s: [r.value for r in row.where(split=s)] for s in SPLITS}
    if metric not in METRICS and not per_split["train"]:
      continue  # a test-only figure under attack: the experiment's own tables show it
    cells = [percent(mean_std(v)) if v else "—" for v in per_split.values()]
    table.append([experiment, dataset, arm, metric, max(map(len, per_split.values())), *cells,
                  _gap(row)])
  return table


def _gap(row: Records) -> str:
  """mean ± std over seeds of train - test, paired by seed ('—' without both splits)."""
  train = {r.seed: r.value for r in row.where(split="train")}
  gaps = [train[r.seed] - r.value for r in row.where(split="test") if r.seed in train]
  return percent(mean_std(np.asarray(gaps)), " pts") if gaps else "—"
