"""The regularization experiment: strategy parsing, the data it trains on, the paper comparison
computed from the numbers, and a smoke run end to end."""

import json
import os

import numpy as np
import pytest

from experiments import regularization as reg


def test_strategies_parse_into_their_settings():
  assert reg.parse_strategy("none") == reg.Strategy(name="none")
  s = reg.parse_strategy("dropout=0.5+max_norm=3")
  assert (s.dropout_rate, s.max_norm, s.dropout_kind, s.kinds) == (
      0.5, 3.0, "bernoulli", frozenset({"dropout", "max_norm"}))
  g = reg.parse_strategy("gaussian=0.4")
  assert (g.dropout_kind, g.dropout_rate, g.kinds) == ("gaussian", 0.4, frozenset({"gaussian"}))
  assert reg.parse_strategy("l2=1e-4").l2_weight == 1e-4
  assert reg.parse_strategy("dropconnect=0.5").kinds == frozenset({"dropconnect"})
  for bad, message in [("dropot=0.5", "bad strategy component"), ("l2", "kind=value"),
                       ("l2=big", "not a number"), ("dropout=1.5", r"rate must be in \[0, 1\)"),
                       ("dropout=0.5+gaussian=0.2", "dropout_rate twice"),
                       ("max_norm=-1", "must be >= 0")]:
    with pytest.raises(ValueError, match=message):
      reg.parse_strategy(bad)


def test_paper_roles_match_the_srivastava_rows():
  roles = {text: reg.paper_role(reg.parse_strategy(text)) for text in
           ["none", "l2=1e-4", "max_norm=3", "dropout=0.5", "dropout=0.2", "dropout=0.5+max_norm=3",
            "dropconnect=0.5", "gaussian=0.5"]}
  assert roles == {"none": "standard (none)", "l2=1e-4": "L2", "max_norm=3": "max-norm",
                   "dropout=0.5": "dropout (+L2)", "dropout=0.2": "dropout (+L2)",
                   "dropout=0.5+max_norm=3": "dropout + max-norm", "dropconnect=0.5": None,
                   "gaussian=0.5": None}


def _summary(test_errors: dict[str, float], val: float = 0.9) -> dict:
  return {name: {"test": {"mean": 1 - error / 100, "std": 0.0}, "val": {"mean": val, "std": 0.0}}
          for name, error in test_errors.items()}


def test_paper_comparison_counts_pairs_from_the_numbers():
  names = ["none", "l2=1e-4", "max_norm=3", "dropout=0.5", "dropout=0.5+max_norm=3"]
  strategies = [reg.parse_strategy(n) for n in names]
  same = reg.compare_with_paper(_summary(dict(zip(names, [9.0, 9.5, 8.0, 7.0, 6.0]))), strategies)
  assert (same["pairs"], same["pairs_agreeing"]) == (10, 10)
  assert same["kendall_tau"] == pytest.approx(1.0)
  assert same["ours_order"] == same["paper_order"]
  # The reverse ordering: no pair agrees.
  reverse = reg.compare_with_paper(_summary(dict(zip(names, [6.0, 5.0, 7.0, 8.0, 9.0]))),
                                   strategies)
  assert reverse["pairs_agreeing"] == 0 and reverse["kendall_tau"] == pytest.approx(-1.0)
  assert reverse["ours_order"] == reverse["paper_order"][::-1]


def test_where_several_strategies_stand_for_one_paper_row_validation_picks():
  names = ["none", "dropout=0.2", "dropout=0.5"]
  summary = _summary(dict(zip(names, [9.0, 8.0, 5.0])))
  summary["dropout=0.2"]["val"]["mean"] = 0.95  # best on validation, though worse on test
  paper = reg.compare_with_paper(summary, [reg.parse_strategy(n) for n in names])
  assert paper["rows"]["dropout (+L2)"] == {"strategy": "dropout=0.2", "paper": 1.25,
                                            "ours": pytest.approx(8.0)}
  assert paper["pairs"] == 1 and paper["pairs_agreeing"] == 1


def test_tasks_hold_out_validation_then_take_a_stratified_training_subset():
  dataset = reg.task_dataset("mnist1d:500", 0.1)
  assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (500, 400, 1000)
  counts = np.bincount(dataset.train.labels)  # stratified: each class in its share of the pool
  assert len(counts) == 10 and counts.max() - counts.min() <= 2
  with pytest.raises(ValueError, match="asks for 3700 training examples.*3600"):
    reg.task_dataset("mnist1d:3700", 0.1)
  with pytest.raises(ValueError, match="dataset:train_size"):
    reg.parse_task("mnist1d")


def test_smoke_run_writes_results_tables_and_learning_curves(tmp_path):
  config = reg.smoke_config()
  results = reg.EXPERIMENT.execute(config, str(tmp_path))
  saved = json.load(open(tmp_path / "results.json"))
  task = saved["tasks"][config.tasks[0]]
  assert sorted(task["runs"]) == sorted(config.strategies)
  assert list(results["tasks"][config.tasks[0]]["summary"]) == list(config.strategies)  # in order
  for run in task["runs"].values():
    final = run["final"]
    assert len(final["test"]) == config.num_seeds and run["steps"] == [20, 40]
    np.testing.assert_allclose(final["gap_test"], np.subtract(final["train"], final["test"]))
    assert set(run["max_unit_norm"]) == {f"['Dense_{i}']['kernel']" for i in range(3)}
    assert len(run["max_unit_norm"]["['Dense_0']['kernel']"]) == config.num_seeds
  bounded = task["runs"]["dropout=0.5+max_norm=0.5"]["max_unit_norm"]
  assert max(max(v) for v in bounded.values()) <= 0.5 + 1e-5  # binds: init norms are ~1
  summary = task["summary"]
  assert "gap_change" not in summary["none"]
  change = summary["dropconnect=0.5"]["gap_change"]
  diffs = np.subtract(task["runs"]["dropconnect=0.5"]["final"]["gap_test"],
                      task["runs"]["none"]["final"]["gap_test"])
  assert change["mean"] == pytest.approx(diffs.mean())
  report = (tmp_path / "results.md").read_text()
  assert "| dropconnect=0.5 |" in report and "pairs ordered alike" in report
  assert sorted(os.path.basename(p) for p in results["plots"]) == [
      "gap_mnist1d_200.png", "test_accuracy_mnist1d_200.png"]
  for path in results["plots"]:
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
