"""Runs a Python module or snippet with its data segment capped, and records its own peak memory.

    python -m experiments.run_capped CAP_BYTES REPORT.json -m experiments.train --dataset=...
    python -m experiments.run_capped CAP_BYTES REPORT.json -c "import numpy; ..." ARGS...

The cap is RLIMIT_DATA (`ulimit -d`): it bounds the memory the process allocates, not the file
pages it maps, which is the line between loading a dataset and streaming it from a memory map.
At exit, whether the code finished, failed or called sys.exit, REPORT.json receives the process's
peak resident memory (VmHWM, counted from this interpreter's start; ru_maxrss would include the
parent's memory at the fork).
"""

import atexit
import json
import resource
import runpy
import sys


def peak_rss_bytes() -> int:
  with open("/proc/self/status") as f:
    line = next(line for line in f if line.startswith("VmHWM:"))
  return int(line.split()[1]) * 1024  # reported in kB


def _report(path: str) -> None:
  with open(path, "w") as f:
    json.dump({"peak_rss_bytes": peak_rss_bytes()}, f)


def main(argv: list[str]) -> None:
  cap, report, mode, target, *rest = argv[1:]
  resource.setrlimit(resource.RLIMIT_DATA, (int(cap), int(cap)))
  atexit.register(_report, report)
  if mode == "-m":
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)
  elif mode == "-c":
    sys.argv = ["-c", *rest]
    exec(compile(target, "<capped>", "exec"), {"__name__": "__main__"})
  else:
    sys.exit(f"usage: {argv[0]} CAP_BYTES REPORT.json (-m MODULE | -c CODE) [ARGS...]")


if __name__ == "__main__":
  main(sys.argv)
