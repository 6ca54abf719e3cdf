"""Mini-batches, measured: a batch-size sweep, and training on data larger than the memory allowed.

    python -m experiments.minibatch                    # both parts
    python -m experiments.minibatch --parts=sweep      # or --parts=out_of_core
    python -m experiments.minibatch --smoke

Sweep: the same MLP (Adam, lr 1e-3, 3 seeds vmapped) trained with batches of 1, 8, 32, 128, 512
examples and the full training split, for the same number of epochs, on `mnist` and `mnist1d`.
Per batch size: test accuracy after each epoch and against training seconds (compilation
included), the accuracy each reaches within the same wall-clock budget (the shortest run's time),
time per step, XLA's memory for the compiled step, and gradient noise: the squared distance of
mini-batch gradients from the full-batch gradient at the initial parameters (the same for every
batch size), beside the (N - b) / (b (N - 1)) law it should follow.

Out of core: writes an augmented training set (shifted, rotated, elastically distorted copies of
the 4,000 `mnist` digits, seeded) of `out_of_core_gb` GiB to a .npy file, then, in child processes
whose data segment is capped at `memory_cap_gb` GiB (RLIMIT_DATA, `ulimit -d`: it limits the
memory a process allocates, not the file pages it maps), (1) loads the whole array, which fails,
and (2) trains on it in mini-batches read from the memory map with `experiments.train`, which
completes; its peak resident memory and the share of its time spent waiting for batches (read
ahead by a background thread, `dl_jax.data.prefetch`) are reported (experiments.run_capped sets
the cap). The same model trained for the same number of steps on the plain 4,000 digits gives
the accuracy the augmentation is compared with.

Its figures: docs/experiments/minibatch.md (generated from the last default tour).
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Iterator

import jax
import numpy as np
import optax

from dl_jax.data import load_dataset
from dl_jax.data.augment import write_augmented
from dl_jax.diagnostics.gradient_noise import expected_variance_ratio, gradient_noise
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.models import MLP
from dl_jax.plots import save_figure, subplots
from dl_jax.settings import at_least, each, one_of, positive_finite, setting
from dl_jax.train import (FitConfig, classification_loss, classification_metrics, fit,
                          make_eval_step, make_train_step)
from dl_jax.train.calls import scanned, steps_per_call, tree_bytes
from dl_jax.train.seeds import make_seeds_init, stacked_train_step, unstack_state
from dl_jax.train.writers import write_config
from dl_jax.stats import mean_std, percent

PARTS = ("sweep", "out_of_core")


@dataclasses.dataclass(frozen=True)
class MinibatchConfig:
  parts: tuple[str, ...] = setting(PARTS, f"Parts to run, comma separated, from {list(PARTS)}.",
                                   check=each(one_of(PARTS)))
  datasets: tuple[str, ...] = setting(("mnist", "mnist1d"), "Datasets of the batch-size sweep, "
                                      "comma separated.")
  batch_sizes: tuple[int, ...] = setting((1, 8, 32, 128, 512, 0), "Batch sizes of the sweep, "
                                         "comma separated; 0 is the whole training split.")
  epochs: int = setting(20, "Training epochs of the sweep, the same for every batch size.",
                        check=at_least(1))
  widths: tuple[int, ...] = setting((128, 128), "Hidden widths of the sweep's MLP, comma "
                                    "separated.")
  learning_rate: float = setting(1e-3, "Adam learning rate (sweep and out-of-core training).")
  val_fraction: float = setting(0.1, "Share of train held out (stratified) for validation in the "
                                "sweep; 0: none.")
  seeds: tuple[int, ...] = setting((0, 1, 2), "Seeds trained together in one vmapped program, "
                                   "comma separated.")
  noise_batches: int = setting(50, "Mini-batch gradients per batch size in the gradient-noise "
                               "estimate.", check=at_least(1))
  out_of_core_gb: float = setting(4.0, "Size of the augmented training set written to disk, in "
                                  "GiB.", check=positive_finite)
  out_of_core_dir: str = setting("", "Folder of the augmented set (reused when already written); "
                                 "empty: <workdir>/augmented_mnist.")
  memory_cap_gb: float = setting(2.0, "Data-segment cap (RLIMIT_DATA) of the out-of-core child "
                                 "processes, in GiB.", check=positive_finite)
  out_of_core_widths: tuple[int, ...] = setting((256, 256), "Hidden widths of the out-of-core "
                                                "MLP, comma separated.")
  out_of_core_batch_size: int = setting(256, "Examples per step of the out-of-core training.")
  out_of_core_epochs: int = setting(1, "Epochs over the augmented set in the out-of-core "
                                    "training.", check=at_least(1))


def smoke_config() -> MinibatchConfig:
  return MinibatchConfig(datasets=("mnist1d",), batch_sizes=(32, 0), epochs=2, widths=(16,),
                         seeds=(0, 1), noise_batches=4, out_of_core_gb=0.002,
                         memory_cap_gb=1.0, out_of_core_widths=(16,))


def run(config: MinibatchConfig, workdir: str) -> dict:
  _check(config)
  write_config(workdir, dataclasses.asdict(config))
  results = {"config": dataclasses.asdict(config), "device": str(jax.devices()[0])}
  if "sweep" in config.parts:
    results["sweep"] = {name: sweep(config, name, workdir) for name in config.datasets}
  if "out_of_core" in config.parts:
    results["out_of_core"] = out_of_core(config, workdir)
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec, seeds = Recorder("minibatch", variant), results["config"]["seeds"]
  for dataset, sweep in results.get("sweep", {}).items():
    for batch, run in sorted(sweep["runs"].items(), key=lambda item: int(item[0])):
      arm = "full batch" if int(batch) == sweep["num_train"] else f"batch {batch}"
      for split in ("train", "val", "test"):
        yield from rec.per_seed(seeds, run["final"][split]["values"], dataset=dataset, arm=arm,
                                split=split, metric="accuracy")
  if "out_of_core" in results:
    yield from _out_of_core_records(rec, results["out_of_core"])


def _out_of_core_records(rec: Recorder, o: dict) -> Iterator[Record]:
  dataset = "augmented mnist (memory-mapped)"
  yield rec.single(o["file_bytes"], dataset=dataset, arm="data", metric="file_bytes")
  yield rec.single(o["memory_cap_bytes"], dataset=dataset, arm="data", metric="memory_cap_bytes")
  yield rec.single(o["load_whole"]["returncode"] == 0, dataset=dataset, arm="load whole array",
                   metric="completes")
  for arm, run in (("mini-batches", o["augmented"]), ("mini-batches, plain digits", o["plain"])):
    yield rec.single(run["returncode"] == 0, dataset=dataset, arm=arm, metric="completes")
    yield rec.single(run["peak_rss_bytes"], dataset=dataset, arm=arm, metric="peak_rss_bytes")
    if run.get("results"):
      yield rec.single(run["results"]["test"]["accuracy"], dataset=dataset, arm=arm,
                       split="test", metric="accuracy")


def _check(config: MinibatchConfig) -> None:
  unknown = sorted(set(config.parts) - set(PARTS))
  if unknown:
    raise ValueError(f"unknown parts {unknown}; choose from {list(PARTS)}")
  if any(b < 0 for b in config.batch_sizes) or config.epochs < 1:
    raise ValueError("batch sizes must be >= 1 (or 0 for the full split) and epochs >= 1")


# ---- the batch-size sweep ----------------------------------------------------------------------

def sweep(config: MinibatchConfig, dataset_name: str, workdir: str) -> dict:
  """Every batch size on one dataset; the wall-clock comparison and plots."""
  dataset = load_dataset(dataset_name, config.val_fraction, val_seed=0)
  model = MLP(widths=config.widths, num_outputs=dataset.num_classes)
  n = len(dataset.train)
  runs = {str(b or n): train_batch_size(config, dataset, model, b or n,
                                        os.path.join(workdir, "fits", dataset_name, f"batch_{b or n}"))
          for b in config.batch_sizes}
  budget = min(r["train_seconds"][-1] for r in runs.values())
  for r in runs.values():
    within = [i for i, s in enumerate(r["train_seconds"]) if s <= budget]
    r["test_accuracy_within_budget"] = (mean_std(r["test_accuracy"][within[-1]]) if within
                                        else None)
  plot_sweep(dataset_name, runs, n, os.path.join(workdir, "plots", f"sweep_{dataset_name}.png"))
  return {"num_train": n, "budget_seconds": budget, "runs": runs}


def train_batch_size(config: MinibatchConfig, dataset, model, batch_size: int,
                     workdir: str) -> dict:
  """All seeds at one batch size for `epochs` epochs, evaluated after every epoch: one `fit` of
  the stacked seeds (a rerun resumes from its checkpoint in `workdir`)."""
  steps_per_epoch = len(dataset.train) // batch_size
  steps = config.epochs * steps_per_epoch
  loss_fn = classification_loss(model)
  states = make_seeds_init(model, optax.adam(config.learning_rate),
                           dataset.train.gather([0])["x"])(config.seeds)
  # at the initial parameters, the same for every batch size, so the noise figures compare
  noise = _noise(loss_fn, unstack_state(states, 0).params, dataset, batch_size,
                 config.noise_batches)
  fit_config = FitConfig(num_steps=steps, batch_size=batch_size, eval_every=steps_per_epoch,
                         log_every=steps_per_epoch, checkpoint_every=steps, test_curve=True)
  train_step = make_train_step(loss_fn)
  memory = _step_memory(train_step, states, fit_config, dataset)
  _, results = fit(states, train_step, make_eval_step(classification_metrics(model)), dataset,
                   fit_config, workdir, seeds=list(config.seeds))
  seconds = results["curves"]["train_seconds"]
  return {"batch_size": batch_size, "steps": steps,
          "epochs": list(range(1, config.epochs + 1)), "train_seconds": seconds,
          "test_accuracy": results["curves"]["test"]["accuracy"],
          "final": {split: mean_std(results[split]["accuracy"]) for split in dataset.splits()},
          "gap": mean_std(results["gap"]["train_test_accuracy"]),
          "seconds_per_step": (seconds[-1] - seconds[0]) / max(steps - steps_per_epoch, 1),
          "step_memory_bytes": memory, "gradient_noise": noise}


def _step_memory(train_step, states, fit_config: FitConfig, dataset) -> int:
  """Bytes XLA assigns to one of fit's compiled calls (arguments, outputs and temporaries)."""
  seeds = len(states.step)
  example = dataset.train.gather(np.arange(1))
  steps = steps_per_call(fit_config, fit_config.batch_size * tree_bytes(example), models=seeds)
  batches = {k: jax.ShapeDtypeStruct((steps, seeds, fit_config.batch_size, *v.shape[1:]), v.dtype)
             for k, v in example.items()}
  call = scanned(stacked_train_step(train_step))
  stats = call.lower(states, batches).compile().memory_analysis()
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def _noise(loss_fn, params, dataset, batch_size: int, num_batches: int) -> dict:
  """Gradient noise at `params` (seed 0's), and the law it should follow."""
  grad_fn = jax.jit(jax.grad(lambda p, batch: loss_fn(p, {}, batch, {})[0]))
  n = len(dataset.train)
  noise = gradient_noise(grad_fn, params, dataset.train, batch_size,
                         min(num_batches, n // batch_size))
  noise["expected_ratio"] = expected_variance_ratio(batch_size, n)
  return noise


def plot_sweep(name: str, runs: dict, n: int, path: str) -> str:
  """Test accuracy against epochs and seconds; gradient noise and step time against batch size."""
  fig, axes = subplots(1, 4, figsize=(18, 4))
  for label, r in runs.items():
    mean = np.mean(r["test_accuracy"], axis=1)
    axes[0].plot(r["epochs"], mean, label=f"batch {label}")
    axes[1].plot(r["train_seconds"], mean, label=f"batch {label}")
  sizes = [r["batch_size"] for r in runs.values()]
  noise = [r["gradient_noise"]["variance"] for r in runs.values()]
  axes[2].loglog(sizes, noise, "o-", label="measured")
  scale = noise[0] / expected_variance_ratio(sizes[0], n)
  partial = [b for b in sizes if b < n]
  axes[2].loglog(partial, [scale * expected_variance_ratio(b, n) for b in partial], "k--",
                 label="(N-b)/(b(N-1)) law")
  axes[3].loglog(sizes, [r["seconds_per_step"] for r in runs.values()], "o-")
  titles = ["test accuracy vs epochs", "test accuracy vs training seconds",
            "gradient variance vs batch size", "seconds per step vs batch size"]
  for ax, title in zip(axes, titles):
    ax.set_title(f"{name}: {title}")
  axes[0].legend()
  axes[2].legend()
  return save_figure(fig, path)


# ---- out-of-core training ----------------------------------------------------------------------

def out_of_core(config: MinibatchConfig, workdir: str) -> dict:
  """Writes the augmented set, then loads it whole and trains on it, both under the cap."""
  directory = config.out_of_core_dir or os.path.join(workdir, "augmented_mnist")
  num_examples = int(config.out_of_core_gb * 2**30 // (28 * 28 * 4))
  start = time.perf_counter()
  write_augmented(load_dataset("mnist"), directory, num_examples, seed=0)
  file_bytes = os.path.getsize(os.path.join(directory, "x_train.npy"))
  result = {"directory": directory, "num_examples": num_examples, "file_bytes": file_bytes,
            "write_seconds": time.perf_counter() - start,
            "memory_cap_bytes": int(config.memory_cap_gb * 2**30)}
  result["load_whole"] = run_capped(
      ["-c", "import numpy, sys; numpy.load(sys.argv[1])", os.path.join(directory, "x_train.npy")],
      result["memory_cap_bytes"], os.path.join(workdir, "load_whole_memory.json"))
  steps = config.out_of_core_epochs * (num_examples // config.out_of_core_batch_size)
  for name, dataset in (("augmented", directory), ("plain", "mnist")):
    train_dir = os.path.join(workdir, f"out_of_core_{name}")
    # A timed run starts afresh: an earlier run's final checkpoint would resume at its last step
    # and time nothing.
    shutil.rmtree(train_dir, ignore_errors=True)
    result[name] = run_capped(_train_command(config, dataset, steps, train_dir),
                              result["memory_cap_bytes"], train_dir + "_memory.json")
    result[name]["results"] = _read_json(os.path.join(train_dir, "results.json"))
  return result


def _train_command(config: MinibatchConfig, dataset: str, steps: int, workdir: str) -> list:
  return ["-m", "experiments.train", f"--dataset={dataset}", "--model=mlp",
          f"--widths={','.join(map(str, config.out_of_core_widths))}", "--noresidual",
          "--val_fraction=0", f"--batch_size={config.out_of_core_batch_size}",
          f"--steps={steps}", f"--learning_rate={config.learning_rate}",
          f"--eval_every={max(steps // 4, 1)}", f"--log_every={max(steps // 20, 1)}",
          f"--checkpoint_every={steps}", f"--workdir={workdir}"]


def run_capped(command: list[str], cap_bytes: int, report: str) -> dict:
  """Runs `python -m experiments.run_capped` on `command` (`-m module ...` or `-c code ...`) with
  its data segment capped: exit status, wall time, its peak resident memory and, on failure, the
  last line of its error output."""
  start = time.perf_counter()
  process = subprocess.run([sys.executable, "-m", "experiments.run_capped", str(cap_bytes), report,
                            *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
  lines = [line for line in process.stderr.strip().splitlines() if line.strip()]
  return {"returncode": process.returncode, "seconds": time.perf_counter() - start,
          "peak_rss_bytes": (_read_json(report) or {}).get("peak_rss_bytes"),
          "error": lines[-1] if process.returncode and lines else None}


def _read_json(path: str):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


# ---- report ------------------------------------------------------------------------------------

def markdown_report(results: dict) -> str:
  lines = []
  for name, s in results.get("sweep", {}).items():
    lines += [f"### {name}: {s['num_train']} training examples, same epochs; budget "
              f"{s['budget_seconds']:.1f} s", "",
              "| batch | steps | test acc (end) | train acc | gap | test acc within budget "
              "| s/step | step memory | grad variance | law ratio |", "|" + "---|" * 10]
    for label, r in sorted(s["runs"].items(), key=lambda item: int(item[0])):
      budget = r["test_accuracy_within_budget"]
      lines.append(
          f"| {label} | {r['steps']} | {percent(r['final']['test'])} "
          f"| {percent(r['final']['train'])} "
          f"| {percent(r['gap'])} | {percent(budget) if budget else 'not yet evaluated'} "
          f"| {r['seconds_per_step'] * 1e3:.2f} ms | {r['step_memory_bytes'] / 2**20:.1f} MiB "
          f"| {r['gradient_noise']['variance']:.3g} "
          f"| {r['gradient_noise']['expected_ratio']:.3g} |")
    lines.append("")
  if "out_of_core" in results:
    lines += _out_of_core_lines(results["out_of_core"])
  return "\n".join(lines)


def _out_of_core_lines(r: dict) -> list[str]:
  gib = lambda b: f"{b / 2**30:.2f} GiB"
  lines = [f"### Out of core: {r['num_examples']:,} augmented digits, {gib(r['file_bytes'])} on "
           f"disk, data segment capped at {gib(r['memory_cap_bytes'])}", "",
           f"- loading the whole array: exit status {r['load_whole']['returncode']}: "
           f"{r['load_whole']['error']}", "",
           "| training data | exit | wall s | steps/s | time waiting for batches | peak RSS "
           "| test acc |", "|---|---|---|---|---|---|---|"]
  runs = (("augmented", "augmented, memory-mapped"), ("plain", "4,000 digits, in memory"))
  for name, label in runs:
    run, figures = r[name], r[name]["results"]
    if figures is None:
      lines.append(f"| {label} | {run['returncode']} | failed: {run['error']} | | | | |")
      continue
    lines.append(f"| {label} | {run['returncode']} | {run['seconds']:.0f} "
                 f"| {figures['steps_per_sec']:.0f} | {100 * figures['data_share']:.1f}% "
                 f"| {run['peak_rss_bytes'] / 2**20:.0f} MiB "
                 f"| {100 * figures['test']['accuracy']:.2f}% |")
  return lines


# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(datasets=("mnist",), batch_sizes=(8, 32, 128, 0), epochs=10, out_of_core_gb=2.0,
            memory_cap_gb=1.5, out_of_core_widths=(128, 128), seeds=(0, 1, 2, 3, 4))

EXPERIMENT = Experiment(
    name="minibatch", config=MinibatchConfig, run=run, records=records, summary=markdown_report,
    report=markdown_report, variants={"smoke": smoke_config, "tour": TOUR}, check=_check)


if __name__ == "__main__":
  EXPERIMENT.command()
