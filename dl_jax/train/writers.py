"""What a run writes: JSON files, a metrics log, and progress for a person watching."""

import json
import math
import os
import sys
import time

import jax
import numpy as np
from absl import flags, logging
from tqdm import tqdm

from dl_jax.errors import UserError


def quiet_library_logs() -> None:
  """Hides orbax's and JAX's per-call INFO lines unless the user asked for a --verbosity."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def is_writer() -> bool:
  """Only process 0 writes files, so many hosts never race on one workdir."""
  return jax.process_index() == 0


def write_json(path: str, obj) -> None:
  """Writes atomically (temp file + rename), so a killed run never leaves half a file."""
  if not is_writer():
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  _write_atomically(path, json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False)
                    + "\n")


def json_safe(obj):
  """`obj` with NaN and Inf replaced by None (null): JSON has no NaN, strict parsers reject it."""
  if isinstance(obj, dict):
    return {k: json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def _write_atomically(path: str, text: str) -> None:
  """Temp file + rename: a killed process never leaves half a file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


class ConfigMismatchError(UserError, ValueError):
  """A workdir already holds a run with another config."""


def write_config(workdir: str, config: dict) -> None:
  """Writes `workdir/config.json`; refuses a workdir that holds a run with another config, whose
  checkpoints a resumed run would otherwise silently mix with this one."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        existing = json.load(f)
    except ValueError as e:
      raise ConfigMismatchError(f"{path} is not valid JSON ({e}); use a new --workdir, or delete "
                                "the old run to start over.") from None
    if existing != json.loads(json.dumps(config)):
      changed = sorted(k for k in set(existing) | set(config)
                       if existing.get(k) != json.loads(json.dumps(config.get(k))))
      raise ConfigMismatchError(f"{workdir} holds a run with a different config (differs in "
                                f"{changed}{_data_change(existing, config)}); use a new "
                                "--workdir, or delete the old run to start over.")
  write_json(path, config)


def _data_change(existing: dict, config: dict) -> str:
  """Says so when the dataset's contents changed under an unchanged name."""
  before = (existing.get("dataset") or {}).get("fingerprint")
  after = (config.get("dataset") or {}).get("fingerprint")
  if before and after and before != after:
    return f": the dataset's contents changed since the run began, fingerprint {before} -> {after}"
  return ""


class MetricsLog:
  """`metrics.jsonl`: one JSON object per logged step."""

  def __init__(self, path: str):
    self.path = path

  def write(self, step: int, metrics: dict) -> None:
    if is_writer():
      line = json.dumps(json_safe({"step": step, **metrics}), sort_keys=True, allow_nan=False)
      with open(self.path, "a") as f:
        f.write(line + "\n")

  def read(self) -> list[dict]:
    """The lines written so far (one cut short by a kill is skipped)."""
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if _logged_step(line) != math.inf]

  def truncate_after(self, step: int) -> None:
    """Drops lines logged after `step`: a resumed run logs them again, once."""
    if not is_writer() or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      kept = [line for line in f if _logged_step(line) <= step]
    _write_atomically(self.path, "".join(kept))


def _logged_step(line: str) -> float:
  """The step of a metrics line; a line cut short by a kill counts as never written."""
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError):
    return math.inf


class Progress:
  """A tqdm bar on a terminal; elsewhere, a line per report with steps/s and ETA."""

  def __init__(self, total_steps: int, start_step: int):
    self.total, self.last_step, self.last_time = total_steps, start_step, time.perf_counter()
    self.bar = None
    if sys.stderr.isatty() and is_writer():
      self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

  def update(self, step: int, summary: dict) -> float:
    """Reports progress at `step` (per-seed figures shown as their mean); returns steps/s since
    the previous report."""
    summary = {k: float(np.mean(v)) for k, v in summary.items()}
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix({k: f"{v:.4g}" for k, v in summary.items()}, refresh=False)
    elif is_writer():
      eta = (self.total - step) / max(rate, 1e-9)
      shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items())
      print(f"step {step}/{self.total}, {rate:.1f} steps/s, ETA {eta:.0f}s, {shown}",
            file=sys.stderr, flush=True)
    return rate

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
