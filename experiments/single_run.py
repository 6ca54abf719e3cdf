"""One training run the ordinary way, against the paper's PyTorch recipe: whole processes, timed.

    python -m experiments.single_run --torch_python=.venv-3.11/bin/python

For each of the MNIST-1D paper's four models and each seed, three processes, interleaved (the
order rotates every round, so drift of a shared machine touches each kind alike):
  peer  `python -m experiments.torch_peer --model=M --seed=S`: the paper's recipe in eager PyTorch;
  cold  `python -m experiments.train --model=M --seed=S --val_fraction=0 --eval_every=250` with
        empty caches (a fresh XDG_CACHE_HOME: no compiled programs, no generated data): a first run;
  warm  the same command in a new workdir, with the caches the cold run filled: a second run.
Each is timed from start to exit (interpreter, imports, data, compilation, training, evaluation,
checkpoints, writing). The speedups are the peer's time over dl_jax's, per model, over seeds.
dl_jax's per-phase breakdown of each run is kept in results.json. Writes results.json and
results.md (the README's single-run block: `python -m experiments.readme --blocks=single-run`).
"""

import dataclasses
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from dl_jax import cli
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.environment import describe_cpu, machine_record
from dl_jax.errors import UserError
from dl_jax.settings import ConfigError, each, one_of, setting
from dl_jax.train.writers import quiet_library_logs, write_config, write_json

MODELS = ("linear", "mlp", "cnn_mnist1d", "gru_mnist1d")
KINDS = ("peer", "cold", "warm")
TARGETS = {"cold": 2.0, "warm": 3.0}  # issue 16: peer time / dl_jax time


@dataclasses.dataclass(frozen=True)
class SingleRunConfig:
  models: tuple[str, ...] = setting(MODELS, "The paper's models to race, comma separated.",
                                    check=each(one_of(MODELS)))
  seeds: tuple[int, ...] = setting((0, 1), "Seeds, comma separated; each is one round.")
  steps: int = setting(6000, "Training steps of every run (the paper's recipe: 6000).")
  torch_python: str = setting("", "An interpreter with torch (e.g. a Python 3.11 venv's python) "
                              "that runs the peer; empty: dl_jax's runs only.")


def smoke_config() -> SingleRunConfig:
  return SingleRunConfig(models=("linear",), seeds=(0,), steps=20)


def commands(config: SingleRunConfig, model: str, seed: int, workdir: str) -> dict[str, list]:
  ours = [sys.executable, "-m", "experiments.train", f"--model={model}", f"--seed={seed}",
          f"--steps={config.steps}", "--val_fraction=0", "--eval_every=250",
          "--checkpoint_every=1000"]
  runs = {"cold": ours + [f"--workdir={workdir}/cold"],
          "warm": ours + [f"--workdir={workdir}/warm"]}
  if config.torch_python:
    runs["peer"] = [config.torch_python, "-m", "experiments.torch_peer", f"--model={model}",
                    f"--seed={seed}", f"--steps={config.steps}"]
  return runs


class RaceError(UserError, RuntimeError):
  """A raced process failed: the race has no figure for it."""


def timed(command: list[str], env: dict) -> dict:
  """Runs one whole process; its wall seconds, and its last stdout line."""
  start = time.perf_counter()
  done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise RaceError(f"`{' '.join(command)}` failed ({last}); the figures of the runs before it "
                    "are in results.json.")
  return {"seconds": seconds, "stdout_tail": done.stdout.strip().splitlines()[-1:]}


def race(config: SingleRunConfig, model: str, seed: int, order: int, workdir: str) -> dict:
  """The three processes of one (model, seed), cold before warm, in a rotated order."""
  folder = tempfile.mkdtemp(prefix=f"{model}_seed{seed}_", dir=workdir)  # never a resumed run
  env = dict(os.environ, XDG_CACHE_HOME=os.path.join(folder, "cache"))
  runs = commands(config, model, seed, folder)
  sequence = [k for k in (("peer", "cold", "warm"), ("cold", "warm", "peer"),
                          ("cold", "peer", "warm"))[order % 3] if k in runs]
  figures = {}
  for kind in sequence:
    figures[kind] = timed(runs[kind], env)
    print(f"{model} seed {seed} {kind}: {figures[kind]['seconds']:.1f} s", file=sys.stderr,
          flush=True)
  for kind in ("cold", "warm"):
    with open(os.path.join(folder, kind, "results.json")) as f:
      saved = json.load(f)
    figures[kind].update(phases=saved["phases"], test_accuracy=saved["test"]["accuracy"],
                         compilation_cache=saved.get("compilation_cache"))
  if "peer" in figures:
    figures["peer"].update(json.loads(figures["peer"].pop("stdout_tail")[0]))
  return figures


