"""Writes the README's measured tables from results files: no figure in them is typed by hand.

    python -m experiments.readme                       # every block whose results file exists
    python -m experiments.readme --blocks=benchmark    # one block

Each block names the results file it shows and the command that makes it; the block in the README
is replaced whole (dl_jax.readme_blocks), with the command written under the table.
"""

import os
import sys

from absl import flags

from dl_jax import cli
from dl_jax.readme_blocks import replace_block

# block name -> (results file, the command that writes it)
BLOCKS = {
    "benchmark": ("runs/benchmark/results.md",
                  "python -m experiments.benchmark --rounds=3 --torch_python=.venv-3.11/bin/python"),
    "conv-parts": ("runs/conv_parts/results.md",
                   "python -m experiments.conv_parts --torch_python=.venv-3.11/bin/python"),
    "mnist1d-table": ("runs/mnist1d_table/results.md", "python -m experiments.mnist1d_table"),
    "hostile-inputs": ("runs/hostile_inputs/results.md", "python -m experiments.hostile_inputs"),
}


def update(readme: str, blocks: list[str]) -> list[str]:
  """Replaces each named block whose results file exists; returns the names it wrote."""
  written = []
  for name in blocks:
    source, command = BLOCKS[name]
    if not os.path.isfile(source):
      print(f"{name}: {source} not found; run `{command}` first", file=sys.stderr)
      continue
    with open(source) as f:
      table = f.read()
    replace_block(readme, name, f"{table.strip()}\n\nWritten from `{source}` (made by `{command}`) "
                                f"by `python -m experiments.readme --blocks={name}`.")
    written.append(name)
  return written


def main(argv):
  del argv
  unknown = sorted(set(flags.FLAGS.blocks) - set(BLOCKS))
  if unknown:
    print(f"error: unknown blocks {unknown}; choose from {sorted(BLOCKS)}", file=sys.stderr)
    return 2
  try:
    written = update(flags.FLAGS.readme, flags.FLAGS.blocks)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {', '.join(written) or 'nothing'} into {flags.FLAGS.readme}")
  return 0 if written else 2


def define_flags() -> None:
  flags.DEFINE_string("readme", "README.md", "The README whose blocks are replaced.")
  flags.DEFINE_list("blocks", list(BLOCKS), f"Blocks to write, of {list(BLOCKS)}.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
