import dataclasses
import importlib.util
import json
import sys

import numpy as np
import pytest

from dl_jax.models import MLP
from experiments import benchmark


def test_train_step_flops_cover_the_forward_and_weight_gradient_matmuls():
  batch = {"x": np.ones((4, 5), np.float32), "y": np.zeros(4, np.int32)}
  flops = benchmark.train_step_flops(MLP(widths=(), num_outputs=3), batch, 1e-3)
  matmuls = 2 * (2 * 4 * 5 * 3)  # x W forward and x^T dL/dz for the kernel's gradient
  assert matmuls <= flops <= matmuls + 50 * (5 * 3 + 3)  # plus a few element-wise ops per param


def test_smoke_benchmark_times_and_races_every_case_and_writes_tables(tmp_path):
  config = benchmark.smoke_config()
  results = benchmark.run(config, str(tmp_path))
  assert set(results["cases"]) == set(config.cases)
  for case in results["cases"].values():
    jax_figures = case["frameworks"]["jax"]
    assert len(jax_figures["window_rates"]) == config.windows
    assert jax_figures["steps_per_second"] > 0
    expected_utilisation = (jax_figures["steps_per_second"] * case["train_flops_per_step"]
                    / (results["matmul_peak_gflops"] * 1e9))
    assert jax_figures["flop_utilisation"] == pytest.approx(expected_utilisation)
  assert json.load(open(tmp_path / "results.json"))["cases"].keys() == results["cases"].keys()
  assert "| mlp_512x2@128 | 669,706 | jax |" in (tmp_path / "results.md").read_text()
  race = results["cases"]["mlp_512x2@128"]["frameworks"]["jax"]["to_target"]
  assert race["target"] == pytest.approx(benchmark.TARGETS["mlp"] * config.target_scale)
  assert race["reached"] and race["test_accuracy"] >= race["target"] and race["seconds"] > 0
  assert race["steps"] % config.target_eval_every == 0
  assert race["steps"] <= config.target_max_steps
  assert "| mlp_512x2@128 | 28% | jax |" in (tmp_path / "results.md").read_text()


def test_race_gives_up_after_max_steps_and_says_so():
  config = dataclasses.replace(benchmark.smoke_config(), target_scale=2.1)  # 105%: unreachable
  case = benchmark.CASES["cnn_mnist1d@100"]
  model = benchmark.make_model(case.model, 10)
  trainer = benchmark._trainer("jax", case, model, np.zeros((1, 40), np.float32), config)
  race = benchmark.time_to_target(trainer, case, config)
  assert not race["reached"] and race["steps"] == config.target_max_steps


def test_unknown_case_is_refused_before_any_timing(tmp_path):
  config = dataclasses.replace(benchmark.smoke_config(), cases=("resnet@1",))
  with pytest.raises(ValueError, match=r"unknown cases \['resnet@1'\]"):
    benchmark.run(config, str(tmp_path))


def test_torch_models_have_the_dl_jax_parameter_counts(tmp_path):
  pytest.importorskip("torch")
  from experiments import torch_reference

  config = dataclasses.replace(benchmark.smoke_config(), cases=tuple(benchmark.CASES),
                               frameworks=("torch_eager",), windows=1, steps_per_window=1,
                               warmup_steps=0, num_batches=1)
  results = benchmark.run(config, str(tmp_path))
  for name, case in benchmark.CASES.items():
    model = getattr(torch_reference, case.torch_model)(*case.torch_args)
    assert torch_reference.count_params(model) == results["cases"][name]["num_params"], name
    assert results["cases"][name]["frameworks"]["torch_eager"]["steps_per_second"] > 0


def test_seeds_cost_smoke_compares_stacked_seeds_with_one(tmp_path):
  from experiments import seeds_cost

  results = seeds_cost.run(seeds_cost.smoke_config(), str(tmp_path))
  rows = results["cases"]["cnn_mnist1d@100"]
  assert rows[2]["seconds_per_step"] > 0 and len(rows[2]["window_rates"]) == 2
  assert "| cnn_mnist1d@100 |" in (tmp_path / "results.md").read_text()


