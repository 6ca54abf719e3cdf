"""Training throughput of dl_jax against PyTorch (eager and torch.compile) on this machine.

    python -m experiments.benchmark                  # every case below: 2.5 min on 2 quiet cores
    python -m experiments.benchmark --smoke          # seconds
    pip install -e '.[bench]'                        # adds the pinned CPU build of PyTorch

Each case trains the same model (same layers, parameter count, batch size, data shapes and
optimizer: Adam, lr 1e-3) on batches of real data held in memory, so the figure is the training
step itself; the input pipeline is measured elsewhere. Figures per framework: the first step
(compilation included), training steps/s and examples/s (the median of `windows` timed windows
after `warmup_steps`), and FLOP utilisation: the FLOPs of one training step (XLA's cost analysis
of the compiled dl_jax step: forward, backward and Adam) per second, over this machine's fp32
matmul peak measured here (the best of jitted JAX and numpy).
Time to a target test accuracy, for the cases that name one: each framework trains from its own
initialization (same seed) on the same batches in the same seeded order (dl_jax's BatchIterator)
until the test accuracy, checked every `target_eval_every` steps, reaches the case's target.
Seconds count training only (compilation included, evaluation excluded).
Without PyTorch installed the torch columns say so and the jax figures are still measured.
The load average before and after the run is recorded: other work on the machine slows PyTorch's
OpenMP threads far more than XLA's, so only a quiet run compares the frameworks fairly.
"""

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from dl_jax import cli
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.data import BatchIterator, load_dataset
from dl_jax.environment import describe_cpu, machine_record
from dl_jax.models import make_model
from dl_jax.settings import at_least, each, one_of, positive_finite, setting
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
  target_accuracy: float | None = None  # test accuracy for the time-to-target race


# Test accuracies each model reaches within a few hundred steps (Adam 1e-3) in either framework.
TARGETS = {"cnn_flax_mnist": 0.95, "mlp": 0.93, "cnn_mnist1d": 0.50, "gru_mnist1d": 0.40}
MLP_512 = (("widths", (512, 512)), ("activation", "relu"), ("dropout_rate", 0.0),
           ("residual", False))
# The same CNN as plain Flax code would write it (nn.Conv and nn.avg_pool): what our tuning gains.
PLAIN_FLAX_CNN = (("channels", (32, 64)), ("kernel_sizes", (3, 3)), ("pool", "avg_window"),
                  ("widths", (256,)), ("conv", "xla"))
CASES = {
    "cnn_flax_mnist@128": Case("cnn_flax_mnist", (), "mnist", 128, "flax_mnist_cnn",
                               target_accuracy=TARGETS["cnn_flax_mnist"]),
    "cnn_flax_mnist_plain@128": Case("cnn", PLAIN_FLAX_CNN, "mnist", 128, "flax_mnist_cnn"),
    "mlp_512x2@128": Case("mlp", MLP_512, "mnist", 128, "mlp",
                          ((512, 512), 784), target_accuracy=TARGETS["mlp"]),
    "mlp_512x2@1024": Case("mlp", MLP_512, "mnist", 1024, "mlp",
                           ((512, 512), 784)),
    "cnn_mnist1d@100": Case("cnn_mnist1d", (), "mnist1d", 100, "mnist1d_cnn",
                            target_accuracy=TARGETS["cnn_mnist1d"]),
    "gru_mnist1d@100": Case("gru_mnist1d", (), "mnist1d", 100, "mnist1d_gru",
                            target_accuracy=TARGETS["gru_mnist1d"]),
}


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  cases: tuple[str, ...] = setting(tuple(CASES), f"Cases to time, comma separated, from "
                                   f"{list(CASES)}.", check=each(one_of(tuple(CASES))))
  frameworks: tuple[str, ...] = setting(FRAMEWORKS, f"Frameworks to time, comma separated, from "
                                        f"{list(FRAMEWORKS)}.", check=each(one_of(FRAMEWORKS)))
  warmup_steps: int = setting(20, "Untimed training steps before the timed windows.")
  windows: int = setting(5, "Timed windows per case and framework; steps/s is their median.",
                         check=at_least(1))
  steps_per_window: int = setting(50, "Training steps per timed window.")
  num_batches: int = setting(8, "Distinct batches, resident in memory, cycled through while "
                             "timing.", check=at_least(1))
  learning_rate: float = setting(1e-3, "Adam learning rate, the same in every framework.")
  peak_matmul_size: int = setting(2048, "Side of the square fp32 matmul that measures this "
                                  "machine's peak FLOP/s.")
  seed: int = setting(0, "Seed of the batches, their order and every framework's initialization.")
  target_max_steps: int = setting(2000, "Training steps after which the time-to-target race gives "
                                  "up.")
  target_eval_every: int = setting(25, "Training steps between test-accuracy checks in the "
                                   "time-to-target race.")
  target_scale: float = setting(1.0, "Factor on every case's target accuracy (smoke: an easier "
                                "target).", check=positive_finite)
  races: bool = setting(True, "Run the time-to-target race after the throughput (first round "
                        "only).")
  rounds: int = setting(1, "Passes over every case and framework, the framework order reversed "
                        "every other pass.")
  torch_python: str = setting("", "Python interpreter with torch (e.g. of a Python 3.11 venv) "
                              "that times the torch frameworks; empty: this one.")


