"""Figures in a README that are written by a command, never typed: marked blocks replaced whole.

A block is the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`. Replacing it writes the
new file beside the old one and renames it over, so an interrupted write leaves the old README.
"""

import os


def markers(name: str) -> tuple[str, str]:
  return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_block(path: str, name: str, body: str) -> None:
  """Puts `body` between the README's markers for `name`; a missing block is an error that says
  where the markers go."""
  begin_marker, end_marker = markers(name)
  with open(path) as f:
    text = f.read()
  begin, end = text.find(begin_marker), text.find(end_marker)
  if begin < 0 or end < begin:
    raise ValueError(f"{path} has no '{begin_marker}' ... '{end_marker}' block to replace; add "
                     "the two markers where the figures belong.")
  new = f"{text[:begin]}{begin_marker}\n{body.strip()}\n{text[end:]}"
  temporary = f"{path}.tmp-{os.getpid()}"
  with open(temporary, "w") as f:
    f.write(new)
  os.replace(temporary, path)
