"""What N models trained together in one vmapped program cost, against N runs one after another.

    python -m experiments.seeds_cost                  # the benchmark's cases, N = 1, 4, 8, 16
    python -m experiments.seeds_cost --smoke

For each case of `experiments.benchmark` (same models, batch sizes and data), N seeds are stacked
(dl_jax.train.seeds) and one jitted, vmapped step trains all of them on their own batches. The
figures: the time of one vmapped step (median of timed windows after warm-up), its compilation,
and the cost of N seeds relative to one seed's step; N sequential runs cost N by definition.
Target (the performance issue): 8 seeds at most 3x one seed.
"""

import dataclasses
import os

import jax
import numpy as np
import optax
from absl import flags

from dl_jax import cli
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.models import make_model
from dl_jax.settings import at_least, each, one_of, setting
from dl_jax.train import classification_loss
from dl_jax.train.seeds import make_seeds_init, make_seeds_train_step
from dl_jax.train.writers import quiet_library_logs, write_config, write_json
from experiments.benchmark import CASES, BenchmarkConfig, Blocking, case_batches, time_steps


@dataclasses.dataclass(frozen=True)
class SeedsCostConfig:
  cases: tuple[str, ...] = setting(tuple(CASES), f"Cases of experiments.benchmark, comma "
                                   f"separated: {list(CASES)}.", check=each(one_of(tuple(CASES))))
  num_seeds: tuple[int, ...] = setting((1, 4, 8, 16), "Numbers of seeds stacked in one vmapped "
                                       "step, comma separated.", check=each(at_least(1)))
  warmup_steps: int = setting(10, "Untimed training steps before the timed windows.")
  windows: int = setting(5, "Timed windows per case and seed count; the step time is their "
                         "median.", check=at_least(1))
  steps_per_window: int = setting(20, "Training steps per timed window.")
  num_batches: int = setting(4, "Distinct stacked batches, resident on the device, cycled "
                             "through while timing.", check=at_least(1))
  learning_rate: float = setting(1e-3, "Adam learning rate.")


def smoke_config() -> SeedsCostConfig:
  return SeedsCostConfig(cases=("cnn_mnist1d@100",), num_seeds=(1, 2), warmup_steps=1, windows=2,
                         steps_per_window=2, num_batches=2)


def run(config: SeedsCostConfig, workdir: str) -> dict:
  unknown = sorted(set(config.cases) - set(CASES))
  if unknown:
    raise ValueError(f"unknown cases {unknown}; choose from {list(CASES)}")
  write_config(workdir, dataclasses.asdict(config))
  results = {"config": dataclasses.asdict(config), "device": str(jax.devices()[0]), "cases": {}}
  for name in config.cases:
    rows = {n: time_seeds(config, CASES[name], n) for n in config.num_seeds}
    one = rows[min(rows)]["seconds_per_step"] / min(rows)
    for row in rows.values():
      row["cost_vs_one_seed"] = row["seconds_per_step"] / one
    results["cases"][name] = rows
    print(f"{name}: " + ", ".join(f"N={n} {r['cost_vs_one_seed']:.2f}x" for n, r in rows.items()),
          flush=True)
  write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown_table(results) + "\n")
  return results


def time_seeds(config: SeedsCostConfig, case, num_seeds: int) -> dict:
  """One vmapped step over `num_seeds` stacked models, each on its own batch, timed."""
  bench = BenchmarkConfig(num_batches=config.num_batches * num_seeds,
                          warmup_steps=config.warmup_steps,
                          windows=config.windows, steps_per_window=config.steps_per_window)
  batches = case_batches(case, bench)
  stacked = [jax.device_put(_stack(batches[i * num_seeds:(i + 1) * num_seeds]))
             for i in range(config.num_batches)]
  model = make_model(case.model, 10, **dict(case.options))
  states = make_seeds_init(model, optax.adam(config.learning_rate), batches[0]["x"])(
      list(range(num_seeds)))
  train_step = make_seeds_train_step(classification_loss(model))
  holder = {"states": states}

  def step(i: int) -> Blocking:
    holder["states"], metrics = train_step(holder["states"], stacked[i % len(stacked)])
    return Blocking(lambda: jax.block_until_ready(metrics["loss"]))

  figures = time_steps(step, case.batch_size, bench, flops_per_step=0.0, peak=1.0)
  return {"seconds_per_step": 1 / figures["steps_per_second"],
          "first_step_seconds": figures["first_step_seconds"],
          "window_rates": figures["window_rates"]}


def _stack(batches: list[dict]) -> dict:
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def markdown_table(results: dict) -> str:
  sizes = results["config"]["num_seeds"]
  rows = ["| case | " + " | ".join(f"N={n}: ms/step (cost vs 1)" for n in sizes)
          + " | first step N=1 / N=max (s) |", "|---" * (len(sizes) + 2) + "|"]
  for name, by_n in results["cases"].items():
    cells = [f"{1e3 * by_n[n]['seconds_per_step']:.1f} ({by_n[n]['cost_vs_one_seed']:.2f}x)"
             for n in sizes]
    first, last = by_n[sizes[0]], by_n[sizes[-1]]
    rows.append(f"| {name} | " + " | ".join(cells) + f" | {first['first_step_seconds']:.1f}"
                f" / {last['first_step_seconds']:.1f} |")
  return "\n".join(rows)


def define_flags() -> None:
  define_experiment_flags(SeedsCostConfig, "runs/seeds_cost")


def main(argv):
  del argv
  quiet_library_logs()
  print(markdown_table(run(experiment_config(SeedsCostConfig, smoke_config), flags.FLAGS.workdir)))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