def smoke_config() -> BenchmarkConfig:
  return BenchmarkConfig(cases=("mlp_512x2@128", "cnn_mnist1d@100"), frameworks=("jax",),
                         warmup_steps=2, windows=2, steps_per_window=3, num_batches=2,
                         peak_matmul_size=256, target_max_steps=30, target_eval_every=10,
                         target_scale=0.3)


def run(config: BenchmarkConfig, workdir: str) -> dict:
  """Times every case under every framework; writes results.json and results.md."""
  _check(config)
  write_config(workdir, dataclasses.asdict(config))
  load_before = os.getloadavg()[0]
  peak = measure_matmul_peak(config.peak_matmul_size)
  results = {"config": dataclasses.asdict(config), "machine": machine_description(),
             "matmul_peak_gflops": peak / 1e9, "torch": _torch_version(), "cases": {}}
  for name in config.cases:
    case = CASES[name]
    batches = case_batches(case, config)
    model = make_model(case.model, 10, **dict(case.options))
    flops = train_step_flops(model, batches[0], config.learning_rate)
    rounds = [{framework: _measure(framework, name, model, batches, config, flops, peak,
                                   race=config.races and r == 0)
               for framework in _round_order(config.frameworks, r)}
              for r in range(config.rounds)]
    figures = {"train_flops_per_step": flops, "frameworks": {
        framework: _across_rounds([one[framework] for one in rounds])
        for framework in config.frameworks}}
    figures["num_params"] = count_params(
        create_train_state(model, optax.sgd(0.0), batches[0]["x"], 0).params)
    results["cases"][name] = figures
    print(f"{name}: " + ", ".join(_summary(fw, r) for fw, r in figures["frameworks"].items()),
          flush=True)
  results["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
  write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown_table(results) + "\n")
  return results


def _round_order(frameworks: tuple[str, ...], round_index: int) -> tuple[str, ...]:
  """Frameworks in the given order on even rounds, reversed on odd ones: neither side is always
  timed first (a machine's speed drifts over minutes)."""
  return frameworks if round_index % 2 == 0 else frameworks[::-1]


def _across_rounds(rounds: list[dict]) -> dict:
  """One framework's figures over rounds: the first round's, with steps/s (and what follows from
  it) the median of every round's, and each round's rate kept."""
  figures = dict(rounds[0])
  if "skipped" in figures or len(rounds) == 1:
    return figures
  rates = [r["steps_per_second"] for r in rounds]
  scale = statistics.median(rates) / figures["steps_per_second"]
  figures.update(steps_per_second=statistics.median(rates), round_rates=rates,
                 examples_per_second=figures["examples_per_second"] * scale,
                 flop_utilisation=figures["flop_utilisation"] * scale)
  return figures


def _measure(framework: str, name: str, model, batches: list[dict], config: BenchmarkConfig,
             flops: float, peak: float, race: bool) -> dict:
  """Throughput on resident batches, then (where the case has a target and `race`) the
  time-to-target race, each from a fresh initialization; torch in `config.torch_python` when set."""
  if framework != "jax" and config.torch_python:
    return _measure_in(config.torch_python, framework, name, config, race, flops, peak)
  case = CASES[name]
  trainer = _trainer(framework, case, model, batches[0]["x"], config)
  if trainer is None:
    return {"skipped": "PyTorch is not installed here: pip install torch==2.13.0 (the CPU build "
                       "on Python 3.11 here; see the README), or pass --torch_python"}
  prepared = [trainer.prepare(b) for b in batches]
  figures = time_steps(lambda i: trainer.train(prepared[i % len(prepared)]), case.batch_size,
                       config, flops, peak)
  if race and case.target_accuracy is not None:
    figures["to_target"] = time_to_target(
        _trainer(framework, case, model, batches[0]["x"], config), case, config)
  return figures