def check_peer(peer: str) -> None:
  """An empty peer, or an interpreter that imports torch and mnist1d (ConfigError otherwise)."""
  if not peer:
    return
  if not (os.path.isfile(peer) and os.access(peer, os.X_OK)):
    raise ConfigError(f"--torch_python={peer} is not an executable file; give the python of a "
                      "venv with torch, or leave it empty for dl_jax's runs only.")
  probe = subprocess.run([peer, "-c", "import torch, mnist1d"], capture_output=True, text=True)
  if probe.returncode != 0:
    raise ConfigError(f"--torch_python={peer} cannot import torch and mnist1d; install them "
                      "there (pip install -e '.[bench]'), or leave it empty.")


def run(config: SingleRunConfig, workdir: str) -> dict:
  """Races every (model, seed); writes results.json and results.md into `workdir`."""
  check_peer(config.torch_python)
  write_config(workdir, dataclasses.asdict(config))
  results = {"config": dataclasses.asdict(config), "machine": machine_record(),
             "versions": {p: importlib.metadata.version(p) for p in ("jax", "jaxlib", "flax")}
             | {"python": platform.python_version()}, "runs": {}}
  order = 0
  for seed in config.seeds:
    for model in config.models:
      results["runs"].setdefault(model, {})[str(seed)] = race(config, model, seed, order, workdir)
      order += 1
      write_json(os.path.join(workdir, "results.json"), results)  # nothing finished is lost
  results["summary"] = summarize(results["runs"])
  write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown_table(results) + "\n")
  return results


def summarize(runs: dict) -> dict:
  """Per model: mean seconds of each kind over seeds, and the speedups peer / dl_jax."""
  summary = {}
  for model, seeds in runs.items():
    mean = {k: statistics.mean(s[k]["seconds"] for s in seeds.values())
            for k in KINDS if all(k in s for s in seeds.values())}
    row = {"seconds": mean, "seeds": len(seeds)}
    if "peer" in mean:
      row["peer_loop_seconds"] = statistics.mean(s["peer"]["loop_seconds"] for s in seeds.values())
      row["speedup"] = {k: mean["peer"] / mean[k] for k in ("cold", "warm")}
    summary[model] = row
  return summary


def markdown_table(results: dict) -> str:
  config = results["config"]
  lines = ["| model | peer: PyTorch, eager (process / loop) | dl_jax first run (cold caches) "
           "| dl_jax second run (warm caches) | speedup cold / warm (target "
           f"{TARGETS['cold']:g}x / {TARGETS['warm']:g}x) |",
           "|---|---|---|---|---|"]
  for model in (m for m in config["models"] if m in results["summary"]):
    row = results["summary"][model]
    s = row["seconds"]
    peer = (f"{s['peer']:.1f} / {row['peer_loop_seconds']:.1f} s" if "peer" in s else "—")
    speed = (" / ".join(f"**{row['speedup'][k]:.2f}x**" for k in ("cold", "warm"))
             if "speedup" in row else "—")
    lines.append(f"| {model} | {peer} | {s['cold']:.1f} s | {s['warm']:.1f} s | {speed} |")
  lines += ["", *phase_table(results)]
  v = results["versions"]
  torch = next((s["peer"].get("torch") for runs in results["runs"].values()
                for s in runs.values() if "peer" in s), None)
  lines += ["", f"Whole processes, mean of seeds {list(config['seeds'])}, {config['steps']} steps "
            f"each, interleaved; {describe_cpu(results['machine'])}; dl_jax on Python "
            f"{v['python']}, jax {v['jax']}, flax {v['flax']}"
            + (f"; the peer on torch {torch}" if torch else "") + "."]
  return "\n".join(lines)


PHASES = ("startup (interpreter, imports)", "data", "model init", "compile + first call",
          "training steps", "waiting for batches", "evaluation during training",
          "final evaluation", "logging", "checkpointing")


def phase_table(results: dict) -> list[str]:
  """Where each kind of dl_jax run spends its seconds (dl_jax's own phases, mean over seeds);
  'rest' is the process time no phase holds: interpreter exit, writing results, threads."""
  short = {"startup (interpreter, imports)": "startup", "compile + first call": "compile, 1st call",
           "evaluation during training": "eval", "final evaluation": "final eval",
           "waiting for batches": "waiting for batches", "checkpointing": "checkpoints"}
  lines = ["| model, run | process | " + " | ".join(short.get(p, p) for p in PHASES)
           + " | rest |", "|---|---|" + "---|" * (len(PHASES) + 1)]
  for model in (m for m in results["config"]["models"] if m in results["runs"]):
    for kind in ("cold", "warm"):
      runs = [s[kind] for s in results["runs"][model].values()]
      mean = lambda f: statistics.mean(f(r) for r in runs)
      phases = [mean(lambda r: r["phases"].get(p, 0.0)) for p in PHASES]
      process = mean(lambda r: r["seconds"])
      lines.append(f"| {model}, {kind} | {process:.1f} | "
                   + " | ".join(f"{v:.2f}" for v in phases) + f" | {process - sum(phases):.2f} |")
  return lines


def main(argv):
  del argv
  quiet_library_logs()
  results = run(experiment_config(SingleRunConfig, smoke_config), flags.FLAGS.workdir)
  print(markdown_table(results))


def define_flags() -> None:
  define_experiment_flags(SingleRunConfig, "runs/single_run")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
