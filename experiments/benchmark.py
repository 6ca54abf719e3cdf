"""Training throughput of dl_jax against PyTorch (eager and torch.compile) on this machine.

    python -m experiments.benchmark                  # every case below, ~5 min on 2 cores
    python -m experiments.benchmark --smoke          # seconds
    pip install -e '.[bench]'                        # adds the pinned CPU build of PyTorch

Each case trains the same model (same layers, parameter count, batch size, data shapes and
optimizer: Adam, lr 1e-3) on batches of real data held in memory, so the figure is the training
step itself; the input pipeline is measured elsewhere. Figures per framework: the first step
(compilation included), training steps/s and examples/s (the median of `windows` timed windows
after `warmup_steps`), and FLOP utilisation: the FLOPs of one training step (XLA's cost analysis
of the compiled dl_jax step: forward, backward and Adam) per second, over this machine's fp32
matmul peak measured here (the best of jitted JAX and numpy).
Without PyTorch installed the torch columns say so and the jax figures are still measured.
"""

import dataclasses
import os
import platform
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.data import load_dataset
from dl_jax.models import make_model
from dl_jax.train import classification_loss, count_params, create_train_state, make_train_step
from dl_jax.train.writers import quiet_library_logs, write_config, write_json

FRAMEWORKS = ("jax", "torch_eager", "torch_compile")


@dataclasses.dataclass(frozen=True)
class Case:
  """One model at one batch size on one dataset; `torch_model` names a torch_reference builder."""
  model: str
  options: tuple[tuple[str, object], ...]
  dataset: str
  batch_size: int
  torch_model: str
  torch_args: tuple = ()


MLP_512 = (("widths", (512, 512)), ("activation", "relu"), ("dropout_rate", 0.0),
           ("residual", False))
CASES = {
    "cnn_flax_mnist@128": Case("cnn_flax_mnist", (), "mnist", 128, "flax_mnist_cnn"),
    "mlp_512x2@128": Case("mlp", MLP_512, "mnist", 128, "mlp",
                          ((512, 512), 784)),
    "mlp_512x2@1024": Case("mlp", MLP_512, "mnist", 1024, "mlp",
                           ((512, 512), 784)),
    "cnn_mnist1d@100": Case("cnn_mnist1d", (), "mnist1d", 100, "mnist1d_cnn"),
    "gru_mnist1d@100": Case("gru_mnist1d", (), "mnist1d", 100, "mnist1d_gru"),
}


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  cases: tuple[str, ...] = tuple(CASES)
  frameworks: tuple[str, ...] = FRAMEWORKS
  warmup_steps: int = 20
  windows: int = 5
  steps_per_window: int = 50
  num_batches: int = 8  # distinct batches cycled through, resident in memory
  learning_rate: float = 1e-3
  peak_matmul_size: int = 2048
  seed: int = 0


def smoke_config() -> BenchmarkConfig:
  return BenchmarkConfig(cases=("mlp_512x2@128", "cnn_mnist1d@100"), frameworks=("jax",),
                         warmup_steps=2, windows=2, steps_per_window=3, num_batches=2,
                         peak_matmul_size=256)


def run(config: BenchmarkConfig, workdir: str) -> dict:
  """Times every case under every framework; writes results.json and results.md."""
  _check(config)
  write_config(workdir, dataclasses.asdict(config))
  peak = measure_matmul_peak(config.peak_matmul_size)
  results = {"config": dataclasses.asdict(config), "machine": machine_description(),
             "matmul_peak_gflops": peak / 1e9, "torch": _torch_version(), "cases": {}}
  for name in config.cases:
    case = CASES[name]
    batches = case_batches(case, config)
    model = make_model(case.model, 10, **dict(case.options))
    flops = train_step_flops(model, batches[0], config.learning_rate)
    figures = {"train_flops_per_step": flops, "frameworks": {}}
    for framework in config.frameworks:
      step = _framework_step(framework, case, model, batches, config)
      figures["frameworks"][framework] = (
          {"skipped": "PyTorch is not installed (pip install -e '.[bench]')"} if step is None
          else time_steps(step, case.batch_size, config, flops, peak))
    figures["num_params"] = count_params(
        create_train_state(model, optax.sgd(0.0), batches[0]["x"], 0).params)
    results["cases"][name] = figures
    print(f"{name}: " + ", ".join(f"{fw} {r['steps_per_second']:.1f} steps/s"
                                  for fw, r in figures["frameworks"].items() if "skipped" not in r),
          flush=True)
  write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown_table(results) + "\n")
  return results


def _check(config: BenchmarkConfig) -> None:
  for name, known in (("cases", CASES), ("frameworks", FRAMEWORKS)):
    unknown = sorted(set(getattr(config, name)) - set(known))
    if unknown:
      raise ValueError(f"unknown {name} {unknown}; choose from {list(known)}")
  if config.windows < 1 or config.steps_per_window < 1:
    raise ValueError("windows and steps_per_window must be at least 1")


def case_batches(case: Case, config: BenchmarkConfig) -> list[dict[str, np.ndarray]]:
  """`num_batches` real training batches of the case's size, in memory (wrapping around the
  training split when they need more examples than it has)."""
  train = load_dataset(case.dataset).train
  order = np.random.default_rng(config.seed).permutation(len(train))
  size = case.batch_size
  return [train.gather(np.sort(order[np.arange(i * size, (i + 1) * size) % len(train)]))
          for i in range(config.num_batches)]