def _measure_in(python: str, framework: str, name: str, config: BenchmarkConfig, race: bool,
                flops: float, peak: float) -> dict:
  """`_measure` run by another interpreter (`python -m experiments.benchmark` on one case and one
  framework), with FLOP utilisation from this process's FLOP count and peak."""
  child = dataclasses.replace(config, cases=(name,), frameworks=(framework,), rounds=1,
                              torch_python="", peak_matmul_size=64, races=race)
  with tempfile.TemporaryDirectory() as workdir:
    command = [python, "-m", "experiments.benchmark", f"--workdir={workdir}",
               *(f"--{key}={_flag_value(value)}" for key, value in dataclasses.asdict(child).items()
                 if key != "torch_python")]
    done = subprocess.run(command, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if done.returncode != 0:
      last = (done.stderr.strip().splitlines() or ["no output"])[-1]
      return {"skipped": f"{python} failed ({last})"}
    with open(os.path.join(workdir, "results.json")) as f:
      child_results = json.load(f)
  figures = child_results["cases"][name]["frameworks"][framework]
  if "skipped" in figures:
    return {"skipped": f"{python}: {figures['skipped']}"}
  figures["flop_utilisation"] = figures.get("steps_per_second", 0.0) * flops / peak
  figures["interpreter"] = f"{python} (Python {child_results['machine']['python']}, " \
                           f"torch {child_results['torch']})"
  return figures


def _flag_value(value) -> str:
  return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _summary(framework: str, figures: dict) -> str:
  if "skipped" in figures:
    return f"{framework} skipped"
  race = figures.get("to_target")
  reached = "" if race is None else f" ({_race_text(race)})"
  return f"{framework} {figures['steps_per_second']:.1f} steps/s{reached}"


def _race_text(race: dict) -> str:
  if race["reached"]:
    return f"{100 * race['target']:.0f}% in {race['seconds']:.1f} s / {race['steps']} steps"
  return f"{100 * race['target']:.0f}% not reached in {race['steps']} steps"


def _check(config: BenchmarkConfig) -> None:
  for name, known in (("cases", CASES), ("frameworks", FRAMEWORKS)):
    unknown = sorted(set(getattr(config, name)) - set(known))
    if unknown:
      raise ValueError(f"unknown {name} {unknown}; choose from {list(known)}")
  if config.windows < 1 or config.steps_per_window < 1 or config.rounds < 1:
    raise ValueError("windows, steps_per_window and rounds must be at least 1")
  if config.torch_python and not (os.path.isfile(config.torch_python)
                                  and os.access(config.torch_python, os.X_OK)):
    raise ValueError(f"--torch_python {config.torch_python!r} is not an executable file; give "
                     "the python of a venv with torch (e.g. .venv-3.11/bin/python)")


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


def time_to_target(trainer: "Trainer", case: Case, config: BenchmarkConfig) -> dict:
  """Train on the seeded batch order until test accuracy reaches the case's target (scaled by
  `target_scale`), evaluating every `target_eval_every` steps; seconds exclude evaluation."""
  data = load_dataset(case.dataset)
  test = data.test.gather(np.arange(len(data.test)))
  target = case.target_accuracy * config.target_scale
  batches = BatchIterator(data.train, case.batch_size, config.seed)
  seconds, accuracy, steps = 0.0, 0.0, 0
  while steps < config.target_max_steps and accuracy < target:
    start = time.perf_counter()
    for _ in range(config.target_eval_every):
      out = trainer.train(trainer.prepare(next(batches)))
    out.block()
    seconds += time.perf_counter() - start
    steps += config.target_eval_every
    accuracy = trainer.accuracy(test)
  return {"target": target, "reached": accuracy >= target, "steps": steps, "seconds": seconds,
          "test_accuracy": accuracy}


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


@dataclasses.dataclass(frozen=True)
class Trainer:
  """One framework training one model: `prepare` moves a numpy batch to the framework, `train`
  takes one step on it (returning a Blocking), `accuracy` is the model's on a numpy split."""
  prepare: Callable[[dict], object]
  train: Callable[[object], Blocking]
  accuracy: Callable[[dict], float]


def _trainer(framework: str, case: Case, model, example_x: np.ndarray,
             config: BenchmarkConfig) -> Trainer | None:
  if framework == "jax":
    return _jax_trainer(model, example_x, config)
  return _torch_trainer(case, compiled=framework == "torch_compile", config=config)


def _jax_trainer(model, example_x: np.ndarray, config: BenchmarkConfig) -> Trainer:
  """dl_jax's jitted, donated train step on device-resident batches."""
  holder = {"state": create_train_state(model, optax.adam(config.learning_rate), example_x,
                                        config.seed)}
  train_step = make_train_step(classification_loss(model))
  predict = jax.jit(lambda state, x: jnp.argmax(
      model.apply({"params": state.params, **state.model_state}, x, train=False), -1))

  def train(batch) -> Blocking:
    holder["state"], metrics = train_step(holder["state"], batch)
    return Blocking(lambda: jax.block_until_ready(metrics["loss"]))

  def accuracy(split: dict) -> float:
    return float(np.mean(np.asarray(predict(holder["state"], split["x"])) == split["y"]))

  return Trainer(jax.device_put, train, accuracy)


def _torch_trainer(case: Case, compiled: bool, config: BenchmarkConfig) -> Trainer | None:
  """The same model in PyTorch, eager or torch.compile'd; None when torch is not installed."""
  try:
    import torch

    from experiments import torch_reference
  except ImportError:
    return None
  torch.manual_seed(config.seed)
  model = getattr(torch_reference, case.torch_model)(*case.torch_args)
  train_step = torch_reference.make_train_step(model, config.learning_rate, compiled)

  def prepare(batch: dict):
    return torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"]).long()

  def train(batch) -> Blocking:
    loss = train_step(*batch)
    return Blocking(loss.item)  # CPU ops run synchronously; .item() marks the step's end

  def accuracy(split: dict) -> float:
    with torch.no_grad():
      predictions = model(torch.from_numpy(split["x"])).argmax(-1).numpy()
    return float(np.mean(predictions == split["y"]))

  return Trainer(prepare, train, accuracy)


def _torch_version() -> str | None:
  try:
    import torch
  except ImportError:
    return None
  return f"{torch.__version__} ({torch.get_num_threads()} threads)"


def machine_description() -> dict:
  return {**machine_record(), "python": platform.python_version(), "jax": jax.__version__,
          "device": str(jax.devices()[0])}


def markdown_table(results: dict) -> str:
  """steps/s, examples/s, first step and FLOP utilisation per case and framework; jax / others."""
  load = results["load_average"]
  machine, torch = results["machine"], results["torch"] or "not installed"
  children = {r["interpreter"] for case in results["cases"].values()
              for r in case["frameworks"].values() if "interpreter" in r}
  rows = [f"{describe_cpu(machine)}; "
          f"fp32 matmul peak measured: {results['matmul_peak_gflops']:.0f} GFLOP/s; "
          f"jax {machine['jax']} on Python {machine.get('python', '?')}; "
          f"torch: {'; '.join(sorted(children)) or torch}; "
          f"{results['config'].get('rounds', 1)} interleaved round(s), median steps/s; "
          f"load average {load['before']:.1f} before, {load['after']:.1f} after", "",
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
  return "\n".join(rows + _race_rows(results))


def _race_rows(results: dict) -> list[str]:
  """Time to the target test accuracy per case and framework, where the case has a target."""
  rows = ["", "| case | target test acc. | framework | seconds | steps | test acc. | jax / this |",
          "|---|---|---|---|---|---|---|"]
  for name, case in results["cases"].items():
    races = {fw: r["to_target"] for fw, r in case["frameworks"].items() if "to_target" in r}
    jax_race = races.get("jax")
    for framework, race in races.items():
      ratio = (f"{race['seconds'] / jax_race['seconds']:.2f}x"
               if jax_race and jax_race["reached"] and race["reached"] else "-")
      seconds = (f"{race['seconds']:.1f}" if race["reached"]
                 else f"not reached ({race['seconds']:.1f})")
      rows.append(f"| {name} | {100 * race['target']:.0f}% | {framework} | {seconds} "
                  f"| {race['steps']} | {100 * race['test_accuracy']:.1f}% | {ratio} |")
  return rows if len(rows) > 3 else []


def define_flags() -> None:
  define_experiment_flags(BenchmarkConfig, "runs/benchmark")


def main(argv):
  del argv
  quiet_library_logs()
  results = run(experiment_config(BenchmarkConfig, smoke_config), flags.FLAGS.workdir)
  print(markdown_table(results))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