def test_case_batches_wrap_around_a_small_training_split():
  config = dataclasses.replace(benchmark.smoke_config(), num_batches=50)  # 50 x 128 > 4000
  batches = benchmark.case_batches(benchmark.CASES["mlp_512x2@128"], config)
  assert len(batches) == 50 and all(len(b["y"]) == 128 for b in batches)


def test_rounds_alternate_the_order_and_report_the_median_rate(tmp_path):
  config = dataclasses.replace(benchmark.smoke_config(), cases=("mlp_512x2@128",), rounds=3,
                               races=False)
  results = benchmark.run(config, str(tmp_path))
  jax_figures = results["cases"]["mlp_512x2@128"]["frameworks"]["jax"]
  assert len(jax_figures["round_rates"]) == 3 and "to_target" not in jax_figures
  assert jax_figures["steps_per_second"] == sorted(jax_figures["round_rates"])[1]
  assert benchmark._round_order(("a", "b", "c"), 1) == ("c", "b", "a")
  assert "3 interleaved round(s)" in (tmp_path / "results.md").read_text()


def test_torch_side_runs_in_the_interpreter_given(tmp_path):
  """The child process gets the case, the framework and every timing setting as flags; its
  figures (or its reason to skip) come back under the framework's name."""
  config = dataclasses.replace(benchmark.smoke_config(), cases=("cnn_mnist1d@100",),
                               frameworks=("jax", "torch_eager"), torch_python=sys.executable)
  figures = benchmark.run(config, str(tmp_path))["cases"]["cnn_mnist1d@100"]["frameworks"]
  torch_figures = figures["torch_eager"]
  if importlib.util.find_spec("torch") is None:
    assert torch_figures["skipped"].startswith(f"{sys.executable}: PyTorch is not installed")
  else:
    assert torch_figures["steps_per_second"] > 0 and "to_target" in torch_figures
    assert torch_figures["interpreter"].startswith(sys.executable)
    assert len(torch_figures["window_rates"]) == config.windows


def test_torch_python_that_is_not_an_interpreter_is_refused(tmp_path):
  config = dataclasses.replace(benchmark.smoke_config(), torch_python=str(tmp_path / "nope"))
  with pytest.raises(ValueError, match="is not an executable file"):
    benchmark.run(config, str(tmp_path))


def test_conv_parts_times_the_three_parts_and_tabulates_them(tmp_path):
  from experiments import conv_parts

  results = conv_parts.run(conv_parts.smoke_config(), str(tmp_path))
  times = results["milliseconds"]["jax"]
  assert set(times) == set(conv_parts.PARTS) and all(t[0] > 0 for t in times.values())
  table = (tmp_path / "results.md").read_text().splitlines()
  assert table[0].startswith("| 32 -> 64 channel 3x3 conv") and "jax " in table[0]
  assert [row.split(" | ")[0] for row in table[2:5]] == [f"| {p}" for p in conv_parts.PARTS]
  assert table[-1].startswith(f"{results['machine']['cpu_count']} cores of ")


def test_plain_flax_cnn_case_computes_the_tuned_cnn_with_the_same_parameters():
  import jax

  tuned = benchmark.make_model("cnn_flax_mnist", 10)
  plain_case = benchmark.CASES["cnn_flax_mnist_plain@128"]
  plain = benchmark.make_model(plain_case.model, 10, **dict(plain_case.options))
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  params = tuned.init(jax.random.key(0), x)
  assert jax.tree.structure(plain.init(jax.random.key(0), x)) == jax.tree.structure(params)
  np.testing.assert_allclose(plain.apply(params, x), tuned.apply(params, x), rtol=1e-4, atol=1e-5)