def measure_matmul_peak(size: int, repeats: int = 10) -> float:
  """FLOP/s of the fastest of `repeats` fp32 [size, size] matmuls, jitted JAX or numpy."""
  a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
  device_a, matmul = jax.device_put(a), jax.jit(jnp.dot)
  engines = [lambda: matmul(device_a, device_a).block_until_ready(), lambda: a @ a]
  best = min(_seconds(run) for run in engines for _ in range(repeats + 1))  # +1: a warm-up
  return 2 * size ** 3 / best


def train_step_flops(model, batch: dict, learning_rate: float) -> float:
  """FLOPs of one dl_jax training step on `batch`, from XLA's cost analysis of the compiled step."""
  state = create_train_state(model, optax.adam(learning_rate), batch["x"], 0)
  step = make_train_step(classification_loss(model))
  analysis = step.lower(state, batch).compile().cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis["flops"])


def time_steps(step: Callable[[int], "Blocking"], batch_size: int, config: BenchmarkConfig,
               flops_per_step: float, peak: float) -> dict:
  """First step (compilation included), then the median of timed windows after warm-up.
  `step(i)` trains on batch i (cycling) and returns an object whose `block()` waits for it."""
  first = _seconds(lambda: step(0).block())
  for i in range(config.warmup_steps):
    step(i)
  step(0).block()
  rates = []
  for _ in range(config.windows):
    start = time.perf_counter()
    for i in range(config.steps_per_window):
      out = step(i)
    out.block()
    rates.append(config.steps_per_window / (time.perf_counter() - start))
  rate = statistics.median(rates)
  return {"first_step_seconds": first, "steps_per_second": rate,
          "examples_per_second": rate * batch_size, "window_rates": rates,
          "flop_utilisation": rate * flops_per_step / peak}


def _seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


class Blocking:
  """What a timed step returns: `block()` waits until the step's result exists."""

  def __init__(self, wait):
    self.block = wait


def _framework_step(framework: str, case: Case, model, batches: list[dict],
                    config: BenchmarkConfig):
  if framework == "jax":
    return _jax_step(model, batches, config)
  return _torch_step(case, batches, compiled=framework == "torch_compile", config=config)


def _jax_step(model, batches: list[dict], config: BenchmarkConfig):
  """dl_jax's jitted, donated train step on device-resident batches."""
  state = create_train_state(model, optax.adam(config.learning_rate), batches[0]["x"],
                             config.seed)
  train_step = make_train_step(classification_loss(model))
  device_batches = [jax.device_put(b) for b in batches]
  holder = {"state": state}

  def step(i: int) -> Blocking:
    holder["state"], metrics = train_step(holder["state"], device_batches[i % len(batches)])
    return Blocking(lambda: jax.block_until_ready(metrics["loss"]))

  return step


def _torch_step(case: Case, batches: list[dict], compiled: bool, config: BenchmarkConfig):
  """The same model in PyTorch, eager or torch.compile'd; None when torch is not installed."""
  try:
    import torch

    from experiments import torch_reference
  except ImportError:
    return None
  torch.manual_seed(config.seed)
  model = getattr(torch_reference, case.torch_model)(*case.torch_args)
  train_step = torch_reference.make_train_step(model, config.learning_rate, compiled)
  tensors = [(torch.from_numpy(b["x"]), torch.from_numpy(b["y"]).long()) for b in batches]

  def step(i: int) -> Blocking:
    loss = train_step(*tensors[i % len(tensors)])
    return Blocking(loss.item)  # CPU ops run synchronously; .item() marks the step's end

  return step


def _torch_version() -> str | None:
  try:
    import torch
  except ImportError:
    return None
  return f"{torch.__version__} ({torch.get_num_threads()} threads)"


def machine_description() -> dict:
  return {"platform": platform.platform(), "processor": platform.processor(),
          "cpu_count": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0])}


def markdown_table(results: dict) -> str:
  """steps/s, examples/s, first step and FLOP utilisation per case and framework; jax / others."""
  rows = [f"fp32 matmul peak measured: {results['matmul_peak_gflops']:.0f} GFLOP/s; "
          f"torch: {results['torch'] or 'not installed'}", "",
          "| case | params | framework | steps/s | examples/s | first step (s) | FLOP util. "
          "| jax / this |",
          "|---|---|---|---|---|---|---|---|"]
  for name, case in results["cases"].items():
    jax_rate = case["frameworks"].get("jax", {}).get("steps_per_second")
    for framework, r in case["frameworks"].items():
      if "skipped" in r:
        rows.append(f"| {name} | {case['num_params']:,} | {framework} | skipped: {r['skipped']} "
                    "| | | | |")
        continue
      ratio = f"{jax_rate / r['steps_per_second']:.2f}x" if jax_rate else "-"
      rows.append(f"| {name} | {case['num_params']:,} | {framework} | {r['steps_per_second']:.1f} "
                  f"| {r['examples_per_second']:,.0f} | {r['first_step_seconds']:.2f} "
                  f"| {100 * r['flop_utilisation']:.1f}% | {ratio} |")
  return "\n".join(rows)


def define_flags() -> None:
  define_experiment_flags(BenchmarkConfig, "runs/benchmark", help={
      "cases": f"Cases to time: {list(CASES)}.", "frameworks": f"Any of {list(FRAMEWORKS)}."})


def main(argv):
  del argv
  quiet_library_logs()
  results = run(experiment_config(BenchmarkConfig, smoke_config), flags.FLAGS.workdir)
  print(markdown_table(results))


if __name__ == "__main__":
  define_flags()
  app.run(main)
