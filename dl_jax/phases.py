"""Where a run's wall time goes: seconds per named phase, printed at the end and saved in results.

    phases = Phases()
    with phases("data"):
      dataset = load_dataset(...)

Phases may repeat (their seconds add up) and nest only if the caller wants double counting; the
`startup` phase is the time from the process's start (interpreter and imports) to the first call.
"""

import contextlib
import os
import time


def seconds_since_process_start() -> float | None:
  """Wall seconds since this process started (Linux /proc); None where that cannot be read."""
  try:
    with open("/proc/self/stat") as f:
      start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return None


class Phases:
  """Named wall-clock totals, in the order each phase first ran."""

  def __init__(self):
    self.seconds: dict[str, float] = {}

  def add(self, name: str, seconds: float) -> None:
    self.seconds[name] = self.seconds.get(name, 0.0) + seconds

  @contextlib.contextmanager
  def __call__(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.add(name, time.perf_counter() - start)

  def table(self) -> str:
    """One line per phase with its share of the total, then the total."""
    total = sum(self.seconds.values()) or 1.0
    width = max(map(len, self.seconds), default=5)
    lines = [f"{name:>{width}}: {s:7.2f} s  {100 * s / total:5.1f}%"
             for name, s in self.seconds.items()]
    return "\n".join(lines + [f"{'total':>{width}}: {sum(self.seconds.values()):7.2f} s"])
