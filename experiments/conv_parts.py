"""The Flax-MNIST CNN's costliest layer, its three parts timed alone: jax against PyTorch.

    python -m experiments.conv_parts                                        # jax only
    python -m experiments.conv_parts --torch_python=.venv-3.11/bin/python   # and torch, interleaved

The 3x3 convolution from 32 to 64 channels on a batch of 128 14x14 maps: forward, gradient with
respect to the input and with respect to the weights, each the median of `calls` timed calls
after one warm-up, over `rounds` rounds that alternate the two frameworks. Writes results.json
and results.md.
"""

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time

import numpy as np
from absl import flags

from dl_jax import cli
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.environment import describe_cpu, machine_record
from dl_jax.settings import setting
from dl_jax.train.writers import quiet_library_logs, write_config, write_json

PARTS = ("forward", "input gradient", "weight gradient")
SHAPES = {"x": (128, 14, 14, 32), "w": (3, 3, 32, 64), "g": (128, 14, 14, 64)}  # NHWC, HWIO


@dataclasses.dataclass(frozen=True)
class ConvPartsConfig:
  calls: int = setting(30, "Timed calls per part after one warm-up; the median is kept.")
  rounds: int = setting(2, "Rounds, alternating which framework is timed first.")
  torch_python: str = setting("", "An interpreter with torch (e.g. a Python 3.11 venv's python) "
                              "that times the torch column; empty: jax only.")
  framework: str = setting("jax", "What this process times (torch: the child run by "
                           "--torch_python).", choices=("jax", "torch"))


def smoke_config() -> ConvPartsConfig:
  return ConvPartsConfig(calls=2, rounds=1)


def inputs() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in SHAPES.items()}


def median_ms(fn, calls: int) -> float:
  fn()
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


def jax_parts(calls: int) -> dict[str, float]:
  import jax

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  x, w, g = (jax.device_put(a) for a in inputs().values())
  programs = {"forward": (jax.jit(conv), (x, w)),
              "input gradient": (jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0]), (x, w, g)),
              "weight gradient": (jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1]), (x, w, g))}
  return {part: median_ms(lambda: fn(*args).block_until_ready(), calls)
          for part, (fn, args) in programs.items()}


def torch_parts(calls: int) -> dict[str, float]:
  import torch

  a = inputs()
  x = torch.from_numpy(a["x"]).permute(0, 3, 1, 2).contiguous()
  w = torch.from_numpy(a["w"]).permute(3, 2, 0, 1).contiguous()
  g = torch.from_numpy(a["g"]).permute(0, 3, 1, 2).contiguous()
  conv, grad = torch.nn.functional.conv2d, torch.nn.grad

  def forward():
    with torch.no_grad():
      conv(x, w, padding=1)

  return {"forward": median_ms(forward, calls),
          "input gradient": median_ms(lambda: grad.conv2d_input(x.shape, w, g, padding=1), calls),
          "weight gradient": median_ms(lambda: grad.conv2d_weight(x, w.shape, g, padding=1), calls)}


def versions(framework: str) -> str:
  module = __import__(framework)
  return f"{framework} {module.__version__} (Python {platform.python_version()})"


def torch_in(python: str, calls: int) -> dict:
  """torch_parts in another interpreter: this module run there with --framework=torch."""
  with tempfile.TemporaryDirectory() as workdir:  # the parent holds its own --workdir
    done = subprocess.run([python, "-m", "experiments.conv_parts", "--framework=torch",
                           f"--calls={calls}", "--compilation_cache=", f"--workdir={workdir}"],
                          capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if done.returncode != 0:
    raise RuntimeError(f"{python} could not time torch: "
                       f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def run(config: ConvPartsConfig, workdir: str) -> dict:
  write_config(workdir, dataclasses.asdict(config))
  rounds = {"jax": []} | ({"torch": []} if config.torch_python else {})
  names = {"jax": versions("jax")}
  for r in range(config.rounds):
    for framework in (list(rounds) if r % 2 == 0 else list(rounds)[::-1]):
      if framework == "jax":
        rounds["jax"].append(jax_parts(config.calls))
      else:
        child = torch_in(config.torch_python, config.calls)
        names["torch"] = child["name"]
        rounds["torch"].append(child["parts"])
  results = {"config": dataclasses.asdict(config), "frameworks": names,
             "machine": machine_record(),
             "milliseconds": {fw: {part: [r[part] for r in rs] for part in PARTS}
                              for fw, rs in rounds.items()}}
  write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown_table(results) + "\n")
  return results


def markdown_table(results: dict) -> str:
  """ms per part and framework: the range over rounds of each round's median."""
  frameworks = list(results["frameworks"])
  rows = ["| 32 -> 64 channel 3x3 conv, batch 128, 14x14 | "
          + " | ".join(results["frameworks"][fw] for fw in frameworks) + " |",
          "|---|" + "---|" * len(frameworks)]
  for part in PARTS:
    cells = []
    for fw in frameworks:
      values = results["milliseconds"][fw][part]
      low, high = min(values), max(values)
      cells.append(f"{low:.1f} ms" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f} ms")
    rows.append(f"| {part} | " + " | ".join(cells) + " |")
  machine = results.get("machine")
  if machine:
    rows += ["", f"{describe_cpu(machine)}; "
                 f"{results['config']['rounds']} interleaved round(s), the range of their medians."]
  return "\n".join(rows)


def main(argv):
  del argv
  quiet_library_logs()
  config = experiment_config(ConvPartsConfig, smoke_config)
  if config.framework == "torch":  # the child: one round of torch, as JSON on stdout
    print(json.dumps({"name": versions("torch"), "parts": torch_parts(config.calls)}))
    return
  try:
    print(markdown_table(run(config, flags.FLAGS.workdir)))
  except RuntimeError as e:
    cli.fail(str(e))


def define_flags() -> None:
  define_experiment_flags(ConvPartsConfig, "runs/conv_parts")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
