"""Config fields that carry their own help, choices and check, validated before a run starts.

A research script declares its config as a frozen dataclass whose fields are `setting(...)`s:

    steps: int = setting(6000, "Training steps.", check=at_least(1))

`config_flags` turns each field into a typed flag with that help text, and `validate` runs every
check on the final config, so `--eval_every=0` or `--dropout=1.5` is refused with one sentence
before anything is loaded, compiled or written. A field with no check of its own gets the one its
name implies (`implied_check`): counts of steps, sizes and widths, learning rates, rates and seeds
mean the same in every experiment.
"""

import dataclasses
import math
from typing import Any, Callable, Sequence

from dl_jax.errors import UserError

Check = Callable[[Any], str | None]
"""Returns None for a valid value, else what is wrong with it (e.g. 'must be >= 1')."""


class ConfigError(UserError, ValueError):
  """A config value is invalid; the message names the flag and what it accepts."""


def setting(default, help: str, choices: Sequence[str] | None = None,
            check: Check | None = None) -> Any:
  """A dataclass field with its flag's help text, its valid choices and a check of its value."""
  return dataclasses.field(default=default,
                           metadata={"help": help, "choices": choices, "check": check})


def at_least(low) -> Check:
  return lambda value: None if value >= low else f"must be >= {low}"


def one_of(choices: Sequence[str]) -> Check:
  return lambda value: None if value in choices else f"must be one of {list(choices)}"


def between(low: float, high: float, high_open: bool = True) -> Check:
  """low <= value < high (or <= high when `high_open` is False); NaN is refused."""
  def check(value):
    ok = low <= value < high if high_open else low <= value <= high
    return None if ok and not math.isnan(value) else (
        f"must be in [{low}, {high}{')' if high_open else ']'}")
  return check


def positive_finite(value) -> str | None:
  return None if math.isfinite(value) and value > 0 else "must be a finite number > 0"


def non_negative_finite(value) -> str | None:
  return None if math.isfinite(value) and value >= 0 else "must be a finite number >= 0"


def each(check: Check) -> Check:
  """Applies `check` to every element of a tuple; an empty tuple is refused."""
  def check_all(values):
    if not values:
      return "must name at least one value"
    problems = [f"{v!r} {problem}" for v in values if (problem := check(v))]
    return "; ".join(problems) or None
  return check_all


def implied_check(name: str, annotation) -> Check | None:
  """The check a field's name and type imply across experiments, or None."""
  if annotation is int:
    if name in ("steps", "calls", "rounds") or name.endswith(
        ("_every", "batch_size", "_size", "width", "_dim", "_per_call", "_per_window", "num_seeds")):
      return at_least(1)
    if name.endswith("steps") or name in ("seed", "patience", "epochs"):
      return at_least(0)
  if annotation is float:
    if name.endswith("learning_rate"):
      return positive_finite
    if name in ("val_fraction", "dropout", "dropout_rate"):
      return between(0, 1)
  if annotation == tuple[int, ...]:
    if name.endswith(("widths", "channels", "depths")):
      return each(at_least(1))
    if name in ("seeds", "batch_sizes", "timing_batch_sizes"):
      return each(at_least(0))
  return None


def validate(config) -> Any:
  """`config`, once every field's check passes; else ConfigError naming the first bad flag."""
  for field in dataclasses.fields(config):
    check = field.metadata.get("check") or implied_check(field.name, field.type)
    choices = field.metadata.get("choices")
    value = getattr(config, field.name)
    problem = check(value) if check else None
    if choices is not None and value not in choices:
      problem = f"must be one of {sorted(choices)}"
    if problem:
      raise ConfigError(f"--{field.name}={_shown(value)}: {problem}.")
  return config


def _shown(value) -> str:
  return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
