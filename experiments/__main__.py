"""One command for every experiment: `dl-jax NAME [flags]`, or `python -m experiments NAME [flags]`.

    dl-jax                       # the experiments, one line each
    dl-jax tour                  # the main job: every experiment, one report
    dl-jax train --model=cnn_mnist1d --steps=2000
    dl-jax sparsity --helpshort  # its flags, each with a sentence

Each name runs the same code as `python -m experiments.NAME`. The list is read from the modules'
docstrings without importing them, so it prints at once; an unknown name gets one line and exit 2.
"""

import ast
import difflib
import importlib
import os
import sys

from dl_jax import cli

COMMANDS = ("tour", "train", "minibatch", "activations", "mnist1d_table", "translate", "sparsity",
            "regularization", "siamese", "adversarial", "gan", "benchmark", "single_run",
            "conv_parts", "seeds_cost", "stream_memmap", "hostile_inputs", "readme")
PROGRAM = "dl-jax"


def summary(name: str) -> str:
  """The first paragraph of experiments/NAME.py's docstring, read without importing it."""
  path = os.path.join(os.path.dirname(__file__), f"{name}.py")
  with open(path) as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  return " ".join(doc.split("\n\n", 1)[0].split())


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = [f"usage: {PROGRAM} NAME [flags]   (or: python -m experiments NAME [flags])", "",
           "NAME is one of:"]
  lines += [f"  {name:<{width}}  {summary(name)}" for name in COMMANDS]
  lines += ["", f"{PROGRAM} NAME --helpshort lists NAME's flags; --help lists every flag."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0 if len(argv) >= 2 else cli.EXIT_USER_ERROR)
  name = argv[1]
  if name not in COMMANDS:
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    print(f"error: no experiment {name!r}; {hint}run '{PROGRAM}' for the list.", file=sys.stderr)
    sys.exit(cli.EXIT_USER_ERROR)
  module = importlib.import_module(f"experiments.{name}")
  # absl lists under --helpshort the flags of the module named by argv[0]; config flags register
  # under it too (dl_jax.config_flags), so NAME's own flags are the ones shown.
  sys.argv = [module.__name__, *argv[2:]]
  sys.modules["__main__"].__doc__ = module.__doc__  # what absl's --help prints first
  if hasattr(module, "EXPERIMENT"):
    module.EXPERIMENT.command()
  else:  # the tour, train and the tools define their own flags and main
    module.define_flags()
    cli.run(module.main)


if __name__ == "__main__":
  main()
